"""The human query language (``index.query``) compiled to a ClickHouse SQL ``WHERE`` expression.

Same lexer and grammar as the Tantivy translation; the leaves become SQL over the columns of
``index.clickhouse.CH_COLUMNS``. Written for ClickHouse 18.16 and current releases alike:
token matches are re2 ``match`` over lower-cased text with token boundaries (``hasToken`` and
token bloom-filter indexes are newer; they can be used once the server version is known),
guarded by a ``position`` substring test that ClickHouse evaluates first and cheaply.

Every literal goes through :func:`quote`; no query text reaches SQL any other way.
"""

from __future__ import annotations

import re

from index.errors import IndexQueryError
from index.fields import PROMOTED, kv_term, parse_hashes
from index.query import (
    _MAX_DEPTH,
    _MAX_QUERY,
    _SINGLE_TOKEN_WILDCARD,
    _WILD_TOKEN_RE,
    FIELD_ALIASES,
    _lex,
    _Tok,
    _wildcard_regex,
    tokenize_text,
)
from index.schema import NO_KV, to_micros
from index.timewin import parse_datetime

__all__ = ["compile_query", "quote"]

_SEP = r"[^\pL\pN]"  # a token boundary (Tantivy's simple tokenizer splits on non-alphanumerics)
_TOK = r"[\pL\pN]"
# raw (exact, lower-case) fields of the embedded index → SQL over ClickHouse columns
_RAW_SQL = {
    "endpoint": "endpoint",
    "host": "lowerUTF8(hostname)",
    "channel": "lowerUTF8(channel)",
    "computer": "lowerUTF8(computer)",
    "ehash": "event_hash",
}
_NUM_SQL = {"seq": "seq", "event_id": "event_id", "crit": "criticality"}
_BOOL_SQL = {"det": "detection", "retro": "retro"}
_FALSE, _TRUE = "0", "1"


