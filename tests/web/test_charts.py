"""The SVG geometry and the small formatting helpers of the pages."""

from __future__ import annotations

import math

from rlreg.web import charts
from rlreg.web.filters import actor_text, metadata_field, without_tensors


def test_line_chart_scales_into_the_plot_and_skips_non_numbers():
    chart = charts.line_chart("r", [(1, 0.0), (2, "n/a"), (3, 10.0), (4, True), (5, 5.0)])
    left, top, right, bottom = chart.plot
    assert chart.count == 3
    assert [(m[2], m[3]) for m in chart.markers] == [(1, 0.0), (3, 10.0), (5, 5.0)]
    xs, ys = [m[0] for m in chart.markers], [m[1] for m in chart.markers]
    assert xs[0] == left and xs[-1] == right and ys[0] == bottom and ys[1] == top
    assert chart.path.startswith(f"M{float(left)},{float(bottom)}")


def test_many_versions_are_drawn_as_an_envelope_that_keeps_the_extremes():
    points = [(v, math.sin(v / 50) + (100.0 if v == 7777 else 0.0)) for v in range(1, 10_001)]
    chart = charts.line_chart("r", points)
    drawn = chart.path.count("L") + 1
    assert drawn <= charts.MAX_POINTS and not chart.markers
    assert chart.y_ticks[-1][1] == f"{max(p[1] for p in points):.4g}"  # the spike is still the top
    assert f",{float(chart.plot[1])}" in chart.path  # and it is drawn at the top of the plot


def test_default_key_prefers_a_return():
    assert charts.default_key(["iteration", "loss", "mean_return"]) == "mean_return"
    assert charts.default_key(["a", "b"]) == "a" and charts.default_key([]) is None


def test_diff_bars_are_relative_to_the_largest_finite_change():
    bars = charts.diff_bars({"a": 0.5, "b": 2.0, "c": math.inf}, {"c": ("float32[2]", "float32[3]")})
    assert [(b.name, b.length) for b in bars] == [("c", 1.0), ("b", 1.0), ("a", 0.25)]
    assert bars[0].label == "float32[2] -> float32[3]" and bars[2].label == "0.5"


def test_metadata_fields_are_quoted_when_they_are_not_identifiers():
    assert metadata_field("mean_return") == "metadata.mean_return"
    assert metadata_field("loss/total") == 'metadata."loss/total"'


def test_actor_text():
    assert actor_text({"actor": "alice", "user": "svc", "host": "h"}) == "alice"
    assert actor_text({"actor": None, "user": "bob", "host": "lab1"}) == "bob@lab1"
    assert actor_text(None) == "" and actor_text("ci") == "ci"


def test_state_without_tensor_marks():
    state = {"w": {"$tensor": "torch"}, "opt": {"step": 3, "m": {"$tensor": "numpy"}}, "only": {"x": {"$tensor": "torch"}}}
    assert without_tensors(state) == {"opt": {"step": 3}}


def test_a_series_downsampled_in_sql_spans_all_its_versions_without_markers():
    from registry.query import Series

    chart = charts.series_chart(Series("r", count=5000, first=1, last=5000, points=[(3, 1.0), (2500, 9.0), (4999, 2.0)]))
    assert chart.count == 5000 and not chart.markers  # too many versions for a marker each
    assert (chart.x_ticks[0][1], chart.x_ticks[-1][1]) == ("1", "5000")  # the axis spans every version
    assert chart.x_ticks[0][0] == chart.plot[0] and chart.x_ticks[-1][0] == chart.plot[2]
    assert chart.path.count("L") == 2 and f",{float(chart.plot[1])}" in chart.path  # 9.0 at the top
    empty = charts.series_chart(Series("r", count=0, first=None, last=None, points=[]))
    assert empty.count == 0 and not empty.path


def test_values_from_minus_to_plus_1e308_draw_finite_coordinates():
    """``hi - lo`` of two finite floats may overflow: the path held nan and the ticks read nan/inf."""
    import math
    import re

    chart = charts.line_chart("r", [(1, -1e308), (2, 0.0), (3, 1e308)])
    numbers = [float(x) for x in re.findall(r"-?[\d.]+(?:e[-+]?\d+)?|nan|inf", chart.path)]
    assert numbers and all(math.isfinite(x) for x in numbers), chart.path
    assert all(math.isfinite(y) and "nan" not in label and "inf" not in label for y, label in chart.y_ticks)
    assert chart.y_ticks[0][1] == "-1e+308" and chart.y_ticks[-1][1] == "1e+308"


def test_a_metadata_key_the_query_language_cannot_name_has_no_sort_field():
    """A key with '"' (SQLite's JSON paths cannot hold it): its column's sort link led to a 400."""
    assert metadata_field('say "hi"') is None and metadata_field("tab\there") is None
    assert metadata_field("a b") == 'metadata."a b"'
