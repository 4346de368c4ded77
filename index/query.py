"""The human query language, parsed by hand and translated into Tantivy ``Query`` objects.

Security: admin input never reaches ``Index.parse_query``: the Tantivy parser
mis-handles ``a AND NOT b`` (0 hits), rejects Windows paths and drops long hashes. We parse
the Lucene-like syntax ourselves and build queries with the ``Query.*`` constructors.

Syntax (case-insensitive field names and values)::

    query   := or ( "OR" | "||" ) or …        implicit AND between clauses
    clause  := [ "NOT" | "-" | "+" ] ( "(" query ")" | field ":" value | value )
    field   := name | "quoted name"             (quoted: names with spaces or colons)
    value   := word | "phrase" | "[" a TO b "]" | "{" a TO b "}" | (">"|">="|"<"|"<=") v
               | "(" value value … ")"         (any of, for one field)

* words may contain ``*`` and ``?`` wildcards; backslashes are literal (``C:\\Windows\\x.exe``);
  inside quotes ``\\"`` is a quote and wildcards are literal.
* unknown field names are EventData/UserData names (``Image``, ``TargetFilename``, …).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import tantivy

from index.errors import IndexQueryError
from index.fields import PROMOTED, attack_tactic, kv_term, parse_hashes
from index.schema import NO_KV, TEXT_FIELDS, build_analyzer, to_micros
from index.timewin import parse_datetime

__all__ = ["FIELD_ALIASES", "QueryTranslator", "tokenize_text"]

Q = tantivy.Query
Occur = tantivy.Occur

# User-facing names (lower-case) → (kind, schema field).
FIELD_ALIASES: dict[str, tuple[str, str]] = {
    "seq": ("u64", "seq"),
    "eventid": ("u64", "event_id"),
    "event_id": ("u64", "event_id"),
    "criticality": ("u64", "crit"),
    "crit": ("u64", "crit"),
    "ts": ("date", "ts"),
    "time": ("date", "ts"),
    "timestamp": ("date", "ts"),
    "@timestamp": ("date", "ts"),
    "systemtime": ("date", "ts"),
    "receipttime": ("date", "rt"),
    "rt": ("date", "rt"),
    "endpoint": ("raw", "endpoint"),
    "uuid": ("raw", "endpoint"),
    "hostname": ("raw", "host"),
    "host": ("raw", "host"),
    "channel": ("raw", "channel"),
    "computer": ("raw", "computer"),
    "signature": ("raw", "sig"),
    "sig": ("raw", "sig"),
    "eventhash": ("raw", "ehash"),
    "attack": ("attack", "attack"),
    "technique": ("attack", "attack"),
    "tactic": ("attack", "attack"),
    "hash": ("hash", "hash"),
    "hashes": ("hash", "hash"),
    "md5": ("hash", "hash"),
    "sha1": ("hash", "hash"),
    "sha256": ("hash", "hash"),
    "imphash": ("hash", "hash"),
    "detection": ("bool", "det"),
    "retro": ("bool", "retro"),
}
_ANALYZER = build_analyzer()
_KV_MAX = 512  # as fields.kv_term
_WORDS_PER_REGEX = 3  # words per kv regex when a whole phrase's automaton is too large
_FIELD_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@-]*")
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")
_WILD_TOKEN_RE = re.compile(r"[0-9a-z\u00c0-\uffff?]+")
_SINGLE_TOKEN_WILDCARD = re.compile(r"\*[0-9A-Za-z\u00c0-\uffff?*]*\*")
_MAX_QUERY = 8192
_MAX_DEPTH = 32


def tokenize_text(text: str) -> list[str]:
    """Split text with the ``heron`` analyzer itself, so query words are the indexed tokens.

    (A Python approximation of Tantivy's Unicode ``is_alphanumeric`` split missed words with
    characters such as ``ª`` or ``𝐀`` and split on symbols such as ``€``.)
    """
    return list(_ANALYZER.analyze(text))


def _wildcard_regex(pattern: str) -> str:
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char in _REGEX_META:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


# ---------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # WORD PHRASE LP RP AND OR NOT FIELD RANGE CMP EOF
    text: str
    pos: int


_SPECIAL_END = set(" \t\r\n()")


def _lex(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            toks.append(_Tok("LP", c, i))
            i += 1
        elif c == ")":
            toks.append(_Tok("RP", c, i))
            i += 1
        elif c == '"':
            i = _lex_phrase(text, i, toks)
            if text.startswith(":", i) and i + 1 < n and text[i + 1] not in " \t\r\n)":
                # "Field name":value names a field that has spaces or colons (Defender's
                # "Action ID", "xmlns:auto-ns2").
                toks[-1] = _Tok("FIELD", toks[-1].text, toks[-1].pos)
                i += 1
        elif text.startswith("&&", i):
            toks.append(_Tok("AND", "&&", i))
            i += 2
        elif text.startswith("||", i):
            toks.append(_Tok("OR", "||", i))
            i += 2
        elif c in "-+!" and i + 1 < n and text[i + 1] not in _SPECIAL_END:
            toks.append(_Tok("NOT" if c in "-!" else "MUST", c, i))
            i += 1
        else:
            i = _lex_word(text, i, toks)
    toks.append(_Tok("EOF", "", n))
    return toks


def _lex_phrase(text: str, start: int, toks: list[_Tok]) -> int:
    i, buf = start + 1, []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            buf.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            toks.append(_Tok("PHRASE", "".join(buf), start))
            return i + 1
        buf.append(c)
        i += 1
    raise IndexQueryError("unterminated quote", query=text, position=start)


def _lex_range(text: str, start: int, toks: list[_Tok]) -> int:
    close = "]" if text[start] == "[" else "}"
    end = start + 1
    while end < len(text) and text[end] not in "]}":
        end += 1
    if end >= len(text):
        raise IndexQueryError(f"unterminated range, expected {close!r}", query=text, position=start)
    toks.append(_Tok("RANGE", text[start : end + 1], start))
    return end + 1


def _lex_word(text: str, start: int, toks: list[_Tok]) -> int:
    field = _FIELD_RE.match(text, start)
    if field is not None and text.startswith(":", field.end()):
        name, after = field.group(0), field.end() + 1
        is_drive = len(name) == 1 and text.startswith("\\", after)
        nxt = text[after] if after < len(text) else ""
        if not is_drive and nxt in ("[", "{"):
            toks.append(_Tok("FIELD", name, start))
            return _lex_range(text, after, toks)
        if not is_drive and nxt in ('"', "(", ""):
            toks.append(_Tok("FIELD", name, start))
            return after
    i = start
    while i < len(text) and text[i] not in _SPECIAL_END and text[i] != '"':
        i += 1
    word = text[start:i]
    upper = word.upper()
    if upper in ("AND", "OR", "NOT") and word == upper:
        toks.append(_Tok(upper, word, start))
        return i
    name, sep, rest = word.partition(":")
    is_drive = len(name) == 1 and rest.startswith("\\")
    if sep and _FIELD_RE.fullmatch(name) and not is_drive:
        toks.append(_Tok("FIELD", name, start))
        if rest:
            kind = "CMP" if rest[0] in "<>" else "WORD"
            toks.append(_Tok(kind, rest, start + len(name) + 1))
        return i
    toks.append(_Tok("WORD", word, start))
    return i


# ---------------------------------------------------------------- parser + translation


class QueryTranslator:
    """Parse query text and build a Tantivy query against ``schema``."""

    def __init__(self, schema: tantivy.Schema) -> None:
        self._schema = schema

    def translate(self, text: str) -> tantivy.Query:
        """Return the Tantivy query for ``text`` (``all`` documents when blank).

        Raises:
            IndexQueryError: the text is malformed, with the position of the problem.
        """
        if len(text) > _MAX_QUERY:
            raise IndexQueryError(f"query longer than {_MAX_QUERY} characters")
        if not text.strip():
            return Q.all_query()
        parser = _Parser(text, _lex(text), self)
        query = parser.parse()
        return query

    # -- leaves -----------------------------------------------------------------

    def leaf(self, field: str | None, tok: _Tok, text: str) -> tantivy.Query:
        """Translate one ``field:value`` (or bare value) into a query."""
        try:
            return self._leaf(field, tok, text)
        except IndexQueryError:
            raise
        except ValueError as ex:  # tantivy constructors
            raise IndexQueryError(f"invalid clause: {ex}", query=text, position=tok.pos) from ex

    def _leaf(self, field: str | None, tok: _Tok, text: str) -> tantivy.Query:
        if field is None:
            return self._free(tok)
        kind, name = FIELD_ALIASES.get(field.lower(), ("data", field.lower()))
        if tok.kind in ("RANGE", "CMP"):
            return self._range(kind, name, tok, text)
        value = tok.text
        wild = tok.kind == "WORD" and ("*" in value or "?" in value)
        if kind == "u64":
            return self._number(name, value, tok, text)
        if kind == "bool":
            return self._bool(name, value, tok, text)
        if kind == "date":
            micros = to_micros(parse_datetime(value))
            return Q.range_query(self._schema, name, tantivy.FieldType.Integer, micros, micros)
        if kind == "hash":
            # An EventData field may have the alias's name (Defender's `Hash`): either matches.
            return _any([self._hash(name, value, wild), self._data(field.lower(), value, wild)])
        if kind == "attack":  # T1059 / t1059.004 / "Defense Evasion" / defense-evasion
            value = attack_tactic(value)
            kind = "raw"
        if kind == "raw":
            if wild:
                raw = Q.regex_query(self._schema, name, _wildcard_regex(value.lower()))
            else:
                raw = Q.term_query(self._schema, name, value.lower())
            return _any([raw, self._data(field.lower(), value, wild)])
        return self._data(name, value, wild)

    def _free(self, tok: _Tok) -> tantivy.Query:
        value = tok.text
        if tok.kind == "WORD" and ("*" in value or "?" in value):
            return _any([self._token_wildcard(f, value) for f in ("all", *TEXT_FIELDS)])
        words = tokenize_text(value)
        clauses = [self._phrase(f, words) for f in ("all", *TEXT_FIELDS)] if words else []
        for digests in parse_hashes(value.strip()).values():
            clauses += [Q.term_query(self._schema, "hash", d) for d in digests]
        if not clauses:
            return Q.empty_query()
        return clauses[0] if len(clauses) == 1 else _any(clauses)

    def _phrase(self, field: str, words: list[str]) -> tantivy.Query:
        if not words:
            return Q.empty_query()
        if len(words) == 1:
            return Q.term_query(self._schema, field, words[0])
        phrase: list[str | tuple[int, str]] = list(words)
        return Q.phrase_query(self._schema, field, phrase)

    def _data(self, name: str, value: str, wild: bool) -> tantivy.Query:
        promoted = PROMOTED.get(name)
        if wild:
            if promoted is not None and (name in NO_KV or _SINGLE_TOKEN_WILDCARD.fullmatch(value)):
                # Performance: *tok* ≡ "some token contains tok": scan the token dictionary.
                # Command lines have no kv token: their wildcards are token-level only.
                return self._token_wildcard(promoted, value)
            return Q.regex_query(self._schema, "kv", _wildcard_regex(kv_term(name, value)))
        words = tokenize_text(value)
        if not words and name not in NO_KV:
            return Q.term_query(self._schema, "kv", kv_term(name, value))
        if promoted is not None:
            phrase = self._phrase(promoted, words)
            if name in NO_KV:
                return phrase
            return _any([Q.term_query(self._schema, "kv", kv_term(name, value)), phrase])
        # The exact value (first _KV_MAX characters, as indexed), or its words in order.
        return _any(
            [Q.term_query(self._schema, "kv", kv_term(name, value)), self._field_words(name, words)]
        )

    def _field_words(self, name: str, words: list[str]) -> tantivy.Query:
        """Words in order, on token boundaries, anywhere in this field's value.

        One kv regex does it exactly; a long phrase makes an automaton over Tantivy's state
        limit (``C:\\Program Files (x86)\\…`` was refused), so it is then split into regexes
        of a few overlapping words each, plus the whole phrase on ``all`` for adjacency.
        """
        whole = _kv_words_regex(name, words)
        try:
            return Q.regex_query(self._schema, "kv", whole)
        except ValueError as ex:
            if "size limit" not in str(ex):
                raise
        step = _WORDS_PER_REGEX - 1
        parts = [self._phrase("all", words)]
        for start in range(0, max(1, len(words) - 1), step):
            chunk = words[start : start + _WORDS_PER_REGEX]
            parts.append(Q.regex_query(self._schema, "kv", _kv_words_regex(name, chunk)))
        return Q.boolean_query([(Occur.Must, q) for q in parts])

    def _token_wildcard(self, field: str, value: str) -> tantivy.Query:
        """Token-level wildcard over an analyzed field.

        Leading/trailing ``*`` extend the first/last token; with no inner ``*`` the tokens
        must be adjacent (a regex phrase). An inner ``*`` is a gap of unknown length: the
        token patterns are then only required together (a superset of the exact match).
        """
        low = value.lower()
        lead, trail = low.startswith("*"), low.endswith("*")
        segments = [seg for seg in low.strip("*").split("*")]
        groups = [_WILD_TOKEN_RE.findall(seg) for seg in segments]
        tokens: list[str] = []
        for i, group in enumerate(groups):
            for j, tok in enumerate(group):
                starts = (i == 0 and lead) or (i > 0 and j == 0)
                last_group = i == len(groups) - 1
                ends = (last_group and trail) or (not last_group and j == len(group) - 1)
                tokens.append(("*" if starts else "") + tok + ("*" if ends else ""))
        if not tokens:
            return Q.all_query()
        regexes = [_wildcard_regex(t) for t in tokens]
        if len(regexes) == 1:
            return Q.regex_query(self._schema, field, regexes[0])
        if len(segments) > 1:
            return Q.boolean_query(
                [(Occur.Must, Q.regex_query(self._schema, field, r)) for r in regexes]
            )
        phrase: list[str | tuple[int, str]] = list(regexes)
        return Q.regex_phrase_query(self._schema, field, phrase)

    def _hash(self, name: str, value: str, wild: bool) -> tantivy.Query:
        if wild:
            return Q.regex_query(self._schema, name, _wildcard_regex(value.lower()))
        digests = [d for ds in parse_hashes(value.strip()).values() for d in ds]
        if not digests:
            return Q.term_query(self._schema, name, value.strip().lower())
        if len(digests) == 1:
            return Q.term_query(self._schema, name, digests[0])
        return _any([Q.term_query(self._schema, name, d) for d in digests])

    def _number(self, name: str, value: str, tok: _Tok, text: str) -> tantivy.Query:
        try:
            number = int(value, 0)
        except ValueError as ex:
            raise IndexQueryError(
                f"{name} needs an integer, got {value!r}", query=text, position=tok.pos
            ) from ex
        if number < 0:
            return Q.empty_query()
        return Q.term_query(self._schema, name, number)

    def _bool(self, name: str, value: str, tok: _Tok, text: str) -> tantivy.Query:
        flag = value.lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise IndexQueryError(
                f"{name} needs true or false, got {value!r}", query=text, position=tok.pos
            )
        return Q.term_query(self._schema, name, int(flag in ("true", "1", "yes")))

    def _range(self, kind: str, name: str, tok: _Tok, text: str) -> tantivy.Query:
        if kind not in ("u64", "date"):
            raise IndexQueryError(
                f"ranges need a numeric or time field, not {name!r}", query=text, position=tok.pos
            )
        lo: str | None
        hi: str | None
        if tok.kind == "CMP":
            op = tok.text[:2] if tok.text[:2] in (">=", "<=") else tok.text[:1]
            bound = tok.text[len(op) :]
            if not bound:
                raise IndexQueryError("comparison without a value", query=text, position=tok.pos)
            lo, hi = (bound, None) if op[0] == ">" else (None, bound)
            inc_lo = inc_hi = op.endswith("=")
        else:
            inner = tok.text[1:-1]
            parts = re.split(r"\s+TO\s+", inner.strip())
            if len(parts) != 2:
                raise IndexQueryError("range must be [a TO b]", query=text, position=tok.pos)
            lo = None if parts[0] in ("*", "") else parts[0]
            hi = None if parts[1] in ("*", "") else parts[1]
            inc_lo, inc_hi = tok.text[0] == "[", tok.text[-1] == "]"
        conv: Callable[[str], int]
        if kind == "date":
            ftype = tantivy.FieldType.Integer
            conv = _to_micros
        else:
            ftype = tantivy.FieldType.Unsigned
            conv = _to_int(text, tok)
        if lo is None and hi is None:
            return Q.all_query()
        return Q.range_query(
            self._schema,
            name,
            ftype,
            None if lo is None else conv(lo),
            None if hi is None else conv(hi),
            inc_lo or lo is None,
            inc_hi or hi is None,
        )


def _to_int(text: str, tok: _Tok) -> Callable[[str], int]:
    def conv(value: str) -> int:
        try:
            return max(0, int(value, 0))
        except ValueError as ex:
            raise IndexQueryError(
                f"not an integer: {value!r}", query=text, position=tok.pos
            ) from ex

    return conv


def _to_micros(value: str) -> int:
    return to_micros(parse_datetime(value))


def _kv_words_regex(name: str, words: list[str]) -> str:
    sep = "[^0-9a-z\u00c0-\uffff]"
    body = f"{sep}+".join(_wildcard_regex(w) for w in words)
    return f"{_wildcard_regex(name)}=(.*{sep})?{body}({sep}.*)?"


def _any(clauses: list[tantivy.Query]) -> tantivy.Query:
    return Q.boolean_query([(Occur.Should, c) for c in clauses])


class _Parser:
    """Recursive descent over the token list; see the grammar in the module docstring."""

    def __init__(self, text: str, toks: list[_Tok], tr: QueryTranslator) -> None:
        self.text, self.toks, self.tr, self.i, self.depth = text, toks, tr, 0, 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: _Tok) -> IndexQueryError:
        return IndexQueryError(message, query=self.text, position=tok.pos)

    def parse(self) -> tantivy.Query:
        query = self.or_expr()
        tok = self.peek()
        if tok.kind != "EOF":
            raise self.fail(f"unexpected {tok.text!r}", tok)
        return query

    def or_expr(self) -> tantivy.Query:
        parts = [self.and_expr()]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _any(parts)

    def and_expr(self) -> tantivy.Query:
        must: list[tantivy.Query] = []
        must_not: list[tantivy.Query] = []
        while True:
            tok = self.peek()
            if tok.kind in ("EOF", "RP", "OR"):
                break
            if tok.kind == "AND":
                self.take()
                if not (must or must_not) or self.peek().kind in ("EOF", "RP", "OR", "AND"):
                    raise self.fail("AND needs a clause on both sides", tok)
                continue
            negated, query = self.unary()
            (must_not if negated else must).append(query)
        if not must and not must_not:
            raise self.fail("expected a search term", self.peek())
        if len(must) == 1 and not must_not:
            return must[0]
        clauses = [(Occur.Must, q) for q in must] or [(Occur.Must, Q.all_query())]
        clauses += [(Occur.MustNot, q) for q in must_not]
        return Q.boolean_query(clauses)

    def unary(self) -> tuple[bool, tantivy.Query]:
        tok = self.peek()
        if tok.kind == "NOT":
            self.take()
            negated, query = self.unary()
            return not negated, query
        if tok.kind == "MUST":
            self.take()
        return False, self.primary()

    def primary(self) -> tantivy.Query:
        tok = self.take()
        if tok.kind == "LP":
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise self.fail("query nested too deeply", tok)
            query = self.or_expr()
            if self.take().kind != "RP":
                raise self.fail("missing ')'", tok)
            self.depth -= 1
            return query
        if tok.kind == "FIELD":
            return self.field_value(tok)
        if tok.kind in ("WORD", "PHRASE"):
            return self.tr.leaf(None, tok, self.text)
        if tok.kind == "EOF":
            raise self.fail("query ends where a search term was expected", tok)
        raise self.fail(f"unexpected {tok.text!r}", tok)

    def field_value(self, field_tok: _Tok) -> tantivy.Query:
        tok = self.take()
        if tok.kind in ("WORD", "PHRASE", "RANGE", "CMP"):
            return self.tr.leaf(field_tok.text, tok, self.text)
        if tok.kind == "LP":
            values: list[tantivy.Query] = []
            while self.peek().kind in ("WORD", "PHRASE", "OR"):
                inner = self.take()
                if inner.kind != "OR":
                    values.append(self.tr.leaf(field_tok.text, inner, self.text))
            if self.take().kind != "RP" or not values:
                raise self.fail(f"{field_tok.text}:( … ) takes values and ')'", tok)
            return values[0] if len(values) == 1 else _any(values)
        raise self.fail(f"field {field_tok.text!r} has no value", field_tok)
