"""Declared settings: one table per section, from which parsing, TOML, `--help` and docs derive.

Shared by the agent, its link, the manager and the MISP sync (it lives in `rules/` because that is
the one package both sides may import; it uses only the standard library). A section is a frozen
dataclass whose fields are declared with `setting(default, help, ...)`: name, type (the field's
annotation), default, bounds, choices, help and whether a running program applies a change live
are written once, as in datasette's `SETTINGS`. Then:

- `parse_section(cls, data)` builds the section from a decoded TOML/JSON mapping. Unknown keys,
  wrong types, values out of bounds or not among the choices raise `ConfigError`, which names the
  key and the file. Numbers are non-negative unless a setting declares a lower bound.
- `render_toml(obj)` writes a commented TOML document that parses back equal.
- `settings_of(cls)` / `walk(cls)` list the declared settings (docs tables, tests, `help_text`).

Supported annotations: `bool`, `int`, `float`, `str`, `list[str]`, `tuple[str, ...]`, a nested
section, a list of sections (`[[array.of.tables]]`) and `dict[str, Any]` (a raw table checked by
its owner).
"""

from __future__ import annotations

import functools
import json
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "Setting",
    "help_text",
    "markdown_table",
    "parse_section",
    "read_toml",
    "render_toml",
    "section",
    "setting",
    "settings_of",
    "toml_value",
    "walk",
]


class ConfigError(ValueError):
    """Invalid configuration: renders as ``message at KEY in SOURCE``.

    The one settings error of every package (`agent.errors`, `appliance.core.errors` re-export it;
    `MispSettingsError` subclasses it).
    """

    key: str = ""
    source: str = ""
    message: str = ""

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        self.message, self.key, self.source = message, key, source
        where = f" at {key}" if key else ""
        if source:
            where += f" in {source}"
        super().__init__(f"{message}{where}")


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting; `name`, `default`, `type` and `tp` are filled by `settings_of`."""

    help: str
    name: str = ""
    default: Any = None
    type: str = ""  # bool, int, float, str, list, section, rows, table
    tp: Any = field(default=None, compare=False, repr=False)  # the annotation
    min: float | None = 0
    max: float | None = None
    above: float | None = None  # exclusive lower bound
    choices: frozenset[str] | None = None
    noun: str = "value"  # "unknown source 'x'"
    live: bool = False  # a running program applies a change without a restart
    strip: bool = False  # surrounding whitespace removed (values typed into a form)
    doc: str = ""  # the default as the docs show it (platform-dependent defaults)

    def bounds(self) -> str:
        """The declared bounds or choices, for docs."""
        if self.choices is not None:
            return "one of " + ", ".join(sorted(self.choices))
        if self.type not in ("int", "float"):
            return ""
        low = f"> {self.above:g}" if self.above is not None else ""
        if not low and self.min is not None:
            low = f">= {self.min:g}"
        high = f"<= {self.max:g}" if self.max is not None else ""
        return ", ".join(x for x in (low, high) if x)


def setting(
    default: Any,
    help: str,
    *,
    min: float | None = 0,
    max: float | None = None,
    above: float | None = None,
    choices: typing.Iterable[str] | None = None,
    noun: str = "value",
    live: bool = False,
    strip: bool = False,
    secret: bool = False,
    doc: str = "",
) -> Any:
    """Declare a dataclass field as a setting (`secret` hides the value from `repr`)."""
    spec = Setting(
        help=help,
        min=min,
        max=max,
        above=above,
        choices=frozenset(choices) if choices is not None else None,
        noun=noun,
        live=live,
        strip=strip,
        doc=doc,
    )
    meta = {"setting": spec}
    if isinstance(default, list | dict):
        return field(default_factory=functools.partial(type(default), default), metadata=meta)
    return field(default=default, metadata=meta, repr=not secret)


def section(cls: type, help: str = "", *, live: bool = False) -> Any:
    """Declare a nested section (`[outer.inner]`)."""
    return field(default_factory=cls, metadata={"setting": Setting(help=help, live=live)})


def _kind(tp: Any) -> str:
    if is_dataclass(tp):
        return "section"
    origin = typing.get_origin(tp)
    if origin is dict:
        return "table"
    if origin in (list, tuple):
        return "rows" if is_dataclass(typing.get_args(tp)[0]) else "list"
    if tp in (bool, int, float, str):
        return str(tp.__name__)
    raise TypeError(f"unsupported setting type {tp!r}")


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The declared settings of section `cls`, in declaration order."""
    return _settings_of(cls)


