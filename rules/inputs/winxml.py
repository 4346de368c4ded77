"""Windows event XML (wevtutil, Event Viewer, Sysmon for Linux) → golang-evtx rendering.

Owns the XML input path. `<Event>` fragments are cut out of the text stream and parsed one by
one, so the same code reads a single event, concatenated events (`wevtutil qe /f:xml`, no root
element), `<Events>` wrappers (Event Viewer "Save as XML") and syslog or journald lines that carry
one event after a prefix (Sysmon for Linux). A broken fragment is one parse error; the next
fragment is read normally.

Each event is rendered as `rules.evtx` renders the same record (docs/reference/gene.md §12.2):
attributes become
keys, `EventID` with `Qualifiers` becomes `{"Qualifiers","Value"}`, a `Provider` with only a
`Name` becomes a provider-named `System` key, empty `Correlation`/`Security` become `{}`, unnamed
`Data` become a list without trailing empty strings, `SystemTime` keeps 100-ns digits without
trailing zeros, `RenderingInfo` (wevtutil `/f:RenderedXml`) is dropped. Values are kept as the
XML gives them: Windows writes hex values unpadded (`0x3e7`) where golang-evtx pads typed ones
(`0x000003e7`), which only matters to rules comparing hex text with `=`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TextIO
from xml.parsers import expat

__all__ = ["iter_xml_events", "iter_line_events", "parse_event", "win_time"]

_START = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?Event[\s>/]")
_END = re.compile(r"</(?:[A-Za-z_][\w.-]*:)?Event\s*>")
_CHUNK = 1 << 20
MAX_EVENT_CHARS = 16 << 20  # an unterminated <Event> larger than this is dropped
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")

Node = list[Any]  # [tag, attrs, children, text parts]


def win_time(text: str) -> str:
    """`2019-04-27T15:57:25.868863200Z` → golang-evtx's `2019-04-27T15:57:25.8688632Z`."""
    m = _TIME.match(text)
    if m is None:
        return text
    frac = (m.group(2) or "")[:7].rstrip("0")
    return f"{m.group(1)}.{frac}Z" if frac else f"{m.group(1)}Z"


def _local(tag: str) -> str:
    return tag.rpartition(":")[2] if ":" in tag else tag


def _tree(fragment: str) -> Node:
    """Parse one `<Event>` fragment into nested lists (expat without namespace processing, so
    `xmlns` declarations stay attributes as golang-evtx renders them)."""
    root: Node = ["", {}, [], []]
    stack: list[Node] = [root]

    def start(tag: str, attrs: dict[str, str]) -> None:
        node: Node = [_local(tag), attrs, [], []]
        stack[-1][2].append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        stack[-1][3].append(data)

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(fragment, True)
    node: Node = root[2][0]
    return node


def _text(node: Node) -> str:
    return "".join(node[3])


def _generic(node: Node) -> Any:
    """UserData and other sections: attributes and children as keys, text as `Value`."""
    out: dict[str, Any] = dict(node[1])
    for child in node[2]:
        value = _generic(child)
        have = out.get(child[0], _NONE)
        if have is _NONE:
            out[child[0]] = value
        elif isinstance(have, list):
            have.append(value)
        else:
            out[child[0]] = [have, value]
    if not node[2]:
        text = _text(node)
        if not out:
            return text if node[3] else None
        if node[3]:
            out["Value"] = text
    return out


_NONE = object()


def _system(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in node[2]:
        tag, attrs = child[0], child[1]
        if tag == "Provider" and len(attrs) == 1 and "Name" in attrs:
            out[attrs["Name"]] = ""  # GENE/golang-evtx: classic provider
        elif tag == "TimeCreated" and "SystemTime" in attrs:
            out[tag] = {**attrs, "SystemTime": win_time(attrs["SystemTime"])}
        elif tag == "EventID" and attrs.get("Qualifiers"):
            out[tag] = {"Qualifiers": attrs["Qualifiers"], "Value": _text(child)}
        elif attrs:
            out[tag] = dict(attrs)
        elif child[2]:
            out[tag] = _generic(child)
        elif tag in ("Correlation", "Security") or not child[3]:
            out[tag] = {} if tag in ("Correlation", "Security") else ""
        else:
            out[tag] = _text(child)
    return out


def _event_data(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = dict(node[1])
    unnamed: list[Any] = []
    for child in node[2]:
        tag = child[0]
        if tag == "Data":
            name = child[1].get("Name")
            if name is None:
                unnamed.append(_text(child))
            else:
                out[name] = _text(child)
        elif tag == "Binary":
            out[tag] = _text(child) if child[3] else None
        else:
            out[tag] = _generic(child)
    if unnamed:
        while len(unnamed) > 1 and unnamed[-1] == "":
            unnamed.pop()
        out["Data"] = unnamed
    return out


_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f]|&#(?:x0*(?:1?[0-8bcef]|1[0-9a-f])|"
    r"0*(?:[0-8]|1[124-9]|2[0-9]|3[01]));",
    re.IGNORECASE,
)
_MAYBE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|&#")
_PLACEHOLDER = re.compile("[\U000f0000-\U000f001f]")


