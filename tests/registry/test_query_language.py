"""The where/order_by language: parser properties (hypothesis), errors at the token, SQL = a Python oracle.

The oracle below is the specification of ``registry.query``'s meaning written in plain Python; the
SQL compiled for SQLite and PostgreSQL must select and order exactly what it does.
"""

from __future__ import annotations

import json

import hypothesis.strategies as st
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from registry import query
from registry.errors import QueryError
from registry.query import And, Compare, Field, Not, Or, OrderKey
from registry.schema import version_fields

KEYS = ("r", "s", "b", "and", "a.b", "x y")
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)))
path = st.lists(st.sampled_from(KEYS), min_size=1, max_size=2).map(tuple)


@st.composite
def comparisons(draw) -> Compare:
    kind = draw(st.sampled_from(["version", "metadata", "metadata", "tags"]))
    op = draw(st.sampled_from(query.OPERATORS))
    if kind == "version":
        return Compare(Field("version"), op, draw(st.integers(0, 12)))
    if kind == "tags":
        return Compare(Field("tags", (draw(st.sampled_from(["stage", "a.b", "seed"])),)), op, draw(text))
    value = draw(st.one_of(numbers, text, st.booleans()))
    return Compare(Field("metadata", draw(path)), "=" if isinstance(value, bool) and op not in ("=", "!=") else op, value)


nodes = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(nodes)
def test_printing_then_parsing_gives_the_same_tree(node):
    assert query.parse(str(node)) == node


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_raises_query_error_at_a_position_inside_it(text_in):
    try:
        query.parse(text_in)
    except QueryError as exc:
        assert 0 <= exc.position <= len(text_in) and exc.text == text_in
        assert str(exc).startswith(f"where {text_in!r}: at ")


@settings(max_examples=50, deadline=None)
@given(nodes, st.data())
def test_a_stray_character_is_reported_where_it_is(node, data):
    source = str(node)
    # Not right after a '!' of '!=' or a '-' of '-5': split off, that character is itself the first
    # unexpected one, and is reported (`version !$= 0` is refused at the '!').
    outside = [i for i in range(len(source) + 1) if _outside_strings(source, i) and source[i - 1 : i] not in ("!", "-")]
    at = data.draw(st.sampled_from(outside))
    with pytest.raises(QueryError) as refused:
        query.parse(source[:at] + "$" + source[at:])
    assert refused.value.position == at and f"at character {at + 1} '$': unexpected character" in str(refused.value)


def _outside_strings(source: str, at: int) -> bool:
    quote, i = None, 0
    while i < at:
        c = source[i]
        if quote and c == "\\":
            i += 2
            continue
        if c in "\"'":
            quote = None if quote == c else (quote or c)
        i += 1
    return quote is None and i == at


@pytest.mark.parametrize(
    ("text_in", "message"),
    [
        ("metadata.x >> 3", "at character 13 '>': expected a value (a number, a quoted string, true or false)"),
        ("metadata.x > ", "at the end: expected a value"),
        ("(version > 1", "at the end: expected ')' to close the '(' at character 1"),
        ("tags.seed = 3", "at character 13 '3': tags are text: write tags.seed = \"3\""),
        ("foo = 1", "at character 1 'foo': expected a field (version, created_at, metadata.KEY or tags.KEY)"),
        ("version > 1 x", "at character 13 'x': expected 'and', 'or' or the end"),
        ("version > 1.5", "at character 11 '1.5': 'version' compares with a whole number"),
        ('created_at > "yesterday"', "expected an ISO 8601 date or time"),
        # UTC in year 0 or 10000: an OverflowError when bound, reported with the SQL's text
        ('created_at > "0001-01-01T00:00+01:00"', "at character 14 '\"0001-01-01T00:00+01:00\"': expected an ISO"),
        ('created_at < "9999-12-31T23:30-01:00"', "between the years 1 and 9999 (UTC)"),
        ("metadata.ok < true", "true and false compare only with = and !=, not '<'"),
        ("metadata = 1", "at character 10 '=': expected '.' and a key after 'metadata'"),
        ("metadata.x = 1e999", "expected a number within"),
        ("", "at the end: expected a condition"),
        ("not " * 60 + "version = 1", "more than 50 nested"),
    ],
)
def test_malformed_expressions_name_the_offending_token(text_in, message):
    with pytest.raises(QueryError) as refused:
        query.parse(text_in)
    assert message in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_order_keys():
    assert query.parse_order("-metadata.mean_return, +version,tags.stage") == [
        OrderKey(Field("metadata", ("mean_return",)), True), OrderKey(Field("version")),
        OrderKey(Field("tags", ("stage",))),
    ]
    with pytest.raises(QueryError, match=r"order_by '-metadata.r desc': at character 13 'desc': expected ',' or the end"):
        query.parse_order("-metadata.r desc")


