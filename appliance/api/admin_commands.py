"""Admin API, command queue: queue commands for endpoints, follow them, read their results.

A real queue per endpoint (ids, order, history, timeouts) instead of WHIDS's single overwritten
slot; both the WHIDS body (`command-line`, nanosecond `timeout`) and Heron's are accepted.
"""

from __future__ import annotations

import base64
import shlex
import uuid as uuidlib
from typing import Any

import falcon

from ..core.errors import InvalidParam, NotFound, ValidationError
from ..runtime.context import AppContext
from ..store import CommandRecord, CommandState
from .admin_fleet import _obj, _str
from .common import envelope, q_bool, q_int, uuid_param
from .middleware import JsonBody

__all__ = ["COMMAND_ROUTES"]


def _command_from_body(body: dict[str, Any], default_timeout: float) -> dict[str, Any]:
    """WHIDS `{command-line, fetch-files, drop-files, timeout(ns)}` or Heron `{name, args, ...}`."""
    if "command-line" in body:
        line = _str(body, "command-line", "", 8192)
        try:
            # quotes group words, backslashes stay (Windows paths).
            lexer = shlex.shlex(line, posix=True)
            lexer.whitespace_split, lexer.escape = True, ""
            argv = list(lexer)
        except ValueError as ex:
            raise ValidationError(f"command-line: {ex}") from ex
        timeout_ns = body.get("timeout") or 0
        if not isinstance(timeout_ns, int | float) or isinstance(timeout_ns, bool):
            raise ValidationError("timeout must be a number (nanoseconds in WHIDS form)")
        timeout = timeout_ns / 1e9 if timeout_ns else default_timeout
        fetch, drop = body.get("fetch-files") or [], body.get("drop-files") or []
    else:
        name = _str(body, "name", "", 1024)
        args = body.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValidationError("args must be a list of strings")
        argv = [name, *args] if name else []
        timeout = body.get("timeout", default_timeout)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            raise ValidationError("timeout must be a number of seconds")
        fetch, drop = body.get("fetch") or [], body.get("drop") or []
    if not argv or not argv[0]:
        raise ValidationError("a command name is required")
    if not isinstance(fetch, list) or not all(isinstance(f, str) for f in fetch):
        raise ValidationError("fetch files must be a list of paths")
    # Security: dropped files are sent inline ({name, data base64}); WHIDS read paths
    # on the manager host, which let any admin-API caller read manager files.
    if not isinstance(drop, list) or not all(
        isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("data"), str)
        for d in drop
    ):
        raise ValidationError("drop files must be objects {name, data (base64)}")
    if not 0 < float(timeout) <= 86400:
        raise ValidationError("timeout must be between 0 and 86400 seconds")
    return {
        "name": argv[0],
        "args": tuple(argv[1:]),
        "fetch": tuple(fetch),
        "drop": tuple({"name": d["name"], "data": d["data"]} for d in drop),
        "timeout": float(timeout),
        "expect_json": bool(body.get("expect_json", False)),
    }


def _whids_command(cmd: CommandRecord) -> dict[str, Any]:
    """A command as WHIDS's `EndpointCommand` shows it, plus Heron's fields.

    WHIDS has the result at the top level: `stdout`/`stderr` base64 (Go `[]byte`), `json`,
    `error`; Heron's `result` (text output, exit code, fetched files) stays beside them.
    """
    result = cmd.result or {}
    return {
        **cmd.to_dict(),
        "stdout": base64.b64encode(str(result.get("stdout") or "").encode()).decode(),
        "stderr": base64.b64encode(str(result.get("stderr") or "").encode()).decode(),
        "json": result.get("json"),
        "error": str(result.get("error") or ""),
        "background": False,
    }


