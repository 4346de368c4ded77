"""Translate Go RE2 patterns to Python `re` with the same matching semantics
(docs/reference/gene.md §13).

Rewrites `$` (Go: end of text) to `\\Z`, the ASCII classes `\\w \\d \\s \\b` to explicit ASCII
sets, mid-pattern flag groups `(?i)` to scoped groups, `(?<name>` to `(?P<name>`, and rejects
what RE2 rejects (look-around, back-references) so that a rule loads here iff it loads in Gene.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .errors import RegexError

__all__ = ["translate", "compile_go", "required_literal"]

_W = "0-9A-Za-z_"
_CLASS_OUT = {
    "w": f"[{_W}]",
    "W": f"[^{_W}]",
    "d": "[0-9]",
    "D": "[^0-9]",
    "s": "[\\t\\n\\f\\r ]",
    "S": "[^\\t\\n\\f\\r ]",
}
_CLASS_IN = {"w": _W, "d": "0-9", "s": "\\t\\n\\f\\r "}
_B = f"(?:(?<=[{_W}])(?![{_W}])|(?<![{_W}])(?=[{_W}]))"
_NB = f"(?:(?<=[{_W}])(?=[{_W}])|(?<![{_W}])(?![{_W}]))"
_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": _W,
    "xdigit": "0-9A-Fa-f",
}
_FLAGS = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")
_SIMPLE_ESC = set("\\.+*?()|[]{}^$-/#&~ \t\n'\"!%,:;<=>@`")


def _escape_in_class(pattern: str, i: int, out: list[str]) -> int:
    """Translate one escape inside `[...]`; return the next index."""
    c = pattern[i + 1] if i + 1 < len(pattern) else ""
    if c in _CLASS_IN:
        out.append(_CLASS_IN[c])
    elif c in ("W", "D", "S"):
        raise RegexError(f"negated class \\{c} inside brackets is not supported")
    elif c == "":
        raise RegexError("trailing backslash")
    else:
        return _escape_common(pattern, i, out)
    return i + 2


def _escape_common(pattern: str, i: int, out: list[str]) -> int:
    c = pattern[i + 1]
    if c.isdigit() and c != "0":
        raise RegexError(f"invalid escape sequence \\{c} (RE2 has no back-references)")
    if c in "pPQEzCX" or c == "0":
        if c == "z":
            out.append("\\Z")
            return i + 2
        if c == "0":
            j = i + 2
            while j < len(pattern) and j < i + 4 and pattern[j] in "01234567":
                j += 1
            out.append(f"\\x{int(pattern[i + 1 : j] or '0', 8):02x}")
            return j
        raise RegexError(f"unsupported escape \\{c}")
    if c == "x" and i + 2 < len(pattern) and pattern[i + 2] == "{":
        end = pattern.find("}", i + 3)
        if end < 0:
            raise RegexError("invalid escape \\x{")
        try:
            out.append(f"\\U{int(pattern[i + 3 : end], 16):08x}")
        except ValueError as ex:
            raise RegexError("invalid escape \\x{...}") from ex
        return end + 1
    if c.isalnum() and c not in "xafnrtvAbB":
        raise RegexError(f"invalid escape sequence \\{c}")
    out.append("\\" + c)
    return i + 2


def _char_class(pattern: str, i: int, out: list[str]) -> int:
    """Copy a bracket expression starting at `pattern[i] == '['`; return the next index."""
    out.append("[")
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return i + 1
        first = False
        if c == "\\":
            i = _escape_in_class(pattern, i, out)
            continue
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2 : end] if end > 0 else ""
            neg = name.startswith("^")
            if neg or name not in _POSIX:
                raise RegexError(f"unsupported character class [:{name}:]")
            out.append(_POSIX[name])
            i = end + 2
            continue
        if c in "[&~|" or (c == "-" and pattern.startswith("--", i)):
            out.append("\\" + c)  # NOTE: literal in RE2; Python warns about nested sets
        else:
            out.append(c)
        i += 1
    raise RegexError("missing closing ]")


def _flag_group(m: re.Match[str], out: list[str], scopes: list[list[int]]) -> bool:
    """Emit a flag group; return True when it opened an implicit scope `(?i)`."""
    on, off, end = m.group(1), m.group(2) or "", m.group(3)
    if "U" in on or "U" in off:
        raise RegexError("the (?U) flag is not supported")
    if not on and not off:
        if end == ")":
            return False
        out.append("(?:")
        return False
    spec = on + ("-" + off if off else "")
    out.append(f"(?{spec}:")
    if end == ")":
        scopes[-1].append(len(out) - 1)
        return True
    return False


class _Translator:
    """State of one translation: output pieces and the implicit flag scopes per group."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.out: list[str] = []
        self.multiline = False
        # scopes[k] = indices in `out` of implicit `(?i)` scopes opened in the k-th open group
        self.scopes: list[list[int]] = [[]]

    def run(self) -> str:
        i, n = 0, len(self.p)
        quantified = False  # the previous token was `*`, `+` or `?` (not yet made lazy)
        while i < n:
            c = self.p[i]
            if c in "*+?":
                if c == "+" and quantified:
                    # Python 3.11 reads `a*+` as possessive; RE2 rejects it
                    raise RegexError(f"invalid nested repetition operator in {self.p!r}")
                quantified = not (c == "?" and quantified)
                self.out.append(c)
                i += 1
                continue
            quantified = False
            if c == "{" and self.p.startswith("{,", i):
                self.out.append("\\{")  # RE2: `{,n}` is literal text; Python: a repetition
                i += 1
            elif c == "\\":
                i = self.escape(i)
            elif c == "[":
                i = _char_class(self.p, i, self.out)
            elif c == "(":
                i = self.open_group(i)
            elif c == ")":
                self.close_group()
                i += 1
            elif c == "|":
                self.alternation()
                i += 1
            else:
                # GENE/RE2: `$` is end of text unless (?m); Python's `$` also matches before \n
                self.out.append(("$" if self.multiline else "\\Z") if c == "$" else c)
                i += 1
        if len(self.scopes) != 1:
            raise RegexError("missing closing )")
        self.out.append(")" * len(self.scopes[0]))
        return "".join(self.out)

    def escape(self, i: int) -> int:
        if i + 1 >= len(self.p):
            raise RegexError("trailing backslash")
        e = self.p[i + 1]
        special = {**_CLASS_OUT, "b": _B, "B": _NB, "A": "\\A"}
        if e in special:
            self.out.append(special[e])
            return i + 2
        return _escape_common(self.p, i, self.out)

    def open_group(self, i: int) -> int:
        p = self.p
        if not p.startswith("(?", i):
            self.out.append("(")
            self.scopes.append([])
            return i + 1
        m = _FLAGS.match(p, i)
        if m:
            if "m" in (m.group(1) or ""):
                self.multiline = True
            if not _flag_group(m, self.out, self.scopes) and m.group(3) == ":":
                self.scopes.append([])
            return m.end()
        if p.startswith("(?P<", i) or p.startswith("(?<", i):
            end = p.find(">", i)
            name = p[i + (4 if p[i + 2] == "P" else 3) : end]
            if end < 0 or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise RegexError(f"invalid named capture {name!r}")
            self.out.append(f"(?P<{name}>")
            self.scopes.append([])
            return end + 1
        raise RegexError("invalid or unsupported Perl syntax (look-around?)")

    def close_group(self) -> None:
        self.out.append(")" * len(self.scopes[-1]))
        if len(self.scopes) == 1:
            raise RegexError("unexpected )")
        self.scopes.pop()
        self.out.append(")")

    def alternation(self) -> None:
        """`a(?i)b|c`: RE2 flags last to the end of the group, so reopen them after `|`."""
        opened = self.scopes[-1]
        if not opened:
            self.out.append("|")
            return
        reopen = [self.out[k] for k in opened]
        self.out.append(")" * len(opened) + "|")
        self.scopes[-1] = []
        for text in reopen:
            self.out.append(text)
            self.scopes[-1].append(len(self.out) - 1)


