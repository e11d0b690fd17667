"""A small, safe language to filter and sort versions, compiled to SQL (never ``eval``).

Grammar (keywords and field names are case-insensitive; whitespace separates nothing else)::

    where      = or
    or         = and { "or" and }
    and        = not { "and" not }
    not        = "not" not | "(" or ")" | comparison
    comparison = field op literal
    field      = "version" | "created_at" | ("metadata" | "tags") "." key { "." key }
    key        = identifier | string          identifier: [A-Za-z_][A-Za-z0-9_-]*
    op         = "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    literal    = number | string | "true" | "false"
    number     = [-] digits [ "." digits ] [ ("e" | "E") [+-] digits ]
    string     = '"' chars '"' | "'" chars "'"   with \\" \\' \\\\ escapes

    order      = key_order { "," key_order }
    key_order  = [ "-" | "+" ] field            "-" sorts descending

Meaning:

- ``version`` compares with a whole number; ``created_at`` with an ISO 8601 date or time as a string
  (``created_at >= "2026-12-01"``; a time without a zone is UTC).
- ``metadata.a.b`` is the value at that path of the version's metadata (a nested key for each dot).
  A comparison holds only when the value has the literal's type: ``metadata.r > 100`` is false for a
  version whose ``r`` is missing, a string or ``true``; strings compare by code point; ``true`` and
  ``false`` allow only ``=`` and ``!=``.
- ``tags.k`` is the tag ``k`` (tags are flat: ``tags.a.b`` is the tag ``a.b``) and compares with
  strings only.
- Every comparison is true or false (never SQL's unknown), so ``not`` is plain negation: ``not
  metadata.r > 100`` holds for versions without ``r``. ``!=`` holds only where the value exists.
- Sorting by ``metadata.x`` puts numbers first (by value), then strings, then versions without it;
  ties are broken by version, ascending.

- Metadata strings longer than 1,000 bytes (UTF-8), numbers beyond 1e308 and lists are not searchable.

``parse(text)`` and ``parse_order(text)`` give a small tree (``str(tree)`` prints it back);
``select_versions(target, where, order_by, limit)`` compiles both to one ``SELECT version`` (the same
SQL on SQLite and PostgreSQL). Comparisons on metadata and tags read the search projection
``rlreg_version_fields`` (one row per scalar leaf, indexed by key and value, filled with
``field_rows``) instead of parsing every version's JSON, so they stay fast with many versions.
Errors are ``QueryError`` naming the offending token and its position.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import sqlalchemy as sa

from registry.errors import QueryError

MAX_LENGTH = 2000  # characters of one expression
MAX_NUMBER = 2**63 - 1  # the largest number literal
MAX_FLOAT = 1e308  # larger numbers in metadata are not searchable
MAX_DEPTH = 50  # nesting of parentheses and "not"
MAX_SORT_KEYS = 8  # each metadata or tags key joins the search table once (SQLite 3.40 crashed at 32 joins)
OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
FIELDS = ("version", "created_at", "metadata", "tags")
KEYWORDS = ("and", "or", "not", "true", "false")

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?![A-Za-z0-9_]))
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|=|<|>)
      | (?P<punct>[().,+-])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    """,
    re.VERBOSE,
)


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """``version``, ``created_at``, ``metadata.<path>`` or ``tags.<key>``."""

    kind: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        keys = "".join(f".{k}" if _IDENT.fullmatch(k) and k.lower() not in KEYWORDS else f".{_quote(k)}"
                       for k in self.path)
        return self.kind + keys


@dataclass(frozen=True)
class Compare:
    """``field op value``."""

    field: Field
    op: str
    value: Union[int, float, str, bool]

    def __str__(self) -> str:
        if isinstance(self.value, bool):
            value = "true" if self.value else "false"
        elif isinstance(self.value, str):
            value = _quote(self.value)
        else:
            value = repr(self.value)
        return f"{self.field} {self.op} {value}"


