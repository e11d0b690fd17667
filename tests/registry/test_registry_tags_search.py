"""Tags and descriptions are events; versions(where, order_by, limit) filters and sorts in SQL."""

from __future__ import annotations

import pytest
import registry_toys as toys

from registry import InvalidNameError, NotFoundError
from registry.errors import QueryError


@pytest.fixture
def six(reg):
    module = toys.spec().build()
    for value in (5.0, 150, "n/a", None, 120.5, 99):
        reg.snapshot("m", module, {"mean_return": value, "eval": {"score": 1}} if value is not None else {})
    return reg


def test_tags_and_descriptions_are_events_shown_on_versions(six):
    reg = six
    assert reg.set_tags("m", 2, {"stage": "eval", "seed": "3"}).payload == {"version": 2, "tags": {"stage": "eval", "seed": "3"}}
    reg.set_tags("m", 2, {"stage": "prod"})  # merges: seed stays
    removed = reg.remove_tags("m", 2, ["seed"])
    assert (removed.type, removed.payload) == ("TagsRemoved", {"version": 2, "keys": ["seed"]})
    reg.set_description("m", "PPO on CartPole")
    reg.set_description("m", "the good one\nsecond line", version=2)
    assert reg.version("m", 2).tags == {"stage": "prod"} and reg.version("m", 1).tags == {}
    assert reg.version("m", 2).description == "the good one\nsecond line"
    assert reg.models()[0].description == "PPO on CartPole" and reg.models()[0].to_dict()["description"]
    assert reg.versions("m")[1].to_dict()["tags"] == {"stage": "prod"}
    reg.set_description("m", "", version=2)  # clears
    assert reg.version("m", 2).description is None
    assert [e.type for e in reg.history("m")][-6:] == ["TagsSet", "TagsSet", "TagsRemoved", "DescriptionSet", "DescriptionSet", "DescriptionSet"]
    before = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == before


def test_bad_tags_and_descriptions_record_nothing(six):
    reg = six
    head = reg.head()
    with pytest.raises(NotFoundError, match=r"model 'm' has no version 9 \(latest is 6\)"):
        reg.set_tags("m", 9, {"a": "b"})
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        reg.set_description("nope", "x")
    with pytest.raises(NotFoundError, match="model 'm' version 1 has no tag 'stage' to remove"):
        reg.remove_tags("m", 1, ["stage"])
    with pytest.raises(InvalidNameError, match="tag key '1x' is not allowed"):
        reg.set_tags("m", 1, {"1x": "y"})
    with pytest.raises(InvalidNameError, match=r"tag 'k': the value 3 is not text"):
        reg.set_tags("m", 1, {"k": 3})
    with pytest.raises(InvalidNameError, match="at most 500 printable characters and 1000 bytes"):
        reg.set_tags("m", 1, {"note": "\u4e00" * 334})  # 334 characters, 1,002 bytes: stored, never found
    with pytest.raises(InvalidNameError, match="tags must be a non-empty dict"):
        reg.set_tags("m", 1, {})
    with pytest.raises(InvalidNameError, match="a description is text of at most 10000 characters"):
        reg.set_description("m", "x" * 10_001)
    assert reg.head() == head


def test_where_order_by_and_limit(six):
    reg = six
    reg.set_tags("m", 2, {"stage": "eval"})
    reg.set_tags("m", 5, {"stage": "eval"})
    reg.set_tags("m", 6, {"stage": "train"})

    def versions(**kwargs):
        return [v.version for v in reg.versions("m", **kwargs)]

    assert versions(where="metadata.mean_return > 100") == [2, 5]
    assert versions(where='metadata.mean_return > 100 and tags.stage = "eval"') == [2, 5]
    assert versions(where="not metadata.mean_return > 100") == [1, 3, 4, 6]
    assert versions(where='metadata.mean_return = "n/a" or version >= 6') == [3, 6]
    assert versions(order_by="-metadata.mean_return") == [2, 5, 6, 1, 3, 4]
    assert versions(order_by="-metadata.mean_return", limit=2) == [2, 5]
    assert versions(order_by="tags.stage, -version", limit=3) == [5, 2, 6]
    assert versions(where='created_at >= "2000-01-01" and created_at < "2999-01-01"', limit=20) == [1, 2, 3, 4, 5, 6]
    assert versions(limit=2) == [1, 2] and versions(where="version > 99") == []
    listed = reg.versions("m", where="version = 2")[0]
    assert listed == reg.version("m", 2)  # the same ModelVersion whichever way it is read


