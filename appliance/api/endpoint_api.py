"""The endpoint (agent-facing) API: WHIDS routes over mutual TLS (docs/reference/whids.md §2.3,
rules/wire.py).

Success bodies are raw (no envelope), as WHIDS agents expect; errors use the JSON envelope.
Every responder finds the caller in `req.context.endpoint` (middleware, from the certificate).
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from rules import wire

from ..core.errors import Forbidden, ValidationError
from ..runtime.context import AppContext
from ..services.bodies import read_bounded
from ..store import CommandRecord, CommandState
from .common import json_raw, q_bool, q_str, raw
from .middleware import JsonBody, message
from .openapi import FalconApp

__all__ = ["add_endpoint_routes"]

logger = logging.getLogger(__name__)

_ENROLL_SCHEMA = {
    "type": "object",
    "required": ["token", "csr_pem"],
    "properties": {
        "token": {"type": "string"},
        "csr_pem": {"type": "string"},
        "hostname": {"type": "string"},
    },
}
_RESULT_SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string"},
        "exit_code": {"type": ["integer", "null"]},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "error": {"type": "string"},
        "json": {},
        "fetched": {"type": "array"},
        "started": {"type": "string"},
        "finished": {"type": "string"},
    },
}
_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["filename", "guid", "event_hash", "content", "chunk", "total", "sha256"],
    "properties": {
        "filename": {"type": "string"},
        "guid": {"type": "string"},
        "event_hash": {"type": "string"},
        "content": {"type": "string"},
        "chunk": {"type": "integer"},
        "total": {"type": "integer"},
        "sha256": {"type": "string"},
        "size": {"type": "integer"},
    },
}


def _upload_chunk(data: Any) -> wire.UploadChunk:
    if isinstance(data, dict) and "event-hash" in data and "event_hash" not in data:
        data = {**data, "event_hash": data["event-hash"]}  # WHIDS spelling
    chunk: wire.UploadChunk = message(wire.UploadChunk)(data)
    if not all(
        isinstance(getattr(chunk, f), str)
        for f in ("filename", "guid", "event_hash", "content", "sha256")
    ):
        raise ValidationError("filename, guid, event_hash, content and sha256 must be strings")
    return chunk


def _dict_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("expected a JSON object")
    return data


def command_message(cmd: CommandRecord) -> dict[str, Any]:
    """The /commands JSON object of a queued command (both the front and waitress answer it)."""
    return wire.Command(
        id=cmd.id,
        name=cmd.name,
        args=list(cmd.args),
        timeout=cmd.timeout,
        drop=list(cmd.drop),
        fetch=list(cmd.fetch),
        expect_json=cmd.expect_json,
    ).to_dict()


class Enroll:
    """POST /enroll: one-time token + CSR → client certificate (no client cert needed)."""

    client_cert_optional = True

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(message(wire.EnrollRequest), _ENROLL_SCHEMA, 64 * 1024)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Enroll an endpoint with a one-time token and a CSR."""
        answer = self.ctx.identity.enroll(req.context.body, req.context.peer_ip)
        json_raw(resp, answer.to_dict())


class Renew:
    """POST /renew: a fresh certificate for the calling endpoint (near expiry)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {
            "post": JsonBody(
                _dict_body,
                {
                    "type": "object",
                    "required": ["csr_pem"],
                    "properties": {"csr_pem": {"type": "string"}},
                },
                64 * 1024,
            )
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Renew the calling endpoint's certificate."""
        csr = req.context.body.get("csr_pem")
        if not isinstance(csr, str):
            raise ValidationError("csr_pem must be a string")
        answer = self.ctx.identity.renew(req.context.endpoint, req.context.peer, csr)
        json_raw(resp, answer.to_dict())


class Key:
    """GET /key: liveness + credential check; answers the endpoint's own uuid."""

    PRODUCES = {"get": falcon.MEDIA_TEXT}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Check credentials (returns the endpoint uuid as text)."""
        self.ctx.ingest.touch(req.context.endpoint.uuid, req.context.peer_ip)
        raw(resp, req.context.endpoint.uuid)


class Logs:
    """POST /logs: a gzip NDJSON batch of events, acknowledged once durable."""

    RAW_BODY = {"post": wire.CONTENT_NDJSON}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Receive a batch of events (gzip NDJSON); 200 once durable."""
        limits = self.ctx.config.limits
        body = read_bounded(req.bounded_stream, limits.logs_body_compressed, what="/logs body")
        batch_id = req.get_header(wire.HEADER_BATCH_ID)
        if batch_id is not None and (len(batch_id) > 128 or not batch_id.isprintable()):
            raise ValidationError(f"{wire.HEADER_BATCH_ID} must be ≤ 128 printable characters")
        ack = self.ctx.ingest.ingest(
            req.context.endpoint,
            req.context.peer_ip,
            body,
            req.get_header("Content-Encoding"),
            batch_id,
        )
        json_raw(resp, ack.to_dict())