@dataclass(frozen=True)
class Not:
    """``not item``."""

    item: Node

    def __str__(self) -> str:
        return f"not ({self.item})"


@dataclass(frozen=True)
class And:
    """``a and b and ...``."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(f"({i})" for i in self.items)


@dataclass(frozen=True)
class Or:
    """``a or b or ...``."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(f"({i})" for i in self.items)


Node = Union[Compare, Not, And, Or]


@dataclass(frozen=True)
class OrderKey:
    """One sort key: a field, descending or not."""

    field: Field
    descending: bool = False

    def __str__(self) -> str:
        return ("-" if self.descending else "") + str(self.field)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_KEY = re.compile(r'[^"\\\x00-\x1f\x7f]{1,200}')  # SQLite's JSON paths cannot escape '"'


def nameable_key(key: str) -> bool:
    """Whether the query language can name the metadata or tag key ``key`` (``metadata."..."``)."""
    return bool(_KEY.fullmatch(key))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A lexeme of an expression and where it starts (0-based)."""

    kind: str
    text: str
    pos: int


def tokenize(text: str, what: str = "where") -> list[Token]:
    """The tokens of ``text`` (without whitespace), ending with an ``end`` token."""
    if not isinstance(text, str):
        raise QueryError(f"{what}: expected a string, got {type(text).__name__}", text=str(text), position=0)
    if len(text) > MAX_LENGTH:
        raise QueryError(f"{what}: the expression has {len(text)} characters, at most {MAX_LENGTH}",
                         text=text[:80], position=MAX_LENGTH)
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _error(what, text, pos, "unexpected character", text[pos])
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _error(what: str, text: str, pos: int, problem: str, token: str | None = None) -> QueryError:
    where = "at the end" if pos >= len(text) else f"at character {pos + 1}"
    if token:
        where += f" {token!r}"
    return QueryError(f"{what} {text!r}: {where}: {problem}", text=text, position=pos)


# --- the parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text, self.what = text, what
        self.tokens = tokenize(text, what)
        self.i = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def fail(self, problem: str, token: Token | None = None) -> QueryError:
        token = token or self.token
        return _error(self.what, self.text, token.pos, problem, token.text if token.kind != "end" else None)

    def keyword(self, word: str) -> bool:
        if self.token.kind == "ident" and self.token.text.lower() == word:
            self.i += 1
            return True
        return False

    def punct(self, char: str) -> bool:
        if self.token.kind == "punct" and self.token.text == char:
            self.i += 1
            return True
        return False

    def done(self) -> None:
        if self.token.kind != "end":
            raise self.fail("expected 'and', 'or' or the end")

    def where(self) -> Node:
        items = [self.conjunction()]
        while self.keyword("or"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.keyword("and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"more than {MAX_DEPTH} nested 'not' or '('")
        try:
            if self.keyword("not"):
                return Not(self.negation())
            opening = self.token
            if self.punct("("):
                inner = self.where()
                if not self.punct(")"):
                    raise self.fail(f"expected ')' to close the '(' at character {opening.pos + 1}")
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def field(self) -> Field:
        token = self.token
        if token.kind != "ident" or token.text.lower() not in FIELDS:
            raise self.fail("expected a field (version, created_at, metadata.KEY or tags.KEY)")
        self.i += 1
        kind = token.text.lower()
        path: list[str] = []
        while self.punct("."):
            key = self.token
            if key.kind == "ident":
                path.append(key.text)
            elif key.kind == "string" and _KEY.fullmatch(_unquote(key.text)):
                path.append(_unquote(key.text))
            elif key.kind == "string":
                raise self.fail('expected a key of 1-200 characters without \'"\', \'\\\' or control characters', key)
            else:
                raise self.fail(f"expected a key after '{kind}.'")
            self.i += 1
        if kind in ("metadata", "tags") and not path:
            raise self.fail(f"expected '.' and a key after {kind!r} (e.g. {kind}.name)")
        if kind not in ("metadata", "tags") and path:
            raise self.fail(f"{kind!r} has no keys", token)
        if kind == "tags":
            path = [".".join(path)]
        return Field(kind, tuple(path))

    def comparison(self) -> Compare:
        field = self.field()
        op = self.token
        if op.kind != "op":
            raise self.fail("expected a comparison (=, !=, <, <=, >, >=)")
        self.i += 1
        value = self.literal()
        compare = Compare(field, "=" if op.text == "==" else op.text, value)
        _check_types(compare, self, self.tokens[self.i - 1])
        return compare

    def literal(self) -> Union[int, float, str, bool]:
        token = self.token
        if token.kind == "number":
            self.i += 1
            number = float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            if abs(number) > MAX_NUMBER:
                raise self.fail(f"expected a number within +-{MAX_NUMBER:.3g}", token)
            return number
        if token.kind == "string":
            self.i += 1
            return _unquote(token.text)
        if token.kind == "ident" and token.text.lower() in ("true", "false"):
            self.i += 1
            return token.text.lower() == "true"
        raise self.fail("expected a value (a number, a quoted string, true or false)")

    def order(self) -> list[OrderKey]:
        keys = [self.order_key()]
        while self.punct(","):
            if len(keys) == MAX_SORT_KEYS:
                raise self.fail(f"at most {MAX_SORT_KEYS} sort keys")
            keys.append(self.order_key())
        if self.token.kind != "end":
            raise self.fail("expected ',' or the end")
        return keys

    def order_key(self) -> OrderKey:
        descending = self.punct("-")
        if not descending:
            self.punct("+")
        return OrderKey(self.field(), descending)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


def _check_types(compare: Compare, parser: _Parser, token: Token) -> None:
    kind, value, op = compare.field.kind, compare.value, compare.op
    if kind == "version" and (isinstance(value, bool) or not isinstance(value, int)):
        raise parser.fail("'version' compares with a whole number", token)
    if kind == "created_at":
        if not isinstance(value, str):
            raise parser.fail('\'created_at\' compares with a quoted ISO date or time ("2026-12-01")', token)
        try:
            _timestamp(value)
        except ValueError:
            raise parser.fail("expected an ISO 8601 date or time between the years 1 and 9999 (UTC)", token) from None
    if kind == "tags" and not isinstance(value, str):
        raise parser.fail(f"tags are text: write {compare.field} {op} \"{_plain(value)}\"", token)
    if isinstance(value, bool) and op not in ("=", "!="):
        raise parser.fail(f"true and false compare only with = and !=, not {op!r}", token)


def _plain(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _timestamp(text: str) -> dt.datetime:
    """The moment ``text`` names, in UTC (``ValueError`` for one that is not a date or time, or whose UTC
    falls outside the years 1-9999: "0001-01-01T00:00+01:00")."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None


