"""Charts as SVG markup written by hand (issue 16), of numbers from ``buckets``.

Pure functions of numbers to ``markupsafe.Markup``: no I/O, no clock, no randomness, so the
same numbers give the same bytes and golden tests need no browser.

- ``line_chart(...)``, ``sparkline(...)`` and ``window_charts(buckets, ...)``: each chart is a
  ``<figure>`` holding ``<svg role="img" aria-labelledby="<title id> <desc id>">`` with a
  ``<title>`` and a one-sentence ``<desc>`` summary, one ``<path>`` per series told apart by
  ``stroke-dasharray`` as well as by a ``series-N`` class for colour, then a ``<details>`` table
  of the same numbers.

The strict CSP (``default-src 'self'``) holds: no ``style=`` and no ``<script>``, only
presentation attributes and class names. Every text is escaped. A missing or non-finite value
(None, NaN, inf) is a gap in the line and "no value" in the table, never "NaN" in the markup; a
chart without a drawable value is a figure with its title and "no data in this window" (or
"insufficient data (n = 42)").

A series of more than 300 points is downsampled by min/max per bucket (``scales.downsample``:
every spike survives). The table keeps every point given; callers pass buckets (84 for the
7d window), not raw samples.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import re
from collections.abc import Sequence
from typing import Literal

from markupsafe import Markup, escape

from reconciler.web import scales
from reconciler.web.buckets import MIN_SAMPLES, QUANTILES, Bucket
from reconciler.web.scales import Unit

DASHES = ("none", "6 3", "2 3", "8 3 2 3", "1 4", "10 4")
"""The dash pattern of the n-th series; colour comes from its ``series-N`` class."""


NO_DATA = "no data in this window"

DRAWN = 1e15
"""Values beyond plus or minus this are not drawn (the table keeps them): the axis arithmetic
of two such values could overflow to inf and NaN. 1e15 ms is 31,000 years."""


Value = float | int | None


_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    """A named line: one value per time of its chart (None or non-finite for a gap).

    ``counts``, when given, is the number of samples behind each value: a gap with a count
    under ``MIN_SAMPLES`` reads "insufficient data (n = 42)" in the table.
    """

    name: str
    values: Sequence[Value]
    counts: Sequence[int] | None = None


def chart_id(text: str) -> str:
    """A valid, stable id prefix for any text (a model id with dots, slashes or spaces)."""
    if _ID.match(text):
        return text
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40]
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"c-{slug}-{digest}" if slug else f"c-{digest}"


def line_chart(
    *,
    id_prefix: str,
    title: str,
    times: Sequence[dt.datetime],
    series: Sequence[Series],
    unit: Unit,
    peak: Literal["high", "low"] = "high",
    headline: str | None = None,
    y_range: tuple[float, float] | None = None,
    requests: Sequence[int] | None = None,
) -> Markup:
    """A time-series chart: axes with labelled ticks and units, a legend, one path per series.

    The summary names the ``headline`` series' (the first by default) highest value, or lowest
    with ``peak="low"``, and when, then the window's n: ``requests`` (samples per time) when
    given. ``y_range`` fixes the value axis (0 to 1 for a rate); otherwise it starts at 0.
    """
    _check(id_prefix, times, series)
    if len(series) > len(DASHES):
        raise ValueError(f"at most {len(DASHES)} series, got {len(series)}")
    xs = [scales.epoch(t) for t in times]
    lines = [_finite(s.values) for s in series]
    n = sum(requests) if requests is not None else None
    if not any(v is not None for line in lines for v in line):
        return _empty(id_prefix, title, _why_empty(series, n))
    width, height = 640.0, 260.0
    left, right, top, bottom = 64.0, 16.0, 28.0, 52.0
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = y_range or scales.value_range(lines)
    ticks = scales.nice_ticks(lo, hi) if y_range is None else scales.ticks_between(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    x0, x1 = xs[0], xs[-1]

    x_scale = scales.linear(x0, x1, left, left + plot_w)
    y_scale = scales.linear(lo, hi, top + plot_h, top)

    def sx(x: float) -> float:
        return x_scale[1] + x_scale[2] * (x - x0)

    def sy(y: float) -> float:
        return y_scale[1] + y_scale[2] * (y - lo)

    out = [
        f'<figure class="chart" id="{id_prefix}">',
        f'<figcaption class="chart-title">{escape(title)}</figcaption>',
        _svg_open(id_prefix, width, height, "chart-svg"),
        f'<title id="{id_prefix}-title">{escape(title)}</title>',
        f'<desc id="{id_prefix}-desc">'
        f"{escape(_summary(times, series, lines, unit, peak, headline, n))}</desc>",
        '<g class="axis axis-y">',
        f'<text class="axis-unit" x="{left - 8:.1f}" y="{top - 14:.1f}" '
        f'text-anchor="end">{escape(scales.axis_unit(unit, ticks[-1]))}</text>',
    ]
    for tick in ticks:
        y = sy(tick)
        out.append(
            f'<line class="grid" x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" '
            f'y2="{y:.1f}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(scales.tick_label(tick, unit, ticks[-1]))}</text>"
        )
    out += [
        "</g>",
        '<g class="axis axis-x">',
        f'<line x1="{left:.1f}" y1="{top + plot_h:.1f}" x2="{left + plot_w:.1f}" '
        f'y2="{top + plot_h:.1f}" stroke="currentColor"/>',
    ]
    span = x1 - x0
    ticks_x = scales.time_ticks(x0, x1)
    days = len(ticks_x) > 1 and ticks_x[1] - ticks_x[0] >= 86400
    for x in ticks_x:
        px = sx(x)
        label = scales.utc(x).strftime("%b %d") if days else scales.time_label(x, span)
        out.append(
            f'<line x1="{px:.1f}" y1="{top + plot_h:.1f}" x2="{px:.1f}" '
            f'y2="{top + plot_h + 4:.1f}" stroke="currentColor"/>'
            f'<text x="{px:.1f}" y="{top + plot_h + 18:.1f}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text class="axis-unit" x="{left + plot_w:.1f}" y="{top + plot_h + 34:.1f}" '
        'text-anchor="end">time (UTC)</text></g>'
    )
    out.append('<g class="lines">')
    for i, line in enumerate(lines):
        d = scales.path_d(scales.downsample(xs, line), x_scale, y_scale)
        out.append(_path(i, d))
    out.append("</g>")
    out.append('<g class="legend">')
    lx, ly = left, height - 8
    for i, s in enumerate(series):
        out.append(
            f'<line class="series series-{i + 1}" x1="{lx:.1f}" y1="{ly - 4:.1f}" '
            f'x2="{lx + 24:.1f}" y2="{ly - 4:.1f}" stroke="currentColor" stroke-width="2" '
            f'stroke-dasharray="{DASHES[i]}"/>'
            f'<text x="{lx + 30:.1f}" y="{ly:.1f}">{escape(s.name)}</text>'
        )
        lx += 30 + 8 * len(s.name) + 24
    out.append("</g></svg>")
    out.append(_table(id_prefix, title, xs, series, unit, requests))
    out.append("</figure>")
    return _markup(out)


def sparkline(
    *,
    id_prefix: str,
    title: str,
    times: Sequence[dt.datetime],
    values: Sequence[Value],
    unit: Unit,
    counts: Sequence[int] | None = None,
    table: bool = True,
) -> Markup:
    """A small line for a model card: no axes, one path from its lowest to its highest value,
    a summary of last, lowest and highest.

    ``counts`` as in ``Series``. ``table=False`` leaves the ``<details>`` table out (a page
    that shows the same numbers elsewhere).
    """
    series = [Series(title, values, counts)]
    _check(id_prefix, times, series)
    line = _finite(values)
    if not any(v is not None for v in line):
        return _empty(id_prefix, title, _why_empty(series, None), css="sparkline")
    width, height, pad = 120.0, 32.0, 2.0
    xs = [scales.epoch(t) for t in times]
    known = [v for v in line if v is not None]
    lo, hi = min(known), max(known)  # the shape: the numbers are in the summary and table
    x0, x1 = xs[0], xs[-1]
    d = scales.path_d(
        scales.downsample(xs, line),
        scales.linear(x0, x1, pad, width - pad),
        scales.linear(lo, hi, height - pad, pad),
    )
    finite = [(v, t) for v, t in zip(line, times, strict=True) if v is not None]
    last = finite[-1][0]
    low = min(finite, key=lambda p: p[0])
    high = max(finite, key=lambda p: p[0])
    span = x1 - x0
    summary = (
        f"{title}: last {scales.in_words(last, unit)}, lowest {scales.in_words(low[0], unit)}, "
        f"highest {scales.in_words(high[0], unit)} at "
        f"{scales.time_label(scales.epoch(high[1]), span)}"
        f"{_insufficient_note(series)}."
    )
    out = [
        f'<figure class="chart sparkline" id="{id_prefix}">',
        _svg_open(id_prefix, width, height, "sparkline-svg"),
        f'<title id="{id_prefix}-title">{escape(title)}</title>',
        f'<desc id="{id_prefix}-desc">{escape(summary)}</desc>',
        _path(0, d),
        "</svg>",
    ]
    if table:
        out.append(_table(id_prefix, title, xs, series, unit, None))
    out.append("</figure>")
    return _markup(out)


def window_charts(
    buckets: Sequence[Bucket], *, id_prefix: str, title: str = ""
) -> dict[str, Markup]:
    """The model page's four charts of a window's buckets: latency (p50, p95, p99), success
    rate, requests and cost, keyed ``latency``, ``success``, ``requests``, ``cost``.

    ``title`` (the model's name) leads each chart's title. The latency chart's summary is
    about p95; a bucket under ``MIN_SAMPLES`` samples is a gap with "insufficient data".
    """
    times = [b.start for b in buckets]
    counts = [b.requests for b in buckets]
    lead = f"{title}: " if title else ""
    quantiles = sorted(buckets[0].latency.values) if buckets else list(QUANTILES)
    latency = [
        Series(
            f"p{q * 100:g}",
            [b.latency.values.get(q) for b in buckets],
            [b.latency.n for b in buckets],
        )
        for q in quantiles
    ]
    headline = "p95" if any(s.name == "p95" for s in latency) else None
    return {
        "latency": line_chart(
            id_prefix=f"{id_prefix}-latency",
            title=f"{lead}latency",
            times=times,
            series=latency,
            unit="ms",
            headline=headline,
            requests=counts,
        ),
        "success": line_chart(
            id_prefix=f"{id_prefix}-success",
            title=f"{lead}success rate",
            times=times,
            series=[Series("success rate", [b.success_rate for b in buckets])],
            unit="%",
            peak="low",
            y_range=(0.0, 1.0),
            requests=counts,
        ),
        "requests": line_chart(
            id_prefix=f"{id_prefix}-requests",
            title=f"{lead}requests",
            times=times,
            series=[Series("requests", [b.requests if b.requests else None for b in buckets])],
            unit="requests",
            requests=counts,
        ),
        "cost": line_chart(
            id_prefix=f"{id_prefix}-cost",
            title=f"{lead}cost",
            times=times,
            series=[Series("cost", [b.cost if b.requests else None for b in buckets])],
            unit="USD",
            requests=counts,
        ),
    }


def _check(id_prefix: str, times: Sequence[dt.datetime], series: Sequence[Series]) -> None:
    if not _ID.match(id_prefix):
        raise ValueError(f"id prefix {id_prefix!r} is not an id: use chart_id()")
    for s in series:
        if len(s.values) != len(times):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(times)} times")
        if s.counts is not None and len(s.counts) != len(times):
            raise ValueError(f"series {s.name!r} has {len(s.counts)} counts for {len(times)} times")


def _finite(values: Sequence[Value]) -> list[float | None]:
    """The drawable values: None for a gap (missing, non-finite, or beyond ``DRAWN``)."""
    return [float(v) if v is not None and -DRAWN <= v <= DRAWN else None for v in values]


def _svg_open(id_prefix: str, width: float, height: float, css: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" role="img" '
        f'aria-labelledby="{id_prefix}-title {id_prefix}-desc" '
        f'viewBox="0 0 {width:g} {height:g}" focusable="false">'
    )


def _path(index: int, d: str) -> str:
    drawn = f' d="{d}"' if d else ""
    return (
        f'<path class="series series-{index + 1}"{drawn} fill="none" stroke="currentColor" '
        f'stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round" '
        f'stroke-dasharray="{DASHES[index]}"/>'
    )


def _empty(id_prefix: str, title: str, why: str, css: str = "") -> Markup:
    classes = f"chart chart-empty {css}".strip()
    return _markup(
        [
            f'<figure class="{classes}" id="{id_prefix}">'
            f'<figcaption id="{id_prefix}-title">{escape(title)}</figcaption>'
            f'<p class="chart-note">{escape(why)}</p></figure>'
        ]
    )


def _markup(parts: list[str]) -> Markup:
    """The one place strings become Markup: every text in ``parts`` went through ``escape``;
    the rest is our own tags, numbers formatted here and ids checked by ``_check``."""
    return Markup("\n".join(parts))  # noqa: S704


def _insufficient(value: Value, count: int | None) -> bool:
    return value is None and count is not None and 0 < count < MIN_SAMPLES


def _why_empty(series: Sequence[Series], n: int | None) -> str:
    short = [
        c
        for s in series[:1]
        for v, c in zip(s.values, s.counts or [], strict=False)
        if _insufficient(v, c)
    ]
    if short:
        return f"insufficient data (n = {n if n is not None else sum(short):,})"
    return NO_DATA


def _insufficient_note(series: Sequence[Series]) -> str:
    s = series[0]
    if s.counts is None:
        return ""
    short = sum(_insufficient(v, c) for v, c in zip(s.values, s.counts, strict=True))
    if not short:
        return ""
    return f"; {short} of {len(s.values)} points insufficient data (n < {MIN_SAMPLES})"


def _summary(
    times: Sequence[dt.datetime],
    series: Sequence[Series],
    lines: list[list[float | None]],
    unit: Unit,
    peak: Literal["high", "low"],
    headline: str | None,
    n: int | None,
) -> str:
    names = [s.name for s in series]
    index = names.index(headline) if headline in names else 0
    if all(v is None for v in lines[index]):
        index = next(i for i, line in enumerate(lines) if any(v is not None for v in line))
    known = [(v, t) for v, t in zip(lines[index], times, strict=True) if v is not None]
    pick = max if peak == "high" else min
    value, at = pick(known, key=lambda p: p[0])
    span = scales.epoch(times[-1]) - scales.epoch(times[0])
    verb = "peaked at" if peak == "high" else "was lowest at"
    when = scales.time_label(scales.epoch(at), span)
    text = f"{series[index].name} {verb} {scales.in_words(value, unit)} at {when}"
    text += _insufficient_note([series[index]])
    if n is not None:
        text += f"; n = {n:,}"
    return text + "."


def _table(
    id_prefix: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[Series],
    unit: Unit,
    requests: Sequence[int] | None,
) -> str:
    """The chart's numbers. Only names and the title need escaping: the cells are times and
    numbers formatted here."""
    suffix = f" ({unit})" if unit else ""
    head = ['<th scope="col">time (UTC)</th>']
    head += [f'<th scope="col">{escape(s.name)}{escape(suffix)}</th>' for s in series]
    if requests is not None:
        head.append('<th scope="col">n</th>')
    caption = f"{title}, the numbers of the chart"
    if requests is not None:
        caption += f"; n = {sum(requests):,}"
    none: list[int | None] = [None] * len(xs)
    columns = [
        [_cell(v, c, unit) for v, c in zip(s.values, s.counts or none, strict=True)] for s in series
    ]
    if requests is not None:
        columns.append([f"{r:,}" for r in requests])
    rows = [
        f'<tr><th scope="row">{scales.row_label(x)}</th><td>{"</td><td>".join(cells)}</td></tr>'
        for x, *cells in zip(xs, *columns, strict=True)
    ]
    return (
        f'<details class="chart-data"><summary>{escape(title)}: table</summary>'
        f'<table id="{id_prefix}-table"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</details>"
    )


def _cell(value: Value, count: int | None, unit: Unit) -> str:
    if value is not None and math.isfinite(value):
        return scales.format_value(float(value), unit)
    if _insufficient(value, count):
        return f"insufficient data (n = {count})"
    return "no value"