def test_malformed_queries_and_limits_are_refused(six):
    with pytest.raises(QueryError, match=r"where 'metadata.x >> 3': at character 13 '>': expected a value"):
        six.versions("m", where="metadata.x >> 3")
    with pytest.raises(QueryError, match=r"order_by 'metadata\.': at the end: expected a key"):
        six.versions("m", order_by="metadata.")
    for bad in (0, -1, True, 2.5):
        with pytest.raises(QueryError, match=f"limit {bad!r}: expected a whole number >= 1"):
            six.versions("m", limit=bad)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        six.versions("nope", where="version = 1")


def test_numeric_metadata_keys_and_series_are_read_in_sql(six):
    reg = six
    reg.snapshot("m", toys.spec().build(), {"flag": True, "label": "x", "iteration": 70})
    assert reg.numeric_metadata_keys("m") == ["iteration", "mean_return"]  # not booleans, text or nested keys
    series = reg.metadata_series("m", "mean_return")
    assert (series.count, series.first, series.last) == (4, 1, 6) and not series.downsampled
    assert series.points == [(1, 5.0), (2, 150.0), (5, 120.5), (6, 99.0)]
    two = reg.metadata_series("m", "mean_return", max_points=2)  # one bucket: its smallest and largest
    assert (two.count, two.first, two.last, two.points) == (4, 1, 6, [(1, 5.0), (2, 150.0)]) and two.downsampled
    assert reg.metadata_series("m", "label").count == 0 and reg.metadata_series("m", "nope").points == []
    reg.delete_version("m", 7, reason="test")
    reg.delete_version("m", 2, reason="test")
    assert reg.numeric_metadata_keys("m") == ["mean_return"]
    assert reg.numeric_metadata_keys("m", include_deleted=True) == ["iteration", "mean_return"]
    assert reg.metadata_series("m", "mean_return").points == [(1, 5.0), (5, 120.5), (6, 99.0)]
    assert reg.metadata_series("m", "mean_return", include_deleted=True).count == 4
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        reg.metadata_series("nope", "mean_return")
    with pytest.raises(ValueError, match="max_points=1"):
        reg.metadata_series("m", "mean_return", max_points=1)


