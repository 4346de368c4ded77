"""The one private reach-in into Falcon (`openapi.app_router`) and the route walk built on it.

If a Falcon release renames the router attribute or changes what `inspect_compiled_router` and
`CompiledRouter.find` return, these tests fail before `heron-manager routes`/`openapi` do.
"""

from __future__ import annotations

import falcon
import falcon.inspect
from falcon.routing import CompiledRouter

from appliance.api.openapi import app_router, iter_routes
from tests.appliance.conftest import Env


class Items:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = []

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_201

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {}


class Item:
    def on_delete(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        resp.status = falcon.HTTP_204


class Asset:
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.text = path


def test_app_router_is_the_compiled_router_falcon_routes_with() -> None:
    app = falcon.App()
    router = app_router(app)
    assert isinstance(router, CompiledRouter)
    app.add_route("/x", Items())
    found = router.find("/x")
    assert found is not None and isinstance(found[0], Items)


def test_iter_routes_gives_templates_resources_and_their_own_responders() -> None:
    app = falcon.App()
    items, item, asset = Items(), Item(), Asset()
    app.add_route("/items", items)
    app.add_route("/items/sha256", items, suffix="sha256")
    app.add_route("/items/{uuid}", item)
    app.add_route("/static/{path:path}", asset)
    got = {template: (resource, responders) for template, resource, responders in iter_routes(app)}
    assert list(got) == ["/items", "/items/sha256", "/items/{uuid}", "/static/{path:path}"]
    assert got["/items"][0] is items and sorted(got["/items"][1]) == ["get", "post"]
    # Falcon's default responders (405, OPTIONS) are left out; suffixed ones are the bound methods
    assert {m: fn.__name__ for m, fn in got["/items/sha256"][1].items()} == {"get": "on_get_sha256"}
    assert got["/items/{uuid}"][0] is item and list(got["/items/{uuid}"][1]) == ["delete"]
    assert got["/static/{path:path}"][0] is asset and list(got["/static/{path:path}"][1]) == ["get"]


def test_iter_routes_covers_every_route_falcon_inspect_lists(env: Env) -> None:
    for client in (env.admin, env.endpoint):
        ours = {template for template, _, responders in iter_routes(client.app) if responders}
        theirs = {
            route.path
            for route in falcon.inspect.inspect_routes(client.app)
            if any(not m.internal for m in route.methods)
        }
        assert ours == theirs and len(ours) > 10
