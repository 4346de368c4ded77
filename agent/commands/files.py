"""File commands: hash, rexhash, stat, ls, walk, find (WHIDS `FileInfo` shapes,
docs/reference/whids.md §1.8).

`FileInfo` is `{dir, name, size, modtime, type, hashes, error}` with `type` ∈ file/dir/link and
`hashes` = md5/sha1/sha256/sha512 (only for `hash` and `rexhash`). `error` is null or a string
(WHIDS serialised Go errors as `{}`; we say what went wrong).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat as stat_mod
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .context import CommandContext, CommandError

HASH_CHUNK = 1 << 20


def file_hashes(path: str | Path) -> dict[str, str]:
    """md5, sha1, sha256 and sha512 of a file in one read."""
    algos = {name: hashlib.new(name) for name in ("md5", "sha1", "sha256", "sha512")}
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            for h in algos.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in algos.items()}


def file_info(path: str | Path, *, hashes: bool = False) -> dict[str, Any]:
    """The WHIDS `FileInfo` of one path (errors are reported in the dict, never raised)."""
    p = Path(path)
    info: dict[str, Any] = {
        "dir": str(p.parent),
        "name": p.name,
        "size": 0,
        "modtime": "",
        "type": "",
        "error": None,
    }
    try:
        st = os.lstat(p)
    except OSError as ex:
        info["error"] = f"{type(ex).__name__}: {ex.strerror or ex}"
        return info
    info["size"] = st.st_size
    info["modtime"] = datetime.fromtimestamp(st.st_mtime, UTC).isoformat()
    if stat_mod.S_ISLNK(st.st_mode):
        info["type"] = "link"
    elif stat_mod.S_ISDIR(st.st_mode):
        info["type"] = "dir"
    else:
        info["type"] = "file"
    if hashes and info["type"] == "file":
        try:
            info["hashes"] = file_hashes(p)
        except OSError as ex:
            info["error"] = f"{type(ex).__name__}: {ex.strerror or ex}"
    return info


def _need(args: list[str], n: int, usage: str) -> None:
    if len(args) < n:
        raise CommandError(f"usage: {usage}")


def _walk(root: str, ctx: CommandContext) -> Iterator[tuple[str, list[str], list[str]]]:
    if not os.path.isdir(root):
        raise CommandError(f"not a directory: {root}")
    count = 0
    for entry in os.walk(root):
        count += len(entry[1]) + len(entry[2])
        if count > ctx.max_entries:
            raise CommandError(f"more than {ctx.max_entries} entries under {root}: narrow it")
        yield entry


def cmd_hash(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    _need(args, 1, "hash FILE")
    return file_info(args[0], hashes=True)


def cmd_stat(args: list[str], ctx: CommandContext) -> dict[str, Any]:
    _need(args, 1, "stat PATH")
    return file_info(args[0])


def cmd_ls(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    _need(args, 1, "ls DIR")
    try:
        names = sorted(os.listdir(args[0]))
    except OSError as ex:
        raise CommandError(f"cannot list {args[0]}: {ex.strerror or ex}") from ex
    return [file_info(os.path.join(args[0], n)) for n in names[: ctx.max_entries]]


def cmd_walk(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    _need(args, 1, "walk DIR")
    return [
        {"dir": d, "dirs": sorted(ds), "files": sorted(fs), "err": None}
        for d, ds, fs in _walk(args[0], ctx)
    ]


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as ex:
        raise CommandError(f"bad regex {text!r}: {ex}") from ex


def cmd_find(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    _need(args, 2, "find DIR REGEX")
    rx = _regex(args[1])
    return [
        file_info(os.path.join(d, f))
        for d, _, fs in _walk(args[0], ctx)
        for f in fs
        if rx.search(os.path.join(d, f))
    ]


def cmd_rexhash(args: list[str], ctx: CommandContext) -> list[dict[str, Any]]:
    _need(args, 2, "rexhash DIR REGEX")
    rx = _regex(args[1])
    return [
        file_info(os.path.join(d, f), hashes=True)
        for d, _, fs in _walk(args[0], ctx)
        for f in fs
        if rx.search(os.path.join(d, f))
    ]