class EndpointCommand:
    """POST /endpoints/{uuid}/command queues a command; GET shows the latest (wait=true)."""

    QUERY = {"get": {"wait": "boolean", "timeout": "integer"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _obj,
                {
                    "type": "object",
                    "properties": {
                        "command-line": {"type": "string"},
                        "name": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "timeout": {"type": "number"},
                        "fetch": {"type": "array"},
                        "drop": {"type": "array"},
                        "fetch-files": {"type": "array"},
                        "drop-files": {"type": "array"},
                        "expect_json": {"type": "boolean"},
                    },
                },
            )
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Queue a command for the endpoint; returns the endpoint with the command."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        spec = _command_from_body(req.context.body, self.ctx.config.commands.default_timeout)
        cmd = CommandRecord(
            id=str(uuidlib.uuid4()),
            endpoint=ep.uuid,
            created=self.ctx.clock(),
            issuer=getattr(req.context.user, "identifier", ""),
            **spec,
        )
        self.ctx.store.commands.add(cmd)
        envelope(
            resp, dict(ep.to_dict(score=self.ctx.reducer.bounded(ep.uuid)), command=cmd.to_dict())
        )

    def _latest(self, uuid: str) -> CommandRecord:
        self.ctx.store.commands.expire(self.ctx.clock(), self.ctx.config.commands.result_timeout)
        history = self.ctx.store.commands.history(uuid, limit=1)
        if not history:
            raise NotFound("endpoint has no command")
        return history[0]

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """The endpoint's latest command; wait=true blocks until it completes (≤ timeout s)."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        cmd = self._latest(ep.uuid)
        if q_bool(req, "wait"):
            deadline = self.ctx.clock() + q_int(req, "timeout", 30, lo=0, hi=60)
            while cmd.state in (CommandState.QUEUED, CommandState.SENT) and (
                self.ctx.clock() < deadline
            ):
                self.ctx.sleep(0.05)
                cmd = self.ctx.store.commands.get(cmd.id)
        envelope(resp, _whids_command(cmd))

    def on_get_field(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, field: str
    ) -> None:
        """One field of the latest command's result (stdout, stderr, error, completed, ...)."""
        cmd = self._latest(uuid_param(uuid))
        result = cmd.result or {}
        fields = {
            "stdout": result.get("stdout", ""),
            "stderr": result.get("stderr", ""),
            "error": result.get("error", ""),
            "json": result.get("json"),
            "completed": cmd.state is CommandState.COMPLETED,
            "state": cmd.state.value,
            "fetch": result.get("fetched", []),
            "files": result.get("fetched", []),
            "exit_code": result.get("exit_code"),
        }
        if field not in fields:
            raise InvalidParam(f"field must be one of {', '.join(sorted(fields))}")
        envelope(resp, fields[field])


class EndpointCommands:
    """GET /endpoints/{uuid}/commands: command history, newest first."""

    QUERY = {"get": {"limit": "integer"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, uuid: str) -> None:
        """Command history of an endpoint."""
        ep = self.ctx.store.endpoints.get(uuid_param(uuid))
        self.ctx.store.commands.expire(self.ctx.clock(), self.ctx.config.commands.result_timeout)
        history = self.ctx.store.commands.history(
            ep.uuid, limit=q_int(req, "limit", 100, hi=10_000)
        )
        envelope(resp, [c.to_dict() for c in history])

    def on_get_one(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, cmd_id: str
    ) -> None:
        """One command with its result."""
        envelope(
            resp,
            self.ctx.store.commands.get(
                uuid_param(cmd_id, "id"), endpoint=uuid_param(uuid)
            ).to_dict(),
        )

    def on_delete_one(
        self, req: falcon.Request, resp: falcon.Response, uuid: str, cmd_id: str
    ) -> None:
        """Cancel a command that was not delivered yet."""
        cmd = self.ctx.store.commands.get(uuid_param(cmd_id, "id"), endpoint=uuid_param(uuid))
        if not self.ctx.store.commands.cancel(cmd.endpoint, cmd.id):
            raise ValidationError(
                f"command is {cmd.state.value}, only queued ones can be cancelled"
            )
        envelope(resp, self.ctx.store.commands.get(cmd.id).to_dict())


COMMAND_ROUTES: list[tuple[str, Any, str | None]] = [
    ("/endpoints/{uuid}/command", EndpointCommand, None),
    ("/endpoints/{uuid}/command/{field}", EndpointCommand, "field"),
    ("/endpoints/{uuid}/commands", EndpointCommands, None),
    ("/endpoints/{uuid}/commands/{cmd_id}", EndpointCommands, "one"),
]