def parse(text: str) -> Node:
    """The tree of a ``where`` expression; ``QueryError`` names the offending token otherwise."""
    parser = _Parser(text, "where")
    if parser.token.kind == "end":
        raise parser.fail("expected a condition (e.g. metadata.mean_return > 100)")
    node = parser.where()
    parser.done()
    return node


def parse_order(text: str) -> list[OrderKey]:
    """The sort keys of an ``order_by`` text such as ``-metadata.mean_return, version``."""
    parser = _Parser(text, "order_by")
    if parser.token.kind == "end":
        raise parser.fail("expected a field to sort by (e.g. -metadata.mean_return)")
    return parser.order()


# --- the search projection and SQL ---------------------------------------------------------------

MAX_KEY_BYTES = 500  # longer key paths are not searchable
MAX_TEXT = 1000  # bytes: longer strings are not searchable (PostgreSQL's index entries stay < 2704 bytes)


def encode_key(path: tuple[str, ...]) -> str:
    """A path as the key of ``rlreg_version_fields``: canonical JSON of the list of keys."""
    return json.dumps(list(path), ensure_ascii=False, separators=(",", ":"))


def field_rows(name: str, version: int, source: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``rlreg_version_fields`` rows of a version's metadata or tags: one per scalar leaf."""
    rows: list[dict[str, Any]] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, (*path, key))
            return
        kind = _json_kind(value)
        if kind is None or (kind == "string" and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT):
            return
        key = encode_key(path)
        if len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
            number = float(value) if kind != "string" and abs(value) <= MAX_FLOAT else None
            if kind == "string" or number is not None:
                rows.append({"name": name, "version": version, "source": source, "key": key, "kind": kind,
                             "num": number, "text": value if kind == "string" else None})

    walk(values, ())
    return rows


