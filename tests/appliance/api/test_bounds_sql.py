"""POST /hunt/sql bounds: roles from config, concurrency cap, result bytes, functions."""

from __future__ import annotations

import pytest

from appliance.api.admin_search import HuntSql
from appliance.api.openapi import app_router
from appliance.core.config import Config, SqlConfig
from appliance.core.errors import ConfigError
from tests.appliance.conftest import Env, event


def test_plugin_role_may_not_run_sql_by_default(env: Env) -> None:
    q = {"query": "SELECT 1"}
    assert env.a("POST", "/hunt/sql", key=env.plugin_key, json=q).status_code == 403
    assert env.a("POST", "/hunt/sql", key=env.analyst_key, json=q).status_code == 200
    assert env.a("POST", "/hunt/sql", json=q).status_code == 200


def test_roles_are_configurable_and_checked() -> None:
    assert SqlConfig().roles == ("admin", "analyst")
    cfg = Config.from_dict({"sql": {"roles": ["admin"]}})
    assert cfg.sql.roles == ("admin",)
    with pytest.raises(ConfigError, match="unknown role"):
        Config.from_dict({"sql": {"roles": ["root"]}})


def test_concurrency_cap_answers_429(env: Env) -> None:
    found = app_router(env.admin.app).find("/hunt/sql")
    assert found is not None
    route = found[0]
    assert isinstance(route, HuntSql)
    cap = env.ctx.config.sql.concurrency
    for _ in range(cap):  # `cap` queries running
        assert route._slots.acquire(blocking=False)
    try:
        res = env.a("POST", "/hunt/sql", json={"query": "SELECT 1"})
        assert res.status_code == 429 and res.headers["Retry-After"] == "2"
        assert "sql.concurrency" in res.json["error"]
    finally:
        for _ in range(cap):
            route._slots.release()
    assert env.a("POST", "/hunt/sql", json={"query": "SELECT 1"}).status_code == 200


def test_table_functions_outside_the_allowlist_are_400(env: Env) -> None:
    agent = env.enroll()
    assert env.post_logs(agent, [event(1)]).status_code == 200
    for q in ("SELECT * FROM checkpoint()", "SELECT current_setting('allowed_paths')"):
        res = env.a("POST", "/hunt/sql", json={"query": q})
        assert res.status_code == 400 and "not allowed" in res.json["error"]
        assert str(env.ctx.data_dir) not in res.text


def test_memory_budget_sizes_duckdb_and_tantivy(tmp_path: object) -> None:
    from pathlib import Path

    from index import EventStore

    opts = Config.from_dict({"limits": {"memory_budget": 2 << 30}}).store_options()
    assert opts == {
        "memory_limit": "512MB",
        "sql_threads": 2,
        "heap_size": 64 << 20,
        "queue_bytes": 256 << 20,
    }
    assert Config().store_options()["memory_limit"] == "1024MB"
    store = EventStore(Path(str(tmp_path)) / "ev", **opts)
    try:
        rows = store.tables.read(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        )
        assert rows[0][0].replace(" ", "") in ("512.0MiB", "488.2MiB", "512MiB", "488MiB")
        assert rows[0][1] == 2
    finally:
        store.close()
