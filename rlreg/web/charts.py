"""Server-rendered SVG geometry: a metadata key over versions, and the bars of a diff.

Only numbers leave this module; the templates write the SVG elements (Jinja escapes every string).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 720, 240
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 16, 12, 28
MAX_POINTS = 2000  # more versions than this are drawn as a min/max envelope per bucket
MAX_MARKERS = 300  # points get a marker (with a tooltip) only when there are this few


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric_keys(metadatas: Iterable[Mapping[str, Any]]) -> list[str]:
    """Metadata keys that hold a number in at least one version, sorted."""
    return sorted({k for m in metadatas for k, v in (m or {}).items() if is_number(v)})


PREFERRED = ("return", "reward", "score")


def default_key(keys: Sequence[str]) -> str | None:
    """The key to chart when none is asked for: one that looks like a return, else the first."""
    return next((k for word in PREFERRED for k in keys if word in k.lower()), keys[0] if keys else None)


@dataclass
class Chart:
    """A line of ``(version, value)`` points scaled into a ``width`` x ``height`` box."""

    key: str
    count: int
    path: str = ""
    markers: list[tuple[float, float, int, float]] = field(default_factory=list)
    deleted: frozenset[int] = frozenset()  # versions of markers that are deleted (drawn, not linked)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[int, int, int, int] = (PAD_LEFT, PAD_TOP, WIDTH - PAD_RIGHT, HEIGHT - PAD_BOTTOM)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    return [lo * (1 - i / (n - 1)) + hi * (i / (n - 1)) for i in range(n)]  # (not lo + (hi - lo) * f: it may overflow)


def _fraction(v: float, lo: float, hi: float) -> float:
    """Where ``v`` lies from ``lo`` (0) to ``hi`` (1); halved first, as ``hi - lo`` of two finite floats
    may overflow (values from -1e308 to 1e308 drew a path of nan)."""
    return (v / 2 - lo / 2) / (hi / 2 - lo / 2)


def _label(value: float) -> str:
    return f"{value:.4g}"


def _envelope(points: Sequence[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most ``limit`` points: each bucket's minimum and maximum, in version order."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / (limit // 2))
    out: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start:start + size]
        lo, hi = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def line_chart(key: str, points: Sequence[tuple[int, Any]], *, count: int | None = None,
               versions: tuple[int, int] | None = None) -> Chart:
    """The chart of ``key`` over ``(version, value)`` points (non-numbers are left out).

    ``points`` may already be downsampled (``registry.query.Series``): ``count`` is then how many
    versions they stand for and ``versions`` the first and last of those.
    """
    pts = sorted((v, float(x)) for v, x in points if is_number(x))
    chart = Chart(key=key, count=len(pts) if count is None else count)
    if not pts:
        return chart
    left, top, right, bottom = chart.plot
    vx = [p[0] for p in pts]
    vy = [p[1] for p in pts]
    x0, x1 = versions if versions is not None else (min(vx), max(vx))
    y0, y1 = min(vy), max(vy)

    def sx(v: float) -> float:
        return round(left + _fraction(v, x0, x1) * (right - left), 1) if x1 != x0 else (left + right) / 2

    def sy(v: float) -> float:
        return round(bottom - _fraction(v, y0, y1) * (bottom - top), 1) if y1 != y0 else (top + bottom) / 2

    drawn = _envelope(pts, MAX_POINTS)
    chart.path = "M" + " L".join(f"{sx(v)},{sy(y)}" for v, y in drawn)
    if chart.count <= MAX_MARKERS and len(pts) == chart.count:
        chart.markers = [(sx(v), sy(y), v, y) for v, y in pts]
    chart.x_ticks = [(sx(t), str(round(t))) for t in _ticks(x0, x1, min(6, x1 - x0 + 1))]
    chart.y_ticks = [(sy(t), _label(t)) for t in _ticks(y0, y1)]
    return chart


@dataclass
class Bar:
    """One changed tensor: its name, max |a-b| (``inf`` for a dtype or shape change) and bar length."""

    name: str
    delta: float
    length: float  # 0..1 of the widest bar
    shape_change: str = ""

    @property
    def label(self) -> str:
        """The number as text (or what changed instead)."""
        return self.shape_change or f"{self.delta:.6g}"


def diff_bars(changed: Mapping[str, float], shapes: Mapping[str, tuple[str, str]] | None = None) -> list[Bar]:
    """Bars for ``ModelDiff.changed``, largest first; lengths relative to the largest finite delta."""
    finite = [d for d in changed.values() if math.isfinite(d)]
    top = max(finite, default=0.0) or 1.0
    bars = []
    for name, delta in changed.items():
        if math.isfinite(delta):
            bars.append(Bar(name, delta, min(delta / top, 1.0)))
        else:
            a, b = (shapes or {}).get(name, ("?", "?"))
            bars.append(Bar(name, delta, 1.0, shape_change=f"{a} -> {b}"))
    return sorted(bars, key=lambda b: (-b.delta, b.name))


def series_chart(series: Any) -> Chart:
    """The chart of a ``registry.query.Series`` (read by ``Registry.metadata_series``)."""
    versions = (series.first, series.last) if series.count else None
    chart = line_chart(series.key, series.points, count=series.count, versions=versions)
    chart.deleted = series.deleted
    return chart