@functools.cache
def _settings_of(cls: Any) -> tuple[Setting, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        spec = f.metadata.get("setting")
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        factory: Any = f.default_factory
        default = f.default if f.default is not MISSING else factory()
        tp = hints[f.name]
        out.append(replace(spec, name=f.name, default=default, type=_kind(tp), tp=tp))
    return tuple(out)


def walk(cls: type, prefix: str = "") -> Iterator[tuple[str, Setting]]:
    """Every leaf setting under `cls` as (dotted key, setting); rows and raw tables are leaves."""
    for spec in settings_of(cls):
        key = _join(prefix, spec.name)
        if spec.type == "section":
            yield from walk(spec.tp, key)
        else:
            yield key, spec


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# --- parsing -----------------------------------------------------------------------------------


def parse_section(cls: type[Any], data: Any, *, key: str = "", source: str = "") -> Any:
    """Build section `cls` from a mapping; every problem is a `ConfigError` naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table, got {data!r}", key=key, source=source)
    specs = {s.name: s for s in settings_of(cls)}
    for name in data:  # unknown keys first: a typo is the likelier mistake
        if name not in specs:
            raise ConfigError("unknown key", key=_join(key, str(name)), source=source)
    kwargs = {name: _value(specs[name], v, _join(key, name), source) for name, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as ex:  # a section's own cross-field checks (__post_init__)
        if ex.source or not source:
            raise
        raise ConfigError(ex.message or str(ex), key=ex.key or key, source=source) from ex
    except ValueError as ex:
        raise ConfigError(str(ex), key=key, source=source) from ex


def _value(spec: Setting, value: Any, key: str, source: str) -> Any:
    kind = spec.type
    if kind == "section":
        return parse_section(spec.tp, value, key=key, source=source)
    if kind == "table":
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a table, got {value!r}", key=key, source=source)
        return dict(value)
    if kind == "rows":
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list of tables, got {value!r}", key=key, source=source)
        row = typing.get_args(spec.tp)[0]
        items = [
            parse_section(row, v, key=f"{key}[{i}]", source=source) for i, v in enumerate(value)
        ]
        return typing.get_origin(spec.tp)(items)
    if kind == "list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected a list of strings, got {value!r}", key=key, source=source)
        items = [_text(spec, v, key, source) for v in value]
        return typing.get_origin(spec.tp)(items)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key=key, source=source)
        return _text(spec, value, key, source)
    return _scalar(spec, value, key, source)


def _text(spec: Setting, value: str, key: str, source: str) -> str:
    if spec.strip:
        value = value.strip()
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(sorted(spec.choices))
        raise ConfigError(
            f"unknown {spec.noun} {value!r} (one of: {allowed})", key=key, source=source
        )
    return value


def _scalar(spec: Setting, value: Any, key: str, source: str) -> Any:
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"expected a boolean, got {value!r}", key=key, source=source)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = "an integer" if spec.type == "int" else "a number"
        raise ConfigError(f"expected {what}, got {value!r}", key=key, source=source)
    if spec.type == "int" and not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {value!r}", key=key, source=source)
    if spec.min is not None and value < spec.min:
        raise ConfigError(f"must be at least {spec.min:g}, got {value!r}", key=key, source=source)
    if spec.above is not None and value <= spec.above:
        raise ConfigError(
            f"must be greater than {spec.above:g}, got {value!r}", key=key, source=source
        )
    if spec.max is not None and value > spec.max:
        raise ConfigError(f"must be at most {spec.max:g}, got {value!r}", key=key, source=source)
    return float(value) if spec.type == "float" else value


def read_toml(path: str | Path) -> dict[str, Any]:
    """Decode a TOML file; a missing or unreadable file is a `ConfigError` naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as ex:
        raise ConfigError("configuration file not found", source=str(p)) from ex
    except tomllib.TOMLDecodeError as ex:
        raise ConfigError(f"invalid TOML: {ex}", source=str(p)) from ex
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"cannot read: {ex}", source=str(p)) from ex


