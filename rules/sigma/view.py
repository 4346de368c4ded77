"""The field view a Sigma rule matches against: one flat `name → text` map per event.

Sigma fields are the names Windows shows in the event XML: EventData (and UserData) children,
plus `EventID`, `Channel`, `Provider_Name`, `Computer`, ... from System. Values are text; unnamed
`<Data>` elements (classic PowerShell) stay a tuple and match when any element matches, and
their `Key=Value` lines become fields too (`HostApplication`, `EngineVersion`, ...), as Windows
shows them. golang-evtx pads hex integers (`0x000003e7`); Windows (and so Sigma) writes `0x3e7`,
so zero-padded hex is unpadded here.

Performance: every Sigma rule of an event reads the same view; the last one built is cached
(one (event, view) tuple swapped atomically, so concurrent `Engine.match` calls stay correct).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from ..event import go_string

__all__ = [
    "View",
    "ViewCache",
    "view",
    "views_for",
    "build",
    "fields",
    "lowered",
    "joined_lower",
    "Text",
]

Text = str | tuple[str, ...]
View = tuple[dict[str, Text], dict[str, Text]]  # (original text, lower-cased text)
_HEX = re.compile(r"0x0+([0-9a-fA-F]+)\Z")
_NUL_HEX = re.compile("\x000x0")  # a value (not the first) starting with 0x0, NUL-joined
_KV = re.compile(r"^\s*([A-Za-z]+)=(.*?)\s*$", re.MULTILINE)
_SYSTEM = ("Channel", "Computer", "Level", "Task", "Opcode", "Keywords", "EventRecordID", "Version")
_EMPTY: View = ({}, {})
_SYSTEM_GET = itemgetter(*_SYSTEM)


def _text(v: Any) -> str:
    if v.__class__ is str:
        if v[:3] == "0x0":
            m = _HEX.match(v)
            return "0x" + m.group(1) if m is not None else v
        return v
    return go_string(v)


def _put(out: dict[str, Text], key: str, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, list):
        out[key] = tuple(_text(x) for x in v if x is not None and not isinstance(x, dict))
    elif isinstance(v, dict):
        for k, x in v.items():
            if not k.startswith("xmlns") and k not in out:
                _put(out, k, x)
    else:
        out[key] = _text(v)


def _plain(values: Any) -> bool:
    """All text, none zero-padded hex (the common case: copied as they are, in C)."""
    try:
        joined = "\x00".join(values)
    except TypeError:  # not all text
        return False
    return joined[:3] != "0x0" and "\x000x0" not in joined


def _event_data(ed: dict[str, Any], orig: dict[str, Text]) -> None:
    try:
        joined = "\x00".join(ed.values())
    except TypeError:  # not all text: the general loop below
        pass
    else:
        # Performance: all text, copied in C; then only zero-padded hex values (a Sysmon
        # LogonId, most Security events) are rewritten, in place (same keys, same order),
        # found in the joined text: a value's position is the number of NULs before it
        orig.update(ed)
        at = _NUL_HEX.search(joined)  # Performance: sre's literal search beats `in` here
        if at is None and joined[:3] != "0x0":
            return
        if joined.count("\x00") == len(ed) - 1:
            keys = list(ed)
            if joined[:3] == "0x0":
                orig[keys[0]] = _text(ed[keys[0]])
            while at is not None:
                k = keys[joined.count("\x00", 0, at.end())]
                orig[k] = _text(ed[k])
                at = _NUL_HEX.search(joined, at.end())
        else:  # a value holds a NUL: positions would be off
            for k, v in ed.items():
                if v[:3] == "0x0":
                    orig[k] = _text(v)
        return
    for k, v in ed.items():
        if v.__class__ is str and v[:3] != "0x0":
            orig[k] = v  # Performance: the common case of `_put`
        else:
            _put(orig, k, v)
    blob = orig.get("Data")
    if blob.__class__ is tuple:
        for part in blob:
            if "=" in part:
                for key, val in _KV.findall(part):
                    orig.setdefault(key, val)


def _user_data(ud: dict[str, Any], orig: dict[str, Text]) -> None:
    for inner in ud.values():
        if isinstance(inner, dict):
            for k, v in inner.items():
                if not k.startswith("xmlns") and k not in orig:
                    _put(orig, k, v)


def _system(sys_: dict[str, Any], orig: dict[str, Text]) -> None:
    eid = sys_.get("EventID")
    if isinstance(eid, dict):
        eid = eid.get("Value")
    if eid is not None and "EventID" not in orig:
        orig["EventID"] = _text(eid)
    prov = sys_.get("Provider")
    if isinstance(prov, dict) and "Provider_Name" not in orig:
        name = prov.get("Name")
        if name is not None:
            orig["Provider_Name"] = _text(name)
    check = not orig.keys().isdisjoint(_SYSTEM)  # Performance: EventData rarely has them
    try:
        values = _SYSTEM_GET(sys_)
    except KeyError:
        values = None
    if values is not None and not check and _plain(values):
        orig.update(zip(_SYSTEM, values, strict=True))  # Performance: all there, plain text
        return
    for key, v in zip(_SYSTEM, map(sys_.get, _SYSTEM), strict=True):
        if v is None or (check and key in orig):
            continue
        if v.__class__ is str and v[:3] != "0x0":
            orig[key] = v
        elif not isinstance(v, (dict, list)):
            orig[key] = _text(v)


def fields(data: Any) -> dict[str, Text]:
    """The original-case view of one event (`{"Event": {"System", "EventData"|"UserData"}}`)."""
    ev = data.get("Event") if isinstance(data, dict) else None
    if not isinstance(ev, dict):
        return _EMPTY[0]
    orig: dict[str, Text] = {}
    ed = ev.get("EventData")
    if isinstance(ed, dict):
        _event_data(ed, orig)
    ud = ev.get("UserData")
    if isinstance(ud, dict):
        _user_data(ud, orig)
    sys_ = ev.get("System")
    if isinstance(sys_, dict):
        _system(sys_, orig)
    return orig


def joined_lower(orig: dict[str, Text]) -> str | None:
    """Every value of `orig` NUL-joined and lower-cased (None: not all text)."""
    try:
        return "\x00".join(orig.values()).lower()  # type: ignore[arg-type]
    except TypeError:  # tuples (unnamed <Data>)
        return None


def lowered(orig: dict[str, Text], text: str | None = None) -> dict[str, Text]:
    """`orig` with every text lower-cased; `text`: its `joined_lower`, if already made.

    Performance: all text (the usual case) is joined, lower-cased and split in three C calls.
    Lower-casing is per character, and NUL (neither cased nor case-ignorable) bounds words as
    a value's end does, so even a final sigma lower-cases as in the value alone.
    """
    if text is None:
        text = joined_lower(orig)
    if text is None:
        return {
            k: (v.lower() if v.__class__ is str else tuple(x.lower() for x in v))
            for k, v in orig.items()
        }
    parts = text.split("\x00")
    if len(parts) == len(orig):
        return dict(zip(orig, parts, strict=True))
    return {k: v.lower() for k, v in orig.items()}  # type: ignore[union-attr]  # a NUL inside


def build(data: Any) -> View:
    """Both views of one event."""
    orig = fields(data)
    return orig, lowered(orig)


class ViewCache:
    """`get(event)` → its view, `fields(event)` → its original-case view; each remembers the
    last event (by identity). `fields` is enough for the Sigma index: most events meet no
    candidate rule and never need the lower-cased view.

    With `renames`, events of `channel` get Sigma names for their own fields (Security 4688
    read as Sysmon process creation); other events get the shared plain view.
    """

    __slots__ = ("renames", "channel", "_last", "_last_fields", "_last_text")

    def __init__(self, renames: Mapping[str, str] | None = None, channel: str = "") -> None:
        self.renames = dict(renames or {})
        self.channel = channel
        self._last: tuple[Any, View] = (None, _EMPTY)
        self._last_fields: tuple[Any, dict[str, Text]] = (None, _EMPTY[0])
        self._last_text: tuple[Any, str | None] = (None, None)

    def fields(self, data: Any) -> dict[str, Text]:
        last = self._last_fields
        if last[0] is data:
            return last[1]
        if self.renames:
            base = _SHARED.fields(data)
            if base.get("Channel") != self.channel:
                return base
            orig = dict(base)
            for sigma_name in self.renames:
                orig.pop(sigma_name, None)
            for sigma_name, event_name in self.renames.items():
                if event_name in base:
                    orig[sigma_name] = base[event_name]
        else:
            orig = fields(data)
        self._last_fields = (data, orig)
        return orig

    def text(self, data: Any) -> str | None:
        """`joined_lower` of the event's view (what keywords are searched in)."""
        last = self._last_text
        if last[0] is data:
            return last[1]
        text = joined_lower(self.fields(data))
        self._last_text = (data, text)
        return text

    def get(self, data: Any) -> View:
        last = self._last
        if last[0] is data:
            return last[1]
        if self.renames and _SHARED.fields(data).get("Channel") != self.channel:
            return _SHARED.get(data)  # another channel: the shared plain view
        orig = self.fields(data)
        v = (orig, lowered(orig, self.text(data)))
        self._last = (data, v)
        return v


_SHARED = ViewCache()
view = _SHARED.get
_RENAMED: dict[tuple[str, tuple[tuple[str, str], ...]], ViewCache] = {}


def views_for(renames: Mapping[str, Mapping[str, str]]) -> ViewCache:
    """The shared cache for per-channel renames (at most one renamed channel per rule)."""
    if not renames:
        return _SHARED
    if len(renames) > 1:
        raise ValueError("one renamed channel per logsource")
    channel, table = next(iter(renames.items()))
    key = (channel, tuple(sorted(table.items())))
    cache = _RENAMED.get(key)
    if cache is None:
        cache = _RENAMED[key] = ViewCache(table, channel)
    return cache