class Commands:
    """GET /commands: next queued command (204 if none); POST: a command's result."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(message(wire.CommandResult), _RESULT_SCHEMA)}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Fetch the next queued command for this endpoint."""
        ep = req.context.endpoint
        self.ctx.ingest.touch(ep.uuid, req.context.peer_ip)
        cmd = self.ctx.store.commands.next_for(ep.uuid, self.ctx.clock())
        # optional long-poll (commands.poll_wait); each waiting agent holds a
        # waitress thread, so keep it short and size server.threads accordingly.
        deadline = self.ctx.clock() + self.ctx.config.commands.poll_wait
        while cmd is None and self.ctx.clock() < deadline and not self.ctx.stopping.is_set():
            self.ctx.sleep(0.25)
            cmd = self.ctx.store.commands.next_for(ep.uuid, self.ctx.clock())
        if cmd is None:
            resp.status = falcon.HTTP_204
            return
        json_raw(resp, command_message(cmd))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Post the result of a command."""
        result: wire.CommandResult = req.context.body
        if not isinstance(result.id, str):
            raise ValidationError("id must be a string")
        ep = req.context.endpoint
        cmd = self.ctx.store.commands.get(result.id, endpoint=ep.uuid)
        if cmd.state is CommandState.CANCELLED:
            raise Forbidden("command was cancelled")
        if not self.ctx.store.commands.complete(
            ep.uuid, result.id, result.to_dict(), self.ctx.clock()
        ):
            raise Forbidden("command already has a result")
        json_raw(resp, {"id": result.id, "state": CommandState.COMPLETED.value})


class Rules:
    """GET /rules: every rule's raw JSON followed by a newline."""

    PRODUCES = {"get": falcon.MEDIA_TEXT, "get_sha256": falcon.MEDIA_TEXT}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Download the rule set."""
        raw(resp, self.ctx.content.rules_text()[0])

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Hash of the /rules body."""
        raw(resp, self.ctx.content.rules_text()[1])


class Suppressions:
    """GET /suppressions: the per-rule suppressions of this endpoint's host group."""

    PRODUCES = {"get_sha256": falcon.MEDIA_TEXT}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Download this endpoint's suppressions (rules.suppress)."""
        json_raw(resp, self.ctx.tuning.for_group(req.context.endpoint.group)[0])

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Hash of this endpoint's suppressions (rules.suppress.suppressions_sha256)."""
        raw(resp, self.ctx.tuning.for_group(req.context.endpoint.group)[1])


class Iocs:
    """GET /iocs: the IoC list (wire.Ioc objects)."""

    PRODUCES = {"get": falcon.MEDIA_JSON, "get_sha256": falcon.MEDIA_TEXT}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Download the IoCs."""
        json_raw(resp, self.ctx.content.iocs()[0])

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Order-independent hash of the IoCs (wire.iocs_sha256)."""
        raw(resp, self.ctx.content.iocs()[1])


class Config:
    """GET /config: this endpoint's agent config (204 if none); POST: offer one (403 if set)."""

    PRODUCES = {"get": falcon.MEDIA_JSON, "get_sha256": falcon.MEDIA_TEXT}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_dict_body, {"type": "object"})}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Download this endpoint's agent configuration."""
        config = self.ctx.store.endpoints.get(req.context.endpoint.uuid).config
        if config is None:
            resp.status = falcon.HTTP_204
            return
        json_raw(resp, config)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Offer the agent's own configuration (accepted only when none is set)."""
        ep = self.ctx.store.endpoints.get(req.context.endpoint.uuid)
        if ep.config is not None:
            raise Forbidden("the manager already holds a configuration for this endpoint")
        self.ctx.store.endpoints.update(ep.uuid, config=req.context.body)
        json_raw(resp, {"sha256": wire.config_sha256(req.context.body)})

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Hash of this endpoint's configuration (204 if none)."""
        config = self.ctx.store.endpoints.get(req.context.endpoint.uuid).config
        if config is None:
            resp.status = falcon.HTTP_204
            return
        raw(resp, wire.config_sha256(config))