# --- rendering ---------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """`value` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_toml(obj: Any, header: str) -> str:
    """`obj` (a section instance) as commented TOML that `parse_section` reads back equal."""
    out = [f"# {line}" for line in header.splitlines()]
    _render(obj, "", out)
    return "\n".join(out).strip() + "\n"


def _render(obj: Any, name: str, out: list[str]) -> None:
    body: list[str] = []
    sections: list[tuple[str, Any]] = []
    rows: list[tuple[str, Setting, Any]] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for spec in settings_of(type(obj)):
        value = getattr(obj, spec.name)
        key = _join(name, spec.name)
        if spec.type == "section":
            sections.append((key, value))
        elif spec.type == "rows":
            rows.append((key, spec, value))
        elif spec.type == "table":
            body.append(f"# [{key}] table: {spec.help}")
            if value:
                tables.append((key, value))
        else:
            body += [f"# {spec.help}", f"{spec.name} = {toml_value(value)}"]
    if name and body:
        doc = (type(obj).__doc__ or "").strip().splitlines()
        out += ["", f"# {doc[0]}" if doc else "", f"[{name}]"]
    out += body
    for key, value in sections:
        _render(value, key, out)
    for key, spec, items in rows:
        row = typing.get_args(spec.tp)[0]
        if not items:
            names = ", ".join(s.name for s in settings_of(row))
            out.append(f"# [[{key}]] entries ({spec.help}): {names}")
        for item in items:
            out += ["", f"[[{key}]]"]
            out += [f"{s.name} = {toml_value(getattr(item, s.name))}" for s in settings_of(row)]
    for key, table in tables:
        _render_raw(table, key, out)


def _render_raw(table: Mapping[str, Any], name: str, out: list[str]) -> None:
    out += ["", f"[{name}]"]
    nested = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    out += [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    for key, value in nested:
        _render_raw(value, f"{name}.{key}", out)


def help_text(cls: type, key: str) -> str:
    """`--help` text of a CLI option that overrides setting `key` (dotted) under `cls`."""
    spec = dict(walk(cls))[key]
    default = spec.doc or toml_value(spec.default)
    return f"override {key}: {spec.help} (default: {default})".replace("%", "%%")


def markdown_table(cls: type, prefix: str = "") -> str:
    """The docs table of every setting under `cls` (docs/settings.md)."""
    lines = ["| Key | Type | Default | Bounds | Live | Help |", "|---|---|---|---|---|---|"]
    for key, spec in walk(cls, prefix):
        default = spec.doc or (toml_value(spec.default) if spec.type != "rows" else "[]")
        if spec.type == "table":
            default = "{}"
        cells = (
            f"`{key}`",
            _type_name(spec),
            f"`{default}`".replace("|", "\\|"),
            spec.bounds(),
            "yes" if spec.live else "",
            spec.help.replace("|", "\\|"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _type_name(spec: Setting) -> str:
    if spec.type == "list":
        return "list of strings"
    if spec.type == "rows":
        return "list of tables"
    return {"str": "string", "bool": "boolean", "int": "integer", "float": "number"}.get(
        spec.type, spec.type
    )