@dataclass(frozen=True)
class Target:
    """What a query runs on: one model's versions and the search projection's rows."""

    name: str
    version: Any  # the versions table's version column
    created_at: Any
    fields: sa.Table  # rlreg_version_fields


def select_versions(target: Target, where: str | None = None, order_by: str | None = None,
                    limit: int | None = None) -> sa.Select:
    """``SELECT version`` of ``target.name``'s versions matching ``where``, sorted by ``order_by``."""
    table = target.version.table
    query = sa.select(target.version).where(table.c.name == target.name)
    if where is not None:
        query = query.where(_sql(parse(where), target))
    order = [target.version.asc()]
    if order_by is not None:
        joined, terms = table, []
        for i, key in enumerate(parse_order(order_by)):
            joined, values = _sort_values(key.field, target, joined, i)
            # version and created_at are never NULL: no NULLS LAST, so an index can give their order
            nullable = key.field.kind not in ("version", "created_at")
            terms += [_direction(v, key.descending, nullable) for v in values]
        query, order = query.select_from(joined), [*terms, target.version.asc()]
    return query.order_by(*order).limit(limit)


def _direction(value: Any, descending: bool, nullable: bool) -> Any:
    ordered = value.desc() if descending else value.asc()
    return ordered.nulls_last() if nullable else ordered


def _sql(node: Node, target: Target) -> sa.ColumnElement[bool]:
    if isinstance(node, And):
        return sa.and_(*(_sql(i, target) for i in node.items))
    if isinstance(node, Or):
        return sa.or_(*(_sql(i, target) for i in node.items))
    if isinstance(node, Not):
        return sa.not_(_sql(node.item, target))
    return _comparison(node, target)


def _comparison(node: Compare, target: Target) -> sa.ColumnElement[bool]:
    compare = _OPERATORS[node.op]
    if node.field.kind == "version":
        return compare(target.version, node.value)
    if node.field.kind == "created_at":
        return compare(target.created_at, _timestamp(str(node.value)))
    f = target.fields.c
    kind = _json_kind(node.value)
    value = node.value if kind == "string" else float(node.value)
    matching = sa.select(f.version).where(
        f.name == target.name, f.source == node.field.kind, f.key == encode_key(node.field.path), f.kind == kind,
        compare(f.text if kind == "string" else f.num, value),
    )
    return target.version.in_(matching)


def _json_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else None


_OPERATORS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}


def _sort_values(field: Field, target: Target, joined: Any, i: int) -> tuple[Any, list[Any]]:
    """The (possibly joined) FROM and the values to sort by for one sort key."""
    if field.kind in ("version", "created_at"):
        return joined, [getattr(target, field.kind)]
    f = target.fields.alias(f"sort_{i}")
    on = sa.and_(f.c.name == target.name, f.c.version == target.version, f.c.source == field.kind,
                 f.c.key == encode_key(field.path))
    joined = joined.outerjoin(f, on)
    text = sa.case((f.c.kind == "string", f.c.text), else_=sa.null())
    if field.kind == "tags":
        return joined, [text]
    return joined, [sa.case((f.c.kind == "number", f.c.num), else_=sa.null()), text]


# --- numeric series of one metadata key (charts) -------------------------------------------------


