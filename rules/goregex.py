"""Translate Go RE2 patterns to Python `re` with the same matching semantics (gene.md §13).

Rewrites `$` (Go: end of text) to `\\Z`, the ASCII classes `\\w \\d \\s \\b` to explicit ASCII
sets, mid-pattern flag groups `(?i)` to scoped groups, `(?<name>` to `(?P<name>`, and rejects
what RE2 rejects (look-around, back-references) so that a rule loads here iff it loads in Gene.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import RegexError

__all__ = ["translate", "compile_go"]

_W = "0-9A-Za-z_"
_CLASS_OUT = {"w": f"[{_W}]", "W": f"[^{_W}]", "d": "[0-9]", "D": "[^0-9]",
              "s": "[\\t\\n\\f\\r ]", "S": "[^\\t\\n\\f\\r ]"}
_CLASS_IN = {"w": _W, "d": "0-9", "s": "\\t\\n\\f\\r "}
_B = f"(?:(?<=[{_W}])(?![{_W}])|(?<![{_W}])(?=[{_W}]))"
_NB = f"(?:(?<=[{_W}])(?=[{_W}])|(?<![{_W}])(?![{_W}]))"
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
          "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ",
          "upper": "A-Z", "word": _W, "xdigit": "0-9A-Fa-f"}
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
            out.append("\\x%02x" % int(pattern[i + 1:j] or "0", 8))
            return j
        raise RegexError(f"unsupported escape \\{c}")
    if c == "x" and i + 2 < len(pattern) and pattern[i + 2] == "{":
        end = pattern.find("}", i + 3)
        if end < 0:
            raise RegexError("invalid escape \\x{")
        try:
            out.append("\\U%08x" % int(pattern[i + 3:end], 16))
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
            name = pattern[i + 2:end] if end > 0 else ""
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


def translate(pattern: str) -> str:
    """Return a Python pattern matching exactly what the Go pattern matches."""
    out: list[str] = []
    multiline = False
    # scopes[k] = indices in `out` of implicit flag scopes opened in the k-th open group
    scopes: list[list[int]] = [[]]
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise RegexError("trailing backslash")
            e = pattern[i + 1]
            if e in _CLASS_OUT:
                out.append(_CLASS_OUT[e])
            elif e == "b":
                out.append(_B)
            elif e == "B":
                out.append(_NB)
            elif e == "A":
                out.append("\\A")
            else:
                i = _escape_common(pattern, i, out)
                continue
            i += 2
        elif c == "[":
            i = _char_class(pattern, i, out)
        elif c == "(":
            if pattern.startswith("(?", i):
                m = _FLAGS.match(pattern, i)
                if m:
                    if "m" in (m.group(1) or ""):
                        multiline = True
                    if not _flag_group(m, out, scopes):
                        if m.group(3) == ":":
                            scopes.append([])
                    i = m.end()
                    continue
                if pattern.startswith("(?P<", i) or pattern.startswith("(?<", i):
                    end = pattern.find(">", i)
                    name = pattern[i + (4 if pattern[i + 2] == "P" else 3):end]
                    if end < 0 or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                        raise RegexError(f"invalid named capture {name!r}")
                    out.append(f"(?P<{name}>")
                    scopes.append([])
                    i = end + 1
                    continue
                raise RegexError("invalid or unsupported Perl syntax (look-around?)")
            out.append("(")
            scopes.append([])
            i += 1
        elif c == ")":
            out.append(")" * len(scopes[-1]))
            if len(scopes) == 1:
                raise RegexError("unexpected )")
            scopes.pop()
            out.append(")")
            i += 1
        elif c == "|":
            opened = scopes[-1]
            if opened:
                reopen = [out[k] for k in opened]
                out.append(")" * len(opened) + "|")
                scopes[-1] = []
                for text in reopen:
                    out.append(text)
                    scopes[-1].append(len(out) - 1)
            else:
                out.append("|")
            i += 1
        elif c == "$":
            out.append("$" if multiline else "\\Z")
            i += 1
        else:
            out.append(c)
            i += 1
    if len(scopes) != 1:
        raise RegexError("missing closing )")
    out.append(")" * len(scopes[0]))
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_go(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern for Python; raise `RegexError` where RE2 would fail."""
    try:
        return re.compile(translate(pattern))
    except re.error as ex:
        raise RegexError(f"invalid regex {pattern!r}: {ex}") from ex
    except RecursionError as ex:  # pragma: no cover - pathological nesting
        raise RegexError(f"regex too deeply nested: {pattern!r}") from ex
