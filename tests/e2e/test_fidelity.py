"""Fidelity end to end (issue 25): agent replay → manager → retro-hunt and search.

The 177 EVTX files of ../shared/corpus are replayed by a real `heron-agent run --replay`,
enrolled over mutual TLS with `log_all`, into a real `heron-manager`. Then:

* every replayed event is stored, as Gene's EVTX rendering gives it (gene-oracle events);
* `POST /hunt/rules` with the full gene-rules `compiled.gen` gives exactly the 1,046 detections
  of ../shared/gene-oracle (same signatures, same Criticality), Filter rule included;
* `Field:"value"` finds every stored event holding that value, for sampled values of every
  indexed field (paths with spaces and parentheses included; names with spaces or colons
  quoted; the three Sysmon time fields of `index.schema.NOT_INDEXED` are not indexed).

Run time: about 2–3 minutes on an idle 2-core box (replay ~1 min, the searches the rest).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote as urlquote

import orjson
import pytest

from index.schema import NOT_INDEXED
from tests.conftest import SHARED

from .harness import PY, ROOT, ManagerProc, agent_env, enroll_cli, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (SHARED / "gene-oracle").is_dir(),
        reason="../shared (corpus + gene-oracle) is not present",
    ),
]

CORPUS = SHARED / "corpus"
ORACLE = SHARED / "gene-oracle"
FAST = {"batch_delay": 0.05, "backoff_base": 0.1, "backoff_cap": 0.5, "fsync_interval": 0.0}
REPLAY_LIMIT = 900.0  # s: generous for a loaded box; an idle one needs about a minute


def _canon(event: dict[str, Any]) -> bytes:
    inner = dict(event["Event"])
    inner.pop("EdrData", None)
    inner.pop("Detection", None)
    return orjson.dumps({**event, "Event": inner}, option=orjson.OPT_SORT_KEYS)


@pytest.fixture(scope="module")
def oracle_events() -> list[dict[str, Any]]:
    with gzip.open(ORACLE / "corpus-events.jsonl.gz") as fh:
        return [orjson.loads(line)["event"] for line in fh]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagerProc, str]]:
    tmp = tmp_path_factory.mktemp("fidelity")
    manager = ManagerProc(tmp / "manager")
    manager.start()
    try:
        data = tmp / "agent"
        uid = enroll_cli(manager, data / "link")
        (data / "link" / "link.toml").write_text("\n".join(f"{k} = {v}" for k, v in FAST.items()))
        config = tmp / "agent.toml"
        config.write_text(f'[general]\ndata_dir = "{data}"\nlog_all = true\n')
        files = sorted(str(p) for p in (CORPUS / "EVTX-ATTACK-SAMPLES").rglob("*.evtx"))
        assert len(files) == 177
        out = subprocess.run(
            [PY, "-m", "agent.cli", "run", "-c", str(config), "--replay", *files],
            capture_output=True,
            env=agent_env(),
            cwd=ROOT,
            timeout=REPLAY_LIMIT,
        )
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        yield manager, uid
    finally:
        manager.stop()


AGENT_CHANNEL = "Heron-Agent"  # the agent's own health events (rule state, counters)
NOT_AGENT = f'NOT channel:"{AGENT_CHANNEL}"'


def _count_sql(manager: ManagerProc, where: str) -> int:
    rows = manager.admin(
        "POST", "/hunt/sql", {"query": f"SELECT count(*) FROM events WHERE {where}"}
    )["rows"]
    return int(rows[0][0])


def _count(manager: ManagerProc, uid: str) -> int:
    """Events stored for `uid`, as both SQL (DuckDB) and search (Tantivy) see them."""
    rows = manager.admin(
        "POST",
        "/hunt/sql",
        {
            "query": f"SELECT count(*) FROM events WHERE endpoint = '{uid}' AND channel != "
            f"'{AGENT_CHANNEL}'"
        },
    )["rows"]
    searched = manager.admin("GET", f"/search?endpoint={uid}&limit=1&q={urlquote(NOT_AGENT)}")[
        "total"
    ]
    return min(int(rows[0][0]), int(searched))


def _search_all(manager: ManagerProc, query: str, uid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/search?endpoint={uid}&limit=10000&q={urlquote(query)}"
        if cursor:
            path += f"&cursor={urlquote(cursor)}"
        page = manager.admin("GET", path)
        events += page["events"]
        cursor = page["next_cursor"]
        if not cursor:
            return events


def test_every_replayed_event_is_stored(
    replayed: tuple[ManagerProc, str], oracle_events: list[dict[str, Any]]
) -> None:
    manager, uid = replayed
    wait_for(
        lambda: _count(manager, uid) >= len(oracle_events),
        timeout=REPLAY_LIMIT,
        what=lambda: f"{len(oracle_events)} events stored, have {_count(manager, uid)}",
    )
    stored = _search_all(manager, NOT_AGENT, uid)  # the agent's own health events aside
    assert len(stored) == len(oracle_events) == 5371
    assert Counter(map(_canon, stored)) == Counter(map(_canon, oracle_events))


def _oracle_detections() -> Counter[tuple[Any, ...]]:
    out: Counter[tuple[Any, ...]] = Counter()
    for line in (ORACLE / "gene-detections-corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        out[
            (
                d["channel"],
                d["record_id"],
                d["computer"],
                d["time"],
                tuple(d["signatures"]),
                d["severity"],
            )
        ] += 1
    return out


def test_retro_hunt_gives_exactly_the_gene_detections(
    replayed: tuple[ManagerProc, str], oracle_events: list[dict[str, Any]]
) -> None:
    manager, uid = replayed
    wait_for(
        lambda: _count(manager, uid) >= len(oracle_events),
        timeout=REPLAY_LIMIT,
        what="every event stored",
    )
    rules = [
        json.loads(line)
        for line in (CORPUS / "gene-rules" / "compiled.gen").read_text().splitlines()
        if line.strip()
    ]
    assert any(r["Meta"].get("Filter") for r in rules)  # ProcessCreate, as users load them
    # scanned: the replayed events plus the agent's own health events (no rule matches those)
    health = f"endpoint = '{uid}' AND channel = '{AGENT_CHANNEL}'"
    before = _count_sql(manager, health)
    res = manager.admin("POST", "/hunt/rules", {"rules": rules, "endpoint": uid, "limit": 10000})
    after = _count_sql(manager, health)  # the agent may report once more meanwhile
    assert len(oracle_events) + before <= res["scanned"] <= len(oracle_events) + after
    assert not res["truncated"]
    assert res["detections"] == len(res["matches"]) == 1046
    got: Counter[tuple[Any, ...]] = Counter()
    for ev in res["matches"]:
        system, det = ev["Event"]["System"], ev["Event"]["Detection"]
        got[
            (
                system["Channel"],
                int(system["EventRecordID"]),
                system["Computer"],
                system["TimeCreated"]["SystemTime"],
                tuple(det["Signature"]),
                det["Criticality"],
            )
        ] += 1
    assert got == _oracle_detections()


def _field_values(event: dict[str, Any]) -> Iterator[tuple[str, str]]:
    inner = event["Event"]
    for section in ("EventData", "UserData"):
        yield from _flat(inner.get(section))


def _flat(section: Any) -> Iterator[tuple[str, str]]:
    if isinstance(section, dict):
        for key, value in section.items():
            if isinstance(value, str):
                yield key, value
            elif isinstance(value, dict):
                yield from _flat(value)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_field_value_search_finds_every_holder(
    replayed: tuple[ManagerProc, str], oracle_events: list[dict[str, Any]]
) -> None:
    manager, uid = replayed
    wait_for(
        lambda: _count(manager, uid) >= len(oracle_events),
        timeout=REPLAY_LIMIT,
        what="every event stored",
    )
    holders: dict[tuple[str, str], set[bytes]] = {}
    for ev in oracle_events:
        key = _canon(ev)
        for name, value in _field_values(ev):
            if value.strip() and name.lower() not in NOT_INDEXED:
                holders.setdefault((name.lower(), value), set()).add(key)
    by_field: dict[str, list[str]] = {}
    for name, value in holders:
        by_field.setdefault(name, []).append(value)
    rng = random.Random(25)
    samples = [(name, rng.choice(sorted(values))) for name, values in sorted(by_field.items())]
    tricky = sorted(k for k in holders if "(" in k[1] and " " in k[1] and "\\" in k[1])
    assert tricky, "the corpus has Windows paths with spaces and parentheses"
    samples += rng.sample(tricky, min(20, len(tricky)))
    missed = []
    for name, value in samples:
        field = name if re.fullmatch(r"[A-Za-z_@][A-Za-z0-9_.@-]*", name) else _quote(name)
        found = {_canon(e) for e in _search_all(manager, f"{field}:{_quote(value)}", uid)}
        if not holders[(name, value)] <= found:
            missed.append((name, value, len(holders[(name, value)] - found)))
    assert not missed, [m for m in missed if " " not in m[0]][:20] or missed[:10]
    assert len(samples) > 100
