"""Content caches (rules, IoCs) under concurrent polls and writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.services.content import Content
from appliance.store import Store
from rules import wire


def _rule(name: str) -> dict[str, object]:
    return {
        "Name": name,
        "Meta": {
            "Events": {"Microsoft-Windows-Sysmon/Operational": [1]},
            "Criticality": 5,
            "Schema": "2.0.0",
            "LogType": "winevt",
        },
        "Matches": ["$i: Image ~= 'evil\\.exe$'"],
        "Condition": "$i",
    }


@pytest.fixture
def content() -> Iterator[Content]:
    with Store(":memory:") as store:
        yield Content(store, lambda: 1_780_000_000.0)


def _stall_first_read(target: object, attr: str) -> tuple[threading.Event, threading.Event]:
    """Make the first call of target.attr (in any thread) read, then wait before returning."""
    real = getattr(target, attr)
    has_read, release = threading.Event(), threading.Event()
    calls = iter(range(1_000_000))

    def stalled(*args: object, **kwargs: object) -> object:
        first = next(calls) == 0
        out = real(*args, **kwargs)
        if first:
            has_read.set()
            assert release.wait(10)
        return out

    setattr(target, attr, stalled)
    return has_read, release


def test_rules_poll_racing_a_put_cannot_restore_the_old_rules(content: Content) -> None:
    content.put_rules([_rule("Old")], update=False)
    has_read, release = _stall_first_read(content.store.rules, "all")
    poll = threading.Thread(target=content.rules_text)
    poll.start()  # an agent's GET /rules/sha256: reads the old rules, then stalls
    assert has_read.wait(10)
    content.put_rules([_rule("New")], update=False)  # the admin's POST /rules
    release.set()
    poll.join(10)
    text, sha = content.rules_text()
    assert '"Name":"New"' in text
    assert sha == wire.rules_sha256("".join(t + "\n" for t in content.store.rules.all().values()))


def test_rules_poll_racing_a_delete_cannot_restore_the_rule(content: Content) -> None:
    content.put_rules([_rule("Gone"), _rule("Kept")], update=False)
    has_read, release = _stall_first_read(content.store.rules, "all")
    poll = threading.Thread(target=content.rules_text)
    poll.start()
    assert has_read.wait(10)
    content.delete_rule("Gone")
    release.set()
    poll.join(10)
    assert '"Name":"Gone"' not in content.rules_text()[0]


def test_iocs_poll_racing_an_upsert_cannot_restore_the_old_iocs(content: Content) -> None:
    content.store.iocs.upsert([wire.Ioc("old.example", "domain", uuid="1")], 1.0)
    has_read, release = _stall_first_read(content.store.iocs, "list")
    poll = threading.Thread(target=content.iocs)
    poll.start()
    assert has_read.wait(10)
    content.store.iocs.upsert([wire.Ioc("new.example", "domain", uuid="2")], 2.0)
    assert {i["value"] for i in content.iocs()[0]} == {"old.example", "new.example"}
    release.set()
    poll.join(10)
    items, sha = content.iocs()
    assert {i["value"] for i in items} == {"old.example", "new.example"}
    assert sha == wire.iocs_sha256(items)


def test_default_rules_are_seeded_once_on_first_start(content: Content) -> None:
    from appliance.services.content import DEFAULTS_DIR

    packs = sorted(DEFAULTS_DIR.glob("*.gen"))
    assert packs, "the manager ships default rule packs"
    added = content.seed_defaults()
    assert added > 0 and len(content.rules()) == added
    assert content.rules_text()[0].strip()
    for name in list(content.rules()):
        content.delete_rule(name)
    assert content.seed_defaults() == 0  # an admin who removed them keeps them removed
    assert content.rules() == {}


def test_seeding_leaves_an_existing_rule_set_alone(content: Content) -> None:
    content.put_rules([_rule("Mine")], update=False)
    assert content.seed_defaults() == 0
    assert list(content.rules()) == ["Mine"]


def test_packs_added_by_an_upgrade_are_seeded_once(content: Content, tmp_path: Path) -> None:
    from appliance.services.content import DEFAULTS_SEEDED

    first, later = tmp_path / "linux.gen", tmp_path / "zz-new.gen"
    first.write_text(json.dumps(_rule("A")) + "\n")
    later.write_text(json.dumps(_rule("B")) + "\n" + json.dumps(_rule("A")) + "\n")
    # a data dir seeded by the version that recorded no pack names (only linux.gen existed)
    content.store.settings.put(DEFAULTS_SEEDED, {"rules": 1}, 0.0)
    content.put_rules([_rule("A")], update=False)
    assert content.seed_defaults([first, later]) == 1  # B; A is there already
    assert sorted(content.rules()) == ["A", "B"]
    content.delete_rule("B")
    assert content.seed_defaults([first, later]) == 0  # deleted stays deleted
    assert content.store.settings.get(DEFAULTS_SEEDED)["packs"] == ["linux.gen", "zz-new.gen"]


def test_a_store_that_had_its_own_rules_never_gets_default_packs(
    content: Content, tmp_path: Path
) -> None:
    pack = tmp_path / "new.gen"
    pack.write_text(json.dumps(_rule("B")) + "\n")
    content.put_rules([_rule("Mine")], update=False)
    assert content.seed_defaults([]) == 0
    assert content.seed_defaults([pack]) == 0
    assert list(content.rules()) == ["Mine"]


def test_update_hashes_are_cached_until_what_they_hash_changes(content: Content) -> None:
    from appliance.store import Endpoint

    store = content.store
    store.endpoints.create(Endpoint("u1"))
    store.endpoints.create(Endpoint("u2"))
    content.put_sysmon("windows", "4.90", '<Sysmon schemaversion="4.90"/>')
    store.tools.put("sysmon", "windows", b"MZ" + b"\0" * 4096, 1.0)
    queries: list[str] = []
    real = store.db.query

    def counted(sql: str, params: object = ()) -> object:
        queries.append(sql)
        return real(sql, params)  # type: ignore[arg-type]

    store.db.query = counted  # type: ignore[method-assign,assignment]

    def fresh(uuid: str) -> dict[str, str | None]:  # what the handler computed per request
        config = store.endpoints.get(uuid).config
        sysmon = content.sysmon("windows")
        tools = store.tools.list(os_name="windows")
        return {
            "rules": content.rules_text()[1],
            "iocs": content.iocs()[1],
            "config": None if config is None else wire.config_sha256(config),
            "sysmon": None if sysmon is None else sysmon["XmlSha256"],
            "tools": wire.tools_sha256({t["name"]: t for t in tools}),
        }

    first = content.update_hashes("u1", "windows")
    assert first == fresh("u1") and first["config"] is None and first["sysmon"]
    assert not any("data" in q.split("FROM")[0] for q in queries)  # no tool binary read
    queries.clear()
    for _ in range(5):  # unchanged state: no query at all
        assert content.update_hashes("u1", "windows") == first
    assert queries == []
    store.documents.put("agent-counters", "u1", "{}", "", 2.0)  # not distributed: kept
    store.endpoints.update("u2", config={"x": 1})
    content.update_hashes("u1", "windows")
    assert queries == [] or all("endpoints" in q for q in queries)
    assert content.update_hashes("u2", "windows")["config"] == wire.config_sha256({"x": 1})
    store.endpoints.update("u1", config={"y": 2})
    content.put_sysmon("windows", "4.91", '<Sysmon schemaversion="4.91"/>')
    store.tools.put("osqueryi", "windows", b"MZ2", 3.0)
    changed = content.update_hashes("u1", "windows")
    assert changed == fresh("u1")
    assert all(changed[k] != first[k] for k in ("config", "sysmon", "tools"))
    store.tools.delete("osqueryi", "windows")
    assert content.update_hashes("u1", "windows")["tools"] == first["tools"]


def test_update_hashes_keep_a_bounded_cache(content: Content) -> None:
    from appliance.services.content import ITEM_KEYS
    from appliance.store import Endpoint

    content.store.endpoints.create(Endpoint("u1"))
    for i in range(ITEM_KEYS * 3):  # client-chosen os/version texts
        assert content.update_hashes("u1", f"os-{i}", str(i))["sysmon"] is None
    assert len(content._item_hashes) <= ITEM_KEYS