def test_a_long_series_keeps_each_buckets_extremes(reg):
    from registry.eventstore import NewEvent
    from registry.projections import VERSION_RECORDED

    reg.snapshot("long", toys.spec().build(), {"r": 0.0})
    payload = reg.event_store.read_stream("long")[-1].payload
    values = {v: float((v * 37) % 23) - (50.0 if v == 41 else 0.0) for v in range(1, 101)}
    reg.event_store.append("long", [NewEvent(VERSION_RECORDED, {**payload, "version": v, "metadata": {"r": values[v]}})
                                    for v in range(2, 101)], expected_version=reg.event_store.stream_version("long"))
    values[1] = 0.0
    series = reg.metadata_series("long", "r", max_points=20)
    buckets: dict[int, list[tuple[int, float]]] = {}
    for v, x in values.items():
        buckets.setdefault((v - 1) * 10 // 100, []).append((v, x))
    expected = sorted({p for b in buckets.values() for p in (min(b, key=lambda p: (p[1], p[0])),
                                                           max(b, key=lambda p: (p[1], -p[0])))})
    assert (series.count, series.first, series.last) == (100, 1, 100)
    assert series.points == expected and len(series.points) <= 20
    assert min(series.points, key=lambda p: p[1]) == (41, values[41])


def test_rebuilt_projections_are_analyzed_on_postgresql(six):
    import sqlalchemy as sa

    engine = six.event_store.engine
    stats = sa.text("SELECT count(*) FROM pg_stats WHERE tablename = 'rlreg_version_fields'")
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            assert conn.execute(stats).scalar() == 0  # a few rows: autovacuum has not analyzed them
    before = six.projection_rows()
    six.rebuild_projections()
    assert six.projection_rows() == before
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            assert conn.execute(stats).scalar() > 0  # the planner has statistics for the search projection
    assert [v.version for v in six.versions("m", order_by="-metadata.mean_return", limit=2)] == [2, 5]


def test_newest_first_is_read_in_index_order_not_sorted(six):
    """``order_by="-version", limit=N`` (the web's versions page) reads N index entries, whatever the count."""
    import sqlalchemy as sa

    from registry import query
    from registry.schema import version_fields, versions

    target = query.Target("m", versions.c.version, versions.c.created_at, version_fields)
    engine = six.event_store.engine
    with engine.connect() as conn:
        for order_by, sorted_after in (("-version", False), ("version", False), ("-metadata.mean_return", True)):
            select = query.select_versions(target, order_by=order_by, limit=3)
            sql = str(select.compile(engine, compile_kwargs={"literal_binds": True}))
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a 6-row table: else a scan always wins
                plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql))
                assert (" Sort " in f" {plan} ") == sorted_after, plan
            else:
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
                assert ("TEMP B-TREE" in plan) == sorted_after, plan
            conn.rollback()
    assert [v.version for v in six.versions("m", order_by="-version", limit=3)] == [6, 5, 4]


def test_at_most_eight_sort_keys_and_eight_still_sort(six, db_url, local_storage_url):
    """Each metadata key to sort by joins the search table once: SQLite 3.40 crashed the process
    (SIGSEGV, a web server with it: one GET) at 32 joins and refused 64 as "unavailable or locked". The
    32 keys run in a child process, so that a crash fails this test rather than ending the run."""
    import subprocess
    import sys

    keys = ",".join(f"-metadata.k{i}" for i in range(32))
    code = ("import sys; from registry import Registry; from registry.errors import QueryError\n"
            "reg = Registry(sys.argv[1], sys.argv[2])\n"
            "try: reg.versions('m', order_by=sys.argv[3])\n"
            "except QueryError as e: print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code, db_url, local_storage_url, keys], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused:" in done.stdout and "at most 8 sort keys" in done.stdout, done.stdout
    eight = ",".join(["-metadata.mean_return"] + [f"metadata.k{i}" for i in range(7)])
    assert [v.version for v in six.versions("m", order_by=eight)] == [
        v.version for v in six.versions("m", order_by="-metadata.mean_return")]


def test_reads_of_a_model_bind_as_many_parameters_whatever_it_deleted(reg):
    """The live versions were picked with ``NOT IN (:v1, .., :vN)``, one parameter per deleted version:
    PostgreSQL refuses a statement of more than 65,535 (a trainer under a keep_last policy reaches it),
    as "unavailable or locked". Now one ``NOT EXISTS``: the parameters do not grow with the deletions."""
    import sqlalchemy as sa

    module = toys.spec().build()
    for i in range(12):
        reg.snapshot("m", module, {"r": float(i)})
    most: list[int] = []
    sa.event.listen(reg.event_store.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, *a: most.append(len(params or ())))

    def parameters() -> int:
        most.clear()
        assert reg.versions("m", where="metadata.r >= 0", order_by="-metadata.r")
        assert reg.numeric_metadata_keys("m") == ["r"]
        assert reg.metadata_series("m", "r").count >= 1
        return max(most)

    reg.delete_version("m", 1, reason="old")
    few = parameters()
    for v in range(2, 11):
        reg.delete_version("m", v, reason="old")
    assert parameters() == few
    assert [v.version for v in reg.versions("m")] == [11, 12]
    assert [v.version for v in reg.versions("m", include_deleted=True) if v.deleted] == list(range(1, 11))
    assert reg.metadata_series("m", "r").points == [(11, 10.0), (12, 11.0)]
    assert reg.metadata_series("m", "r", include_deleted=True).deleted == frozenset(range(1, 11))
