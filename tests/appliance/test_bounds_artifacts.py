"""Bounded artifact downloads: gunzip=true is streamed and capped."""

from __future__ import annotations

import os
import zlib
from dataclasses import replace

from .conftest import Env
from .test_admin_api import _upload


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _zeros_gz(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [comp.compress(block) for _ in range(size >> 20)]
    return b"".join(out) + comp.flush()


def test_gunzip_bomb_download_is_streamed_and_capped(env: Env) -> None:
    agent = env.enroll()
    bomb = _zeros_gz(256 << 20)  # 256 MiB of zeros in ~250 KB
    assert len(bomb) < 1 << 20
    _upload(env, agent, "dump.gz", bomb, chunk_size=1 << 20)
    base = env.a("GET", f"/endpoints/{agent.uuid}/artifacts").json["data"][0]["base-url"]
    url = base + "dump.gz"
    before = _rss()
    res = env.a("GET", url + "?raw=true&gunzip=true")
    assert res.status_code == 200 and res.headers["content-length"] == str(256 << 20)
    del res  # the test client joins the stream; the manager held a chunk at a time
    env.ctx.config = replace(
        env.ctx.config, limits=replace(env.ctx.config.limits, upload_size=64 << 20)
    )
    res = env.a("GET", url + "?raw=true&gunzip=true")
    assert res.status_code == 413 and "without gunzip" in res.json["error"]
    res = env.a("GET", url + "?gunzip=true")  # base64 in JSON: at most 64 MiB inline
    assert res.status_code == 413
    assert _rss() - before < 600 << 20  # the test client's own 256 MiB copy included
    res = env.a("GET", url + "?raw=true")
    assert res.status_code == 200 and res.content == bomb