def translate(pattern: str) -> str:
    """Return a Python pattern matching exactly what the Go pattern matches."""
    return _Translator(pattern).run()


@lru_cache(maxsize=4096)
def compile_go(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern for Python; raise `RegexError` where RE2 would fail."""
    try:
        return re.compile(translate(pattern))
    except re.error as ex:
        raise RegexError(f"invalid regex {pattern!r}: {ex}") from ex
    except RecursionError as ex:  # pragma: no cover - pathological nesting
        raise RegexError(f"regex too deeply nested: {pattern!r}") from ex


_sre: Any = getattr(re, "_parser", None) or __import__("sre_parse")
_REPEATS = tuple(
    getattr(_sre, name)
    for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    if hasattr(_sre, name)
)


def required_literal(pattern: re.Pattern[str]) -> tuple[str, bool] | None:
    """(text, ignore case) of the longest literal run every match of `pattern` contains.

    Only literals every match must pass count: the top-level sequence, groups, and bodies
    repeated at least once; an alternation, optional part or class breaks the run. Under
    IGNORECASE only ASCII characters are kept and `text` is lower-cased: on ASCII text, such
    a literal occurs in `text.lower()` whenever the pattern matches (Unicode case folding can
    map non-ASCII text onto it, so callers check ASCII text only).
    """
    try:
        parsed = _sre.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError, OverflowError):
        return None
    best: list[tuple[str, bool]] = [("", False)]

    def walk(items: Any, icase: bool) -> None:
        run: list[str] = []
        for op, arg in items:
            if op is _sre.LITERAL and not (icase and arg > 127):
                run.append(chr(arg))
                continue
            if len(run) > len(best[0][0]):
                best[0] = ("".join(run), icase)
            run = []
            if op is _sre.SUBPATTERN:
                _group, add, remove, body = arg
                walk(body, (icase or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE)
            elif op in _REPEATS and arg[0] >= 1:
                walk(arg[2], icase)
        if len(run) > len(best[0][0]):
            best[0] = ("".join(run), icase)

    walk(parsed, bool(parsed.state.flags & re.IGNORECASE))
    text, icase = best[0]
    if not text or (icase and len(text) < 2):
        return None  # one case-folded character: lower-casing the text costs more than it saves
    return (text.lower(), True) if icase else (text, False)