def quote(text: str) -> str:
    """A ClickHouse string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _or(parts: list[str]) -> str:
    parts = [p for p in parts if p != _FALSE]
    if not parts:
        return _FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _and(parts: list[str]) -> str:
    parts = [p for p in parts if p != _TRUE]
    if not parts:
        return _TRUE
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _re_escape(word: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", word)


def _words_match(expr: str, words: list[str]) -> str:
    """``words`` in order, adjacent, on token boundaries, in the lower-case text ``expr``."""
    body = f"{_SEP}+".join(_re_escape(w) for w in words)
    regex = f"(?s)(^|{_SEP}){body}({_SEP}|$)"
    guard = " AND ".join(f"position({expr}, {quote(w)}) > 0" for w in words)
    return f"({guard} AND match({expr}, {quote(regex)}))"


def _token_wildcard(expr: str, value: str) -> str:
    """Token-level wildcard (as ``QueryTranslator._token_wildcard``) as one regex."""
    low = value.lower()
    lead, trail = low.startswith("*"), low.endswith("*")
    segments = low.strip("*").split("*")
    parts = []
    for seg in segments:
        toks = _WILD_TOKEN_RE.findall(seg)
        parts.append(
            f"{_SEP}+".join(_re_escape(t).replace("\\?", _TOK).replace("?", _TOK) for t in toks)
        )
    parts = [p for p in parts if p]
    if not parts:
        return _TRUE
    body = ".*".join(parts)
    head = f"{_TOK}*" if lead else f"(^|{_SEP})"
    tail = f"{_TOK}*" if trail else f"({_SEP}|$)"
    return f"match({expr}, {quote('(?s)' + head + body + tail)})"


def _kv_has(term: str) -> str:
    return f"has(kv, {quote(term)})"


def _kv_regex(regex: str) -> str:
    return f"arrayExists(x -> match(x, {quote('(?s)^' + regex + '$')}), kv)"


def _kv_words(name: str, words: list[str]) -> str:
    body = f"{_SEP}+".join(_re_escape(w) for w in words)
    return _kv_regex(f"{_re_escape(name)}=(.*{_SEP})?{body}({_SEP}.*)?")


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, message: str, tok: _Tok) -> IndexQueryError:
        return IndexQueryError(message, query=self.text, position=tok.pos)

    # -- leaves -------------------------------------------------------------------

    def leaf(self, field: str | None, tok: _Tok) -> str:
        if field is None:
            return self.free(tok)
        kind, name = FIELD_ALIASES.get(field.lower(), ("data", field.lower()))
        if tok.kind in ("RANGE", "CMP"):
            return self.range(kind, name, tok)
        value = tok.text
        wild = tok.kind == "WORD" and ("*" in value or "?" in value)
        if kind == "u64":
            try:
                number = int(value, 0)
            except ValueError as ex:
                raise self.fail(f"{name} needs an integer, got {value!r}", tok) from ex
            return _FALSE if number < 0 else f"{_NUM_SQL[name]} = {number}"
        if kind == "bool":
            flag = value.lower()
            if flag not in ("true", "false", "1", "0", "yes", "no"):
                raise self.fail(f"{name} needs true or false, got {value!r}", tok)
            return f"{_BOOL_SQL[name]} = {int(flag in ('true', '1', 'yes'))}"
        if kind == "date":
            micros = self.micros(value, tok)
            if name == "ts":
                return f"ts_us = {micros}"
            return f"rt = toDateTime({micros // 1_000_000}, 'UTC')"
        data = self.data(field.lower(), value, wild)
        if kind == "hash":
            if wild:
                regex = quote("^" + _wildcard_regex(value.lower()) + "$")
                own = f"arrayExists(x -> match(x, {regex}), hashes)"
            else:
                digests = [d for ds in parse_hashes(value.strip()).values() for d in ds]
                digests = digests or [value.strip().lower()]
                own = _or([f"has(hashes, {quote(d)})" for d in digests])
            return _or([own, data])
        if kind == "raw":
            low = value.lower()
            if name == "sig":
                test = (
                    f"match(lowerUTF8(x), {quote('^' + _wildcard_regex(low) + '$')})"
                    if wild
                    else f"lowerUTF8(x) = {quote(low)}"
                )
                own = f"arrayExists(x -> {test}, signatures)"
            elif wild:
                own = f"match({_RAW_SQL[name]}, {quote('(?s)^' + _wildcard_regex(low) + '$')})"
            else:
                own = f"{_RAW_SQL[name]} = {quote(low)}"
            return _or([own, data])
        return data

    def micros(self, value: str, tok: _Tok) -> int:
        try:
            return to_micros(parse_datetime(value))
        except IndexQueryError:
            raise
        except ValueError as ex:
            raise self.fail(f"not a time: {value!r}", tok) from ex

    def free(self, tok: _Tok) -> str:
        value = tok.text
        if tok.kind == "WORD" and ("*" in value or "?" in value):
            return _token_wildcard("text", value)
        words = tokenize_text(value)
        clauses = [_words_match("text", words)] if words else []
        for digests in parse_hashes(value.strip()).values():
            clauses += [f"has(hashes, {quote(d)})" for d in digests]
        return _or(clauses)

    def data(self, name: str, value: str, wild: bool) -> str:
        promoted = PROMOTED.get(name)
        column = f"lowerUTF8({promoted})" if promoted else ""
        if wild:
            if promoted is not None and (name in NO_KV or _SINGLE_TOKEN_WILDCARD.fullmatch(value)):
                return _token_wildcard(column, value)
            return _kv_regex(_wildcard_regex(kv_term(name, value)))
        words = tokenize_text(value)
        if not words and name not in NO_KV:
            return _kv_has(kv_term(name, value))
        if promoted is not None:
            phrase = _words_match(column, words) if words else _FALSE
            return phrase if name in NO_KV else _or([_kv_has(kv_term(name, value)), phrase])
        return _or([_kv_has(kv_term(name, value)), _kv_words(name, words)])

    def range(self, kind: str, name: str, tok: _Tok) -> str:
        if kind not in ("u64", "date"):
            raise self.fail(f"ranges need a numeric or time field, not {name!r}", tok)
        if tok.kind == "CMP":
            op = tok.text[:2] if tok.text[:2] in (">=", "<=") else tok.text[:1]
            bound = tok.text[len(op) :]
            if not bound:
                raise self.fail("comparison without a value", tok)
            lo, hi = (bound, None) if op[0] == ">" else (None, bound)
            inc_lo = inc_hi = op.endswith("=")
        else:
            parts = re.split(r"\s+TO\s+", tok.text[1:-1].strip())
            if len(parts) != 2:
                raise self.fail("range must be [a TO b]", tok)
            lo = None if parts[0] in ("*", "") else parts[0]
            hi = None if parts[1] in ("*", "") else parts[1]
            inc_lo, inc_hi = tok.text[0] == "[", tok.text[-1] == "]"
        column = (
            ("ts_us" if name == "ts" else "toInt64(rt) * 1000000")
            if kind == "date"
            else _NUM_SQL[name]
        )

        def conv(v: str) -> int:
            if kind == "date":
                return self.micros(v, tok)
            try:
                return max(0, int(v, 0))
            except ValueError as ex:
                raise self.fail(f"not an integer: {v!r}", tok) from ex

        out = []
        if lo is not None:
            out.append(f"{column} {'>=' if inc_lo else '>'} {conv(lo)}")
        if hi is not None:
            out.append(f"{column} {'<=' if inc_hi else '<'} {conv(hi)}")
        return _and(out)


class _Parser:
    """The grammar of ``index.query._Parser``, producing SQL text."""

    def __init__(self, text: str) -> None:
        self.text, self.toks, self.i, self.depth = text, _lex(text), 0, 0
        self.c = _Compiler(text)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> str:
        sql = self.or_expr()
        tok = self.peek()
        if tok.kind != "EOF":
            raise self.c.fail(f"unexpected {tok.text!r}", tok)
        return sql

    def or_expr(self) -> str:
        parts = [self.and_expr()]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_expr(self) -> str:
        must: list[str] = []
        must_not: list[str] = []
        while True:
            tok = self.peek()
            if tok.kind in ("EOF", "RP", "OR"):
                break
            if tok.kind == "AND":
                self.take()
                if not (must or must_not) or self.peek().kind in ("EOF", "RP", "OR", "AND"):
                    raise self.c.fail("AND needs a clause on both sides", tok)
                continue
            negated, sql = self.unary()
            (must_not if negated else must).append(sql)
        if not must and not must_not:
            raise self.c.fail("expected a search term", self.peek())
        return _and([*must, *(f"NOT {s}" for s in must_not)])

    def unary(self) -> tuple[bool, str]:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            negated, sql = self.unary()
            return not negated, sql
        if tok.kind == "MUST":
            self.take()
        return False, self.primary()

    def primary(self) -> str:
        tok = self.take()
        if tok.kind == "LP":
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.c.fail("query nested too deeply", tok)
            sql = self.or_expr()
            if self.take().kind != "RP":
                raise self.c.fail("missing ')'", tok)
            self.depth -= 1
            return f"({sql})"
        if tok.kind == "FIELD":
            return self.field_value(tok)
        if tok.kind in ("WORD", "PHRASE"):
            return self.c.leaf(None, tok)
        if tok.kind == "EOF":
            raise self.c.fail("query ends where a search term was expected", tok)
        raise self.c.fail(f"unexpected {tok.text!r}", tok)

    def field_value(self, field_tok: _Tok) -> str:
        tok = self.take()
        if tok.kind in ("WORD", "PHRASE", "RANGE", "CMP"):
            return self.c.leaf(field_tok.text, tok)
        if tok.kind == "LP":
            values: list[str] = []
            while self.peek().kind in ("WORD", "PHRASE", "OR"):
                inner = self.take()
                if inner.kind != "OR":
                    values.append(self.c.leaf(field_tok.text, inner))
            if self.take().kind != "RP" or not values:
                raise self.c.fail(f"{field_tok.text}:( … ) takes values and ')'", tok)
            return _or(values)
        raise self.c.fail(f"field {field_tok.text!r} has no value", field_tok)


def compile_query(text: str) -> str:
    """The SQL boolean expression of ``text`` (``1`` when blank).

    Raises:
        IndexQueryError: the text is malformed, with the position of the problem.
    """
    if len(text) > _MAX_QUERY:
        raise IndexQueryError(f"query longer than {_MAX_QUERY} characters")
    if not text.strip():
        return _TRUE
    return _Parser(text).parse()