# --- the SQL against the oracle ----------------------------------------------------------------


def _lookup(row: dict, field: Field):
    if field.kind == "version":
        return row["version"]
    value = row["tags" if field.kind == "tags" else "metadata"]
    for key in field.path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _kind(value) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else None


def oracle(node, row: dict) -> bool:
    """The meaning of a tree on one version (``row``: version, metadata, tags)."""
    if isinstance(node, And):
        return all(oracle(i, row) for i in node.items)
    if isinstance(node, Or):
        return any(oracle(i, row) for i in node.items)
    if isinstance(node, Not):
        return not oracle(node.item, row)
    value = _lookup(row, node.field)
    if _kind(value) != _kind(node.value):
        return False
    return {"=": value == node.value, "!=": value != node.value, "<": value < node.value, "<=": value <= node.value,
            ">": value > node.value, ">=": value >= node.value}[node.op]


def oracle_order(keys: list[OrderKey], rows: list[dict]) -> list[int]:
    """Versions in order: per key numbers, then strings, then missing (values descending with "-")."""
    out = sorted(rows, key=lambda r: r["version"])
    for key in reversed(keys):  # stable sorts, least significant key first
        groups: dict[int, list[dict]] = {0: [], 1: [], 2: []}
        for r in out:
            kind = _kind(_lookup(r, key.field))
            groups[{"number": 0, "string": 1}.get(kind, 2)].append(r)
        if key.field.kind == "tags":  # tags sort as text only
            groups = {0: [], 1: groups[1], 2: groups[0] + groups[2]}
        out = [r for g in (0, 1) for r in sorted(groups[g], key=lambda r: _lookup(r, key.field), reverse=key.descending)]
        out += groups[2]
    return [r["version"] for r in out]


meta_values = st.one_of(st.none(), numbers, text, st.booleans(), st.dictionaries(st.sampled_from(KEYS), numbers, max_size=2))
rows = st.lists(
    st.fixed_dictionaries({
        "metadata": st.dictionaries(st.sampled_from(KEYS), meta_values, max_size=4),
        "tags": st.dictionaries(st.sampled_from(["stage", "a.b", "seed"]), text, max_size=2),
    }),
    min_size=1, max_size=8,
)
order_keys = st.lists(
    st.builds(OrderKey, st.one_of(st.just(Field("version")), path.map(lambda p: Field("metadata", p)),
                                  st.sampled_from(["stage", "seed"]).map(lambda k: Field("tags", (k,)))),
              st.booleans()),
    min_size=1, max_size=2,
)

VERSIONS = sa.Table(
    "q", sa.MetaData(), sa.Column("name", sa.String(20), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True), sa.Column("created_at", sa.DateTime(timezone=True)),
)


@pytest.fixture
def engine(empty_db_url):
    engine = sa.create_engine(empty_db_url)
    VERSIONS.create(engine)
    version_fields.create(engine)
    yield engine
    engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows, nodes, order_keys)
def test_sql_selects_and_orders_what_the_oracle_does(engine, rows_in, node, keys):
    records = [{"version": i, **r} for i, r in enumerate(rows_in, start=1)]
    target = query.Target("m", VERSIONS.c.version, VERSIONS.c.created_at, version_fields)
    with engine.begin() as conn:
        conn.execute(VERSIONS.delete())
        conn.execute(version_fields.delete())
        conn.execute(VERSIONS.insert(), [{"name": "m", "version": r["version"], "created_at": None} for r in records])
        fields = [f for r in records for source in ("metadata", "tags")
                  for f in query.field_rows("m", r["version"], source, r[source])]
        if fields:
            conn.execute(version_fields.insert(), fields)
        selected = conn.execute(query.select_versions(target, where=str(node))).scalars().all()
        ordered = conn.execute(query.select_versions(target, order_by=", ".join(map(str, keys)))).scalars().all()
    assert selected == [r["version"] for r in records if oracle(node, r)], (str(node), json.dumps(records))
    assert ordered == oracle_order(keys, records), ([str(k) for k in keys], json.dumps(records))