def _hide(m: re.Match[str]) -> str:
    text = m.group()
    if len(text) == 1:
        code = ord(text)
    else:
        code = int(text[3:-1], 16) if text[2] in "xX" else int(text[2:-1])
    return chr(0xF0000 + code)


def _restore(value: Any) -> Any:
    if value.__class__ is str:
        return _PLACEHOLDER.sub(lambda m: chr(ord(m.group()) - 0xF0000), value)
    if value.__class__ is dict:
        return {_restore(k): _restore(v) for k, v in value.items()}
    if value.__class__ is list:
        return [_restore(v) for v in value]
    return value


def parse_event(fragment: str) -> dict[str, Any]:
    """One `<Event>…</Event>` text → `{"Event": {...}}`; raises `expat.ExpatError`.

    Control characters, which XML 1.0 forbids but event data holds (Windows writes them as
    they are), are carried through expat as private-use characters and restored.
    """
    # Performance: a cheap character class first; the full pattern only when it may match
    hidden = _MAYBE_CONTROL.search(fragment) is not None and _CONTROL.search(fragment) is not None
    if hidden:
        fragment = _CONTROL.sub(_hide, fragment)
    node = _tree(fragment)
    out: dict[str, Any] = {}
    for child in node[2]:
        tag = child[0]
        if tag == "System":
            out[tag] = _system(child)
        elif tag == "EventData":
            out[tag] = _event_data(child)
        elif tag != "RenderingInfo":
            value = _generic(child)
            out[tag] = value if value is not None else {}
    return {"Event": _restore(out) if hidden else out}


def iter_xml_events(
    fh: TextIO, name: str, error: Callable[[str], None], junk: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events of a text stream holding `<Event>` elements anywhere.

    `junk(text)` receives what lies between events (syslog lines of other programs, wrappers).
    """
    buf = ""
    pos = 0
    eof = False
    n = 0
    while True:
        m = _START.search(buf, pos)
        end = _END.search(buf, m.end()) if m is not None else None
        if m is None or end is None:
            if eof:
                if m is not None:
                    error(f"{name}: event #{n + 1} is not terminated")
                if junk is not None:
                    junk(buf[pos : m.start() if m is not None else len(buf)])
                return
            keep = m.start() if m is not None else max(pos, len(buf) - 64)
            if junk is not None:
                junk(buf[pos:keep])
            if len(buf) - keep > MAX_EVENT_CHARS:
                error(f"{name}: event #{n + 1} exceeds {MAX_EVENT_CHARS} characters, dropped")
                keep = len(buf)
            chunk = fh.read(_CHUNK)
            eof = not chunk
            buf = buf[keep:] + chunk
            pos = 0
            continue
        if junk is not None and m.start() > pos:
            junk(buf[pos : m.start()])
        pos = end.end()
        n += 1
        try:
            yield parse_event(buf[m.start() : pos])
        except (expat.ExpatError, IndexError, ValueError) as ex:
            error(f"{name}: event #{n}: invalid XML: {ex}")


def iter_line_events(
    fh: TextIO, name: str, error: Callable[[str], None], skipped: Callable[[], None]
) -> Iterator[dict[str, Any]]:
    """Sysmon for Linux in syslog (`… sysmon: <Event>…</Event>`) or `journalctl -o cat`.

    One event per line; `skipped()` is called for each non-blank line without an event.
    """
    for lineno, line in enumerate(fh, 1):
        m = _START.search(line)
        end = _END.search(line, m.end()) if m is not None else None
        if m is None or end is None:
            if line.strip():
                skipped()
            continue
        try:
            yield parse_event(line[m.start() : end.end()])
        except (expat.ExpatError, IndexError, ValueError) as ex:
            error(f"{name}:{lineno}: invalid XML: {ex}")
