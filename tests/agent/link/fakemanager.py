"""An in-memory manager for link unit tests: every endpoint route, as a MemoryTransport handler."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from typing import Any

from agent.link.errors import TransportError
from agent.link.transport import Request, Response
from rules import wire


class FakeManager:
    def __init__(self) -> None:
        self.up = True
        self.batches: dict[str, list[dict]] = {}
        self.commands: list[dict] = []
        self.results: list[dict] = []
        self.rules = ""
        self.iocs: list[dict] = []
        self.config: dict | None = None
        self.sysmon: bytes | None = None
        self.sysinfo: list[dict] = []
        self.parts: dict[tuple[str, str, str], dict[int, bytes]] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.fail_upload_at: int | None = None
        self.result_status = 200
        self.tools: dict[str, bytes] = {}

    def __call__(self, req: Request) -> Response:
        if not self.up:
            raise TransportError("connection refused", path=req.path)
        path = req.path.split("?")[0]
        handler = getattr(self, "_" + req.method.lower() + path.replace("/", "_"), None)
        if handler is None:
            return Response(404, b"no route")
        return handler(req)

    def events(self) -> list[dict]:
        return [e for b in self.batches.values() for e in b]

    def _post_logs(self, req: Request) -> Response:
        bid = req.headers[wire.HEADER_BATCH_ID]
        dup = bid in self.batches
        if not dup:
            self.batches[bid] = [json.loads(x) for x in gzip.decompress(req.body).splitlines()]
        return Response(
            200,
            json.dumps(
                {"batch_id": bid, "accepted": len(self.batches[bid]), "duplicate": dup}
            ).encode(),
        )

    def _get_commands(self, req: Request) -> Response:
        if not self.commands:
            return Response(204)
        return Response(200, json.dumps(self.commands.pop(0)).encode())

    def _post_commands(self, req: Request) -> Response:
        if self.result_status == 200:
            self.results.append(json.loads(req.body))
        return Response(self.result_status)

    def _get_rules_sha256(self, req: Request) -> Response:
        return Response(200, wire.rules_sha256(self.rules).encode())

    def _get_rules(self, req: Request) -> Response:
        return Response(200, self.rules.encode())

    def _get_iocs_sha256(self, req: Request) -> Response:
        return Response(200, wire.iocs_sha256(self.iocs).encode())

    def _get_iocs(self, req: Request) -> Response:
        return Response(200, json.dumps(self.iocs).encode())

    def _get_config_sha256(self, req: Request) -> Response:
        if self.config is None:
            return Response(204)
        return Response(200, wire.config_sha256(self.config).encode())

    def _post_config(self, req: Request) -> Response:
        if self.config is not None:
            return Response(403, b"already set")
        self.config = json.loads(req.body)
        return Response(200, json.dumps({"sha256": wire.config_sha256(self.config)}).encode())

    def _get_config(self, req: Request) -> Response:
        return Response(200, json.dumps(self.config).encode())

    def _get_sysmon_config_sha256(self, req: Request) -> Response:
        if self.sysmon is None:
            return Response(204)
        return Response(200, json.loads(self.sysmon)["XmlSha256"].encode())

    def _get_sysmon_config(self, req: Request) -> Response:
        return Response(200, self.sysmon or b"")

    def _post_info_system(self, req: Request) -> Response:
        self.sysinfo.append(json.loads(req.body))
        return Response(200)

    def _post_upload_dumps(self, req: Request) -> Response:
        c = wire.UploadChunk.from_dict(json.loads(req.body))
        if self.fail_upload_at == c.chunk:
            self.fail_upload_at = None
            raise TransportError("reset", path=req.path)
        key = (c.guid, c.event_hash, c.filename)
        self.parts.setdefault(key, {})[c.chunk] = base64.b64decode(c.content)
        if c.chunk == c.total:
            parts = self.parts.pop(key)
            if sorted(parts) != list(range(1, c.total + 1)):
                return Response(409, b"missing chunks")
            data = b"".join(parts[i] for i in range(1, c.total + 1))
            if hashlib.sha256(data).hexdigest() != c.sha256:
                return Response(422, b"sha256 mismatch")
            self.files[key] = data
        return Response(200)

    def _get_tools(self, req: Request) -> Response:
        query = dict(p.split("=", 1) for p in req.path.partition("?")[2].split("&") if p)
        out = {}
        for name, data in self.tools.items():
            sha = hashlib.sha256(data).hexdigest()
            if query.get("hash") and query["hash"] != sha:
                continue
            item: dict[str, Any] = {
                "name": name,
                "alias": name,
                "os": query.get("os", ""),
                "size": len(data),
                "metadata": {"sha256": sha},
            }
            if query.get("binary") == "true":
                item["binary"] = base64.b64encode(data).decode()
            out[name] = item
        return Response(200, json.dumps(out).encode())
