"""OpenAPI: every route documented; a bounded schemathesis run finds no 5xx or mismatch."""

from __future__ import annotations

import os

import falcon.inspect
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rules import wire

from .conftest import Env


@schemathesis.serializer("application/x-ndjson", "application/octet-stream", "application/xml")
def _raw_bytes(ctx, value) -> bytes:  # type: ignore[no-untyped-def]
    """Bodies of raw-body routes (/logs NDJSON, tool binaries, Sysmon XML): any bytes."""
    import json as _json

    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return _json.dumps(value).encode()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Bounded in the suite; for a long run:
#   HERON_FUZZ_EXAMPLES=200 pytest tests/appliance/test_openapi.py
EXAMPLES = int(os.environ.get("HERON_FUZZ_EXAMPLES", "4"))
# Streams never end by themselves; they are covered by the SSE tests (limit=…).
SKIP = {("GET", "/stream/events"), ("GET", "/stream/detections")}


@pytest.mark.parametrize("api", ["admin", "endpoint"])
def test_every_route_is_in_openapi(env: Env, api: str) -> None:
    client = env.admin if api == "admin" else env.endpoint
    doc = client.simulate_get("/openapi.json").json
    assert doc["openapi"] == "3.1.0"
    for route in falcon.inspect.inspect_routes(client.app):
        path = route.path.replace("{path:path}", "{path}")
        for method in route.methods:
            if method.internal or method.method in ("OPTIONS",):
                continue
            assert method.method.lower() in doc["paths"].get(path, {}), (method.method, path)


def test_wire_routes_exist_on_endpoint_api(env: Env) -> None:
    doc = env.endpoint.simulate_get("/openapi.json").json
    for name in dir(wire):
        if name.startswith("ROUTE_"):
            assert getattr(wire, name) in doc["paths"], name


def test_errors_use_the_envelope_on_every_admin_route(env: Env) -> None:
    """Unauthenticated calls to every admin operation answer the pinned error envelope."""
    doc = env.admin.simulate_get("/openapi.json").json
    for path, item in doc["paths"].items():
        for method in item:
            concrete = path.replace("{uuid}", "00000000-0000-4000-8000-000000000000")
            concrete = concrete.replace("{", "").replace("}", "")
            res = env.admin.simulate_request(method.upper(), concrete)
            if res.status_code >= 400:
                assert set(res.json) == {"data", "message", "error"}, (method, path)
                assert res.json["message"] == "NOK" and res.json["error"]


def _fuzz(
    env: Env, client, headers: dict[str, str], max_examples: int, statuses: list[int]
) -> list[str]:
    doc = client.simulate_get("/openapi.json").json
    schema = schemathesis.openapi.from_wsgi("/openapi.json", client.app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in SKIP:
            continue
        assert op.path in doc["paths"]
        name = f"{op.method.upper()} {op.path}"
        before = len(failures)
        try:
            _runner(op, name, headers, max_examples, failures, statuses)()
        except BaseException as ex:  # noqa: BLE001 - hypothesis re-raises the minimal failure
            if len(failures) == before:  # not a check failure: a crash of the test itself
                failures.append(f"{name}: {type(ex).__name__}: {str(ex)[:600]}")
    assert len(statuses) >= max_examples, f"only {len(statuses)} requests were made"
    return failures


def _runner(op, name, headers, max_examples, failures, statuses):  # type: ignore[no-untyped-def]
    strategy = st.one_of(op.as_strategy(), op.as_strategy(GenerationMode.NEGATIVE))

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(headers=headers)
        statuses.append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as ex:
            failures.append(f"{name}: {str(ex)[:600]}")
            raise

    return run


def test_schemathesis_admin_api(env: Env) -> None:
    agent = env.enroll()
    env.post_logs(agent, [{"Event": {"System": {"Channel": "c", "EventID": 1}}}])
    statuses: list[int] = []
    failures = _fuzz(env, env.admin, {wire.HEADER_API_KEY: env.admin_key}, EXAMPLES, statuses)
    assert not failures, "\n".join(sorted(set(failures)))
    assert statuses.count(200) > len(statuses) // 10  # authenticated: real work was done


def test_schemathesis_endpoint_api(env: Env) -> None:
    """Fuzz the endpoint API as an enrolled agent (identity as the TLS front would set it)."""
    agent = env.enroll()
    app = env.endpoint.app

    def as_agent(environ, start_response):  # type: ignore[no-untyped-def]
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = "127.0.0.1", str(agent.port)
        return app(environ, start_response)

    class Client:
        def __init__(self) -> None:
            self.app = as_agent

        def simulate_get(self, path: str):  # type: ignore[no-untyped-def]
            return env.endpoint.simulate_get(path)

    statuses: list[int] = []
    failures = _fuzz(env, Client(), {}, EXAMPLES, statuses)
    assert not failures, "\n".join(sorted(set(failures)))
    assert statuses.count(200) + statuses.count(204) > len(statuses) // 10