class SysmonConfig:
    """GET /sysmon/config?os=&version=: the Sysmon configuration for this OS (204 if none)."""

    PRODUCES = {"get": falcon.MEDIA_JSON, "get_sha256": falcon.MEDIA_TEXT}
    QUERY = {
        "get": {"os": "string", "version": "string"},
        "get_sha256": {"os": "string", "version": "string"},
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def _doc(self, req: falcon.Request) -> dict[str, Any] | None:
        return self.ctx.content.sysmon(
            q_str(req, "os", "windows", 32), q_str(req, "version", "", 32)
        )

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Download the Sysmon configuration."""
        doc = self._doc(req)
        if doc is None:
            resp.status = falcon.HTTP_204
            return
        json_raw(resp, doc)

    def on_get_sha256(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Hash of the Sysmon configuration XML."""
        doc = self._doc(req)
        if doc is None:
            resp.status = falcon.HTTP_204
            return
        raw(resp, doc["XmlSha256"])


class UploadDumps:
    """POST /upload/dumps: one chunk of an artifact file (resumable, sha256-verified)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        limit = ctx.config.limits.upload_chunk * 4 // 3 + 64 * 1024
        self.BODY = {"post": JsonBody(_upload_chunk, _UPLOAD_SCHEMA, limit)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Upload one chunk of an artifact."""
        json_raw(resp, self.ctx.artifacts.receive(req.context.endpoint.uuid, req.context.body))


class SystemInfo:
    """POST /info/system: the endpoint's system information (JSON object)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.BODY = {"post": JsonBody(_dict_body, {"type": "object"})}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Store the endpoint's system information."""
        ep = req.context.endpoint
        hostname = req.context.body.get("hostname") or req.context.body.get("Hostname")
        changes: dict[str, Any] = {"system_info": req.context.body}
        if isinstance(hostname, str) and hostname and not ep.hostname:
            changes["hostname"] = hostname[:255]
        self.ctx.store.endpoints.update(ep.uuid, **changes)
        json_raw(resp, {"stored": True})


class Tools:
    """GET /tools?os=&hash=&binary=: tools the endpoint may install."""

    QUERY = {"get": {"os": "string", "hash": "string", "binary": "boolean"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """List tools (with base64 binaries when binary=true)."""
        tools = self.ctx.store.tools.list(
            os_name=q_str(req, "os", "", 32),
            hash_value=q_str(req, "hash", "", 128),
            binary=q_bool(req, "binary"),
        )
        json_raw(resp, {t["name"]: t for t in tools})


class Updates:
    """GET /updates?os=&version=: every update hash at once (rules/IoCs/config/Sysmon/tools)."""

    QUERY = {"get": {"os": "string", "version": "string"}}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Hashes of every distributable item (null: none set for this endpoint)."""
        json_raw(
            resp,
            self.ctx.content.update_hashes(
                req.context.endpoint.uuid,
                q_str(req, "os", "windows", 32),
                q_str(req, "version", "", 32),
            ),
        )


def add_endpoint_routes(app: FalconApp, ctx: AppContext) -> None:
    """Mount the endpoint API."""
    app.add_route(wire.ROUTE_ENROLL, Enroll(ctx))
    app.add_route(wire.ROUTE_RENEW, Renew(ctx))
    app.add_route(wire.ROUTE_KEY, Key(ctx))
    app.add_route(wire.ROUTE_LOGS, Logs(ctx))
    app.add_route(wire.ROUTE_COMMANDS, Commands(ctx))
    rules = Rules(ctx)
    app.add_route(wire.ROUTE_RULES, rules)
    app.add_route(wire.ROUTE_RULES_SHA256, rules, suffix="sha256")
    suppressions = Suppressions(ctx)
    app.add_route(wire.ROUTE_SUPPRESSIONS, suppressions)
    app.add_route(wire.ROUTE_SUPPRESSIONS_SHA256, suppressions, suffix="sha256")
    iocs = Iocs(ctx)
    app.add_route(wire.ROUTE_IOCS, iocs)
    app.add_route(wire.ROUTE_IOCS_SHA256, iocs, suffix="sha256")
    config = Config(ctx)
    app.add_route(wire.ROUTE_CONFIG, config)
    app.add_route(wire.ROUTE_CONFIG_SHA256, config, suffix="sha256")
    sysmon = SysmonConfig(ctx)
    app.add_route(wire.ROUTE_SYSMON_CONFIG, sysmon)
    app.add_route(wire.ROUTE_SYSMON_CONFIG_SHA256, sysmon, suffix="sha256")
    app.add_route(wire.ROUTE_UPLOAD_DUMPS, UploadDumps(ctx))
    app.add_route(wire.ROUTE_SYSTEM_INFO, SystemInfo(ctx))
    app.add_route(wire.ROUTE_TOOLS, Tools(ctx))
    app.add_route(wire.ROUTE_UPDATES, Updates(ctx))
