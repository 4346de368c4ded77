"""Uploads and disk: per-endpoint quota of unfinished chunks, expiry, free-space guard."""

from __future__ import annotations

import base64
import hashlib
import os
import time

from appliance.services.diskguard import DiskGuard
from rules import wire

from .conftest import Env, event


def _chunk(name: str, k: int, total: int, data: bytes, size: int) -> dict[str, object]:
    return wire.UploadChunk(
        filename=name,
        guid="{AAAAAAAA-2222-3333-4444-555555555555}",
        event_hash="e" * 40,
        content=base64.b64encode(data).decode(),
        chunk=k,
        total=total,
        sha256=hashlib.sha256(b"x").hexdigest(),
        size=size,
    ).to_dict()


def test_unfinished_chunks_have_a_per_endpoint_quota_and_expire(env: Env) -> None:
    agent, other = env.enroll("a"), env.enroll("b")
    arts = env.ctx.artifacts
    arts.parts_quota = 3 * 1024 * 1024
    piece = os.urandom(1024 * 1024)
    for k in (1, 2, 3):  # never the last chunk: the upload stays unfinished
        res = env.e("POST", "/upload/dumps", agent, json=_chunk("f.bin", k, 10, piece, 10 << 20))
        assert res.status_code == 200, res.text
    res = env.e("POST", "/upload/dumps", agent, json=_chunk("f.bin", 4, 10, piece, 10 << 20))
    assert res.status_code == 429 and "upload_parts_quota" in res.json["error"]
    assert res.headers["Retry-After"] == "300"
    res = env.e("POST", "/upload/dumps", other, json=_chunk("g.bin", 1, 10, piece, 10 << 20))
    assert res.status_code == 200  # another endpoint's quota
    old = time.time() - arts.expiry - 60
    for part in (arts.root / agent.uuid).glob("*/*/.parts/*"):
        os.utime(part, (old, old))
    assert arts.sweep(force=True) == 3
    res = env.e("POST", "/upload/dumps", agent, json=_chunk("f.bin", 4, 10, piece, 10 << 20))
    assert res.status_code == 200


def test_free_space_guard_answers_503_and_reports_health(env: Env) -> None:
    agent = env.enroll()
    free = [10 << 30]
    now = [0.0]
    guard = DiskGuard(env.ctx.data_dir, 1 << 30, clock=lambda: now[0], usage=lambda p: free[0])
    env.ctx.disk = env.ctx.ingest.disk = env.ctx.artifacts.disk = guard
    assert env.post_logs(agent, [event(1)]).status_code == 200
    assert env.a("GET", "/healthz").json["disk"]["ok"] is True
    free[0], now[0] = 100 << 20, 2.0  # read again after a second
    res = env.post_logs(agent, [event(2)])
    assert res.status_code == 503 and res.headers["Retry-After"] == "60"
    assert "min_free_bytes" in res.json["error"]
    res = env.e("POST", "/upload/dumps", agent, json=_chunk("f.bin", 1, 2, b"abc", 6))
    assert res.status_code == 503
    health = env.a("GET", "/healthz").json
    assert health["status"] == "degraded" and health["disk"]["ok"] is False
    free[0], now[0] = 10 << 30, 4.0
    assert env.post_logs(agent, [event(3)]).status_code == 200
    assert guard.refused == 2
