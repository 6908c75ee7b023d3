"""From numbers to the drawing: coordinates, downsampling, ticks and labels (the console's
charts, ``charts``).

Downsampling (``downsample``): a series of more than ``MAX_POINTS`` points is cut into
``MAX_POINTS // 2`` runs of consecutive points and each run keeps its lowest and its highest
point, in order (min/max per bucket). Unlike LTTB, every spike survives: a p99 peak is what an
operator looks for. A run that holds a gap is drawn apart from its neighbours, so the gap stays
visible.

Times are UTC: a naive datetime is taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from typing import Literal

MAX_POINTS = 300
"""At most this many points in one ``<path>``."""


Unit = Literal["ms", "%", "requests", "USD", ""]


def epoch(t: dt.datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


Scale = tuple[float, float, float]
"""``(d0, r0, k)``: a value v is drawn at ``r0 + k * (v - d0)``."""


def linear(d0: float, d1: float, r0: float, r1: float) -> Scale:
    """The linear map of d0..d1 onto r0..r1; the middle of r0..r1 when d0 == d1."""
    if d1 == d0:
        return d0, (r0 + r1) / 2, 0.0
    return d0, r0, (r1 - r0) / (d1 - d0)


def path_d(segments: list[list[tuple[float, float]]], sx: Scale, sy: Scale) -> str:
    """Path data, one ``M`` per segment; a lone point (one bucket with data between gaps)
    is a short dash centred on it, ``m-3 0h6``: a zero-length ``h0`` drew a dot the width of
    the stroke, which nobody saw."""
    (x0, rx, kx), (y0, ry, ky) = sx, sy
    parts = []
    for seg in segments:
        coords = [f"{rx + kx * (x - x0):.1f} {ry + ky * (y - y0):.1f}" for x, y in seg]
        parts.append("M" + "L".join(coords) + ("m-3 0h6" if len(coords) == 1 else ""))
    return "".join(parts)


def downsample(
    xs: Sequence[float], ys: Sequence[float | None], max_points: int = MAX_POINTS
) -> list[list[tuple[float, float]]]:
    """The line's segments (runs between gaps), at most ``max_points`` points in all.

    Up to ``max_points`` points are kept as they are. Beyond, min/max per bucket: the points
    are cut into ``max_points // 2`` runs of consecutive points and each keeps its lowest and
    highest, in order; a run with a gap in it is a segment of its own.
    """
    segments: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []

    def close() -> None:
        nonlocal current
        if current:
            segments.append(current)
            current = []

    count = len(ys)
    if count <= max_points:
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                close()
            else:
                current.append((x, y))
        close()
        return segments
    buckets = max_points // 2
    for b in range(buckets):
        run = range(b * count // buckets, (b + 1) * count // buckets)
        known = [(i, y) for i in run if (y := ys[i]) is not None]
        if not known:
            close()
            continue
        low = min(known, key=lambda p: p[1])
        high = max(known, key=lambda p: p[1])
        points = [(xs[i], y) for i, y in sorted({low, high})]
        if len(known) < len(run):
            close()
            segments.append(points)
        else:
            current.extend(points)
    close()
    return segments


def value_range(lines: list[list[float | None]]) -> tuple[float, float]:
    known = [v for line in lines for v in line if v is not None]
    return min(0.0, *known), max(0.0, *known)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten) covering lo..hi."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step)
    last = math.ceil(hi / step)
    return [round(k * step, 12) for k in range(first, last + 1)]


def ticks_between(lo: float, hi: float) -> list[float]:
    return [lo + (hi - lo) * k / 4 for k in range(5)]


_TIME_STEPS = [60 * m for m in (1, 5, 10, 15, 30)] + [3600 * h for h in (1, 2, 3, 6, 12, 24)]


def time_ticks(x0: float, x1: float, most: int = 6) -> list[float]:
    """Times on round steps of UTC (minutes, hours, days) between x0 and x1, at most ``most``."""
    if x1 <= x0:
        return [x0]
    span = x1 - x0
    days = 86400 * math.ceil(span / 86400 / most)
    step = next((s for s in _TIME_STEPS if span / s <= most), days)
    first = math.ceil(x0 / step) * step
    return [float(t) for t in range(int(first), int(x1) + 1, int(step))]


def time_label(seconds: float, span: float) -> str:
    t = utc(seconds)
    return t.strftime("%H:%M") if span <= 86400 else t.strftime("%b %d %H:%M")


@functools.lru_cache(maxsize=4096)
def row_label(seconds: float) -> str:
    """A row's time, date included (cached: a fleet page's cards share their times)."""
    return utc(seconds).strftime("%Y-%m-%d %H:%M")


def format_value(value: float, unit: Unit) -> str:
    """A table cell's number, in the unit its column header names."""
    if unit == "%":
        return f"{value * 100:.1f}"
    if unit == "requests":
        return f"{value:,.0f}"
    if unit == "USD":
        return f"{value:,.4f}"
    if unit == "ms":
        return f"{value:,.1f}"
    return f"{value:.4g}"


def in_words(value: float, unit: Unit) -> str:
    """A value in words, for summaries: ``1.4 s``, ``99.5 %``, ``$0.0123``."""
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "USD":
        return f"${value:,.4f}"
    if unit == "requests":
        return f"{value:,.0f} requests"
    return f"{value:.4g}"


def axis_unit(unit: Unit, top: float) -> str:
    return "s" if unit == "ms" and top >= 2000 else unit


def tick_label(value: float, unit: Unit, top: float) -> str:
    """A tick's number, in the unit :func:`axis_unit` writes once above the axis (seconds
    for the whole axis once it reaches 2 s)."""
    if unit == "ms":
        return f"{value / 1000:g}" if top >= 2000 else f"{value:g}"
    if unit == "%":
        return f"{value * 100:g}"
    return f"{value:,g}"
