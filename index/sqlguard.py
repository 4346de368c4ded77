"""What analyst SQL may call: an allowlist of table functions, a few scalars refused.

Security: DuckDB's own sandbox (`enable_external_access=false`, locked configuration)
keeps files out, but table functions such as `checkpoint()`, `duckdb_settings()` or
`pragma_*` still ran in "read-only" SQL, and `current_setting('allowed_paths')` showed server
paths. The statement's syntax tree (`json_serialize_sql`) names every function it calls; a
table function must be on `TABLE_FUNCTIONS`, a scalar must not be on `DENIED_SCALARS` nor start
with a `DENIED_PREFIXES` entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import duckdb
import orjson

from index.errors import SqlError

__all__ = ["TABLE_FUNCTIONS", "check_functions", "scrub"]

TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "repeat",
        "repeat_row",
    }
)
DENIED_SCALARS = frozenset(
    {
        "current_setting",
        "getvariable",
        "getenv",
        "current_database",
        "current_schema",
        "current_schemas",
        "version",
        "pg_get_viewdef",
        "checkpoint",
        "force_checkpoint",
    }
)
DENIED_PREFIXES = (
    "duckdb_",
    "pragma_",
    "register_",
    "enable_",
    "disable_",
    "install_",
    "load_",
    "read_",
    "glob",
    "sniff_",
    "parquet_",
    "iceberg_",
    "delta_",
)
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


def _functions(node: Any) -> Iterator[tuple[str, str]]:
    """(kind, name) of every function call in a serialized statement."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("type")
            if kind == "TABLE_FUNCTION":
                fn = item.get("function") or {}
                yield "table", str(fn.get("function_name", ""))
            elif item.get("class") == "FUNCTION" and "function_name" in item:
                yield "scalar", str(item["function_name"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_functions(cur: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise SqlError unless every function `query` calls is allowed."""
    body = _EXPLAIN.sub("", query, count=1)
    try:
        row = cur.execute("SELECT json_serialize_sql(?)", [body]).fetchone()
    except duckdb.Error as ex:
        raise SqlError(f"SQL failed: {ex}", query=query) from ex
    tree = orjson.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise SqlError(
            f"SQL failed: {tree.get('error_message', 'cannot parse the query')}", query=query
        )
    table_fns = {name for kind, name in _functions(tree) if kind == "table"}
    for kind, name in _functions(tree):
        low = name.lower()
        if kind == "table" and low not in TABLE_FUNCTIONS:
            raise SqlError(
                f"table function {name}() is not allowed (allowed: "
                f"{', '.join(sorted(TABLE_FUNCTIONS))})",
                query=query,
            )
        if (
            kind == "scalar"
            and name not in table_fns
            and (low in DENIED_SCALARS or low.startswith(DENIED_PREFIXES))
        ):
            raise SqlError(f"function {name}() is not allowed", query=query)


def scrub(message: str, *paths: str) -> str:
    """`message` without the server paths in `paths` (and their parent directories)."""
    for path in sorted({p for p in paths if p}, key=len, reverse=True):
        message = message.replace(path, "<data>")
    return message