@dataclass(frozen=True)
class Series:
    """``(version, value)`` of one numeric metadata key, at most ``max_points`` of them.

    ``count`` versions hold a number under the key, from version ``first`` to ``last``; when they are
    more than ``max_points``, ``points`` keeps each of ``max_points // 2`` buckets of consecutive
    versions' smallest and largest value (so the extremes survive), in version order.
    """

    key: str
    count: int
    first: int | None
    last: int | None
    points: list[tuple[int, float]]
    deleted: frozenset[int] = frozenset()  # the points' versions that are deleted (a series of deleted ones too)

    @property
    def downsampled(self) -> bool:
        return len(self.points) < self.count


def _numbers(fields: sa.Table, name: str, key: str, live: Any) -> list[Any]:
    f = fields.c
    conditions = [f.name == name, f.source == "metadata", f.key == encode_key((key,)), f.kind == "number"]
    return conditions + ([live(f.version)] if live is not None else [])


def numeric_keys(conn: sa.Connection, fields: sa.Table, name: str, live: Any = None) -> list[str]:
    """The top-level metadata keys holding a number in some version of ``name``, sorted (``live(version
    column)``: the condition a version must meet, e.g. not to be deleted).

    A skip scan over the key index: one index seek per distinct key (``ORDER BY key LIMIT 1``, not
    ``min()``), then one per key for a number (a scalar subquery, which is never turned into a join);
    written so that its plan does not hinge on the planner's statistics, and its cost does not grow
    with the number of versions.
    """
    f = fields.c
    mine = (f.name == name, f.source == "metadata")

    def next_key(*after: Any) -> Any:
        return sa.select(f.key).where(*mine, *after).order_by(f.key).limit(1).scalar_subquery()

    keys = sa.select(next_key().label("key")).cte("metadata_keys", recursive=True)
    keys = keys.union_all(sa.select(next_key(f.key > keys.c.key)).where(keys.c.key.is_not(None)))
    a_number = sa.select(f.version).where(
        *mine, f.key == keys.c.key, f.kind == "number", *([live(f.version)] if live is not None else [])
    ).order_by(f.num).limit(1).scalar_subquery()  # in index order: a seek, never a scan that hopes to stop early
    found = conn.execute(sa.select(keys.c.key, a_number).where(keys.c.key.is_not(None))).all()
    paths = [json.loads(key) for key, version in found if version is not None]
    return sorted(p[0] for p in paths if len(p) == 1)


def series(conn: sa.Connection, fields: sa.Table, name: str, key: str, max_points: int,
           live: Any = None) -> Series:
    """The values of the top-level metadata number ``key`` over ``name``'s versions, at most ``max_points``.

    Computed in SQL from the search projection's index on (name, source, key, kind, num, version):
    only the points drawn leave the database.
    """
    if max_points < 2:
        raise ValueError(f"max_points={max_points}: expected at least 2")
    f = fields.c
    where = _numbers(fields, name, key, live)
    count, first, last = conn.execute(sa.select(sa.func.count(), sa.func.min(f.version), sa.func.max(f.version))
                                      .where(*where)).one()
    if count <= max_points:
        rows = conn.execute(sa.select(f.version, f.num).where(*where).order_by(f.version)).all()
        return Series(key, count, first, last, [(v, x) for v, x in rows])
    buckets = max_points // 2
    bucket = (sa.cast(f.version - first, sa.BigInteger) * buckets) // (last - first + 1)  # 64-bit: no overflow
    pts = sa.select(f.version, f.num, bucket.label("bucket")).where(*where).subquery("pts")
    ranked = sa.select(
        pts.c.version, pts.c.num,
        sa.func.row_number().over(partition_by=pts.c.bucket, order_by=(pts.c.num.asc(), pts.c.version)).label("lo"),
        sa.func.row_number().over(partition_by=pts.c.bucket, order_by=(pts.c.num.desc(), pts.c.version)).label("hi"),
    ).subquery("ranked")
    rows = conn.execute(sa.select(ranked.c.version, ranked.c.num).where(sa.or_(ranked.c.lo == 1, ranked.c.hi == 1))
                        .order_by(ranked.c.version)).all()
    return Series(key, count, first, last, [(v, x) for v, x in rows])
