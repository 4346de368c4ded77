"""Admin API, retro-hunt: jobs (`/hunt/jobs`) and the synchronous `POST /hunt/rules`.

A hunt runs as a background job (services/huntjobs.py: bounded time, CPU share and matches,
cancel); `POST /hunt/rules` submits one and waits for it, answering as it always did.
"""

from __future__ import annotations

from typing import Any

import falcon

from ..core.errors import Forbidden, Unavailable, ValidationError
from ..core.timefmt import parse_time
from ..runtime.context import AppContext
from ..services.huntjobs import HuntJob, HuntJobs
from ..store import Role
from .admin_search import _hunt_body
from .common import envelope, q_int, q_str, uuid_param
from .middleware import ALL_ROLES, JsonBody

__all__ = ["HUNT_ROUTES"]

_SCHEMA = {
    "type": "object",
    "required": ["rules"],
    "properties": {
        "rules": {"type": "array", "items": {"type": "object"}},
        "since": {"type": "string"},
        "until": {"type": "string"},
        "endpoint": {"type": "string"},
        "limit": {"type": "integer"},
        "store": {"type": "boolean"},
        "containers": {"type": "object"},
        "iocs": {"type": "boolean"},
        "ioc_criticality": {"type": "integer"},
    },
}


def _user(req: falcon.Request) -> tuple[str, bool]:
    """(owner id, sees every job): admins see and cancel every user's jobs."""
    user = req.context.user
    return str(getattr(user, "uuid", "")), getattr(user, "role", None) is Role.ADMIN


def _jobs(ctx: AppContext) -> HuntJobs:
    if ctx.hunts is None:
        raise Unavailable("retro-hunt jobs are not running")
    return ctx.hunts


def _params(ctx: AppContext, req: falcon.Request) -> dict[str, Any]:
    """The job parameters of a hunt request body (validated)."""
    body = req.context.body
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 10_000:
        raise ValidationError("limit must be 1–10000")
    if body.get("store") is True and not _user(req)[1]:
        raise Forbidden("only admins may store retro-hunt detections")
    return {
        "rules": body["rules"],
        "since": parse_time(body["since"], name="since") if body.get("since") else None,
        "until": parse_time(body["until"], name="until") if body.get("until") else None,
        "endpoint": uuid_param(body["endpoint"], "endpoint") if body.get("endpoint") else None,
        "limit": limit,
        "containers": body["containers"],
        "iocs": [i.to_dict() for i in ctx.store.iocs.list()] if body.get("iocs") else None,
        "ioc_criticality": body.get("ioc_criticality", 10),
        "store": body.get("store") is True,
    }


def _check_rules(ctx: AppContext, params: dict[str, Any]) -> None:
    """Compile the rules now, so a bad rule is a 4xx of the request, not a failed job."""
    import json

    import rules as rules_pkg

    text = "\n".join(json.dumps(r) for r in params["rules"])
    try:
        rules_pkg.Engine(rules_pkg.loads(text, source="<hunt>"), containers=params["containers"])
    except ValueError as ex:
        raise ValidationError(f"rules: {ex}") from ex


class HuntRules:
    """POST /hunt/rules {rules, since, until, endpoint, limit, store, containers, iocs}: retro-hunt.

    Gene semantics, as `heron scan`: an event with signatures is a detection even when a
    Filter rule also matched it. `containers` ({name: [values]}) are the rules' containers;
    `iocs: true` also matches the manager's IoCs as agents do (`ioc_criticality`, default 10).
    `store: true` (admins) keeps the matches as retro detections in the event store
    (`retro:true`, `EdrData.Event.Retro`), so they show up in detection searches. Runs as a
    job (`hunt_id` is its id) and waits for it: `hunt.timeout` ends it with `stopped`.
    """

    WRITE_ROLES = ALL_ROLES

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_hunt_body, _SCHEMA)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Match rules against stored events; returns the matching events."""
        params = _params(self.ctx, req)
        _check_rules(self.ctx, params)
        jobs = _jobs(self.ctx)
        job = jobs.submit(_user(req)[0], params)
        job.ended.wait()  # bounded: the job stops itself at hunt.timeout
        if job.state == "failed":
            raise ValidationError(f"retro-hunt failed: {job.error}")
        info = job.to_dict()
        envelope(
            resp,
            {
                "hunt_id": job.id,
                **{
                    k: info[k]
                    for k in ("scanned", "detections", "filtered", "rules", "containers", "iocs")
                },
                "truncated": info["truncated"],
                "stopped": "" if job.state == "done" else job.state,
                "stored": job.stored,
                "matches": job.matches,
            },
        )


class HuntJobsResource:
    """POST /hunt/jobs (same body as /hunt/rules) starts a retro-hunt job; GET lists jobs.

    `GET /hunt/jobs/{id}` shows its progress (`scanned` of about `total`, `detections`,
    `state`), `DELETE` cancels it (matches so far kept), `GET /hunt/jobs/{id}/matches` pages
    its matches by `cursor`. Users see their own jobs; admins every job.
    """

    WRITE_ROLES = ALL_ROLES
    QUERY = {"get_matches": {"cursor": "string", "limit": "integer"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_hunt_body, _SCHEMA)}

    def _job(self, req: falcon.Request, job_id: str) -> HuntJob:
        owner, admin = _user(req)
        return _jobs(self.ctx).get(uuid_param(job_id, "id"), owner=None if admin else owner)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start a retro-hunt job (202 with the job)."""
        params = _params(self.ctx, req)
        _check_rules(self.ctx, params)
        job = _jobs(self.ctx).submit(_user(req)[0], params)
        envelope(resp, job.to_dict(), status=202)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Retro-hunt jobs, newest first."""
        owner, admin = _user(req)
        envelope(resp, [j.to_dict() for j in _jobs(self.ctx).list(owner=None if admin else owner)])

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """One job's state and progress."""
        envelope(resp, self._job(req, job_id).to_dict())

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """Cancel a queued or running job."""
        job = self._job(req, job_id)
        envelope(resp, _jobs(self.ctx).cancel(job.id).to_dict())

    def on_get_matches(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        """A page of a job's matches (`next_cursor` null once it ended and all were read)."""
        job = self._job(req, job_id)
        cursor = q_str(req, "cursor", "0", 20) or "0"
        if not cursor.isdigit():
            raise ValidationError("cursor must be a number from a previous page")
        page = _jobs(self.ctx).page(
            job.id, owner=None, cursor=int(cursor), limit=q_int(req, "limit", 100, lo=1, hi=1000)
        )
        envelope(resp, page)


HUNT_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/hunt/rules", HuntRules, None),
    ("/hunt/jobs", HuntJobsResource, None),
    ("/hunt/jobs/{job_id}", HuntJobsResource, "one"),
    ("/hunt/jobs/{job_id}/matches", HuntJobsResource, "matches"),
]
