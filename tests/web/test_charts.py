"""The console's charts (reconciler/web/charts.py, buckets.py, scales.py): SVG markup checked
with an XML parser.

Structure, not pixels: the accessible name points at a title and a summary, one path per
series with a dash pattern of its own, at most 300 points a path, a table of the same numbers,
escaped text, gaps for missing values, "no data" and "insufficient data" states; then the
numbers behind the charts (nearest-rank percentiles, time buckets).

The golden files tests/web/golden/latency.svg and latency.html hold one fixed chart. After a
deliberate change of the markup, regenerate them and review the diff:

    REGEN_GOLDEN=1 .venv/bin/pytest tests/web/test_charts.py -k golden
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from markupsafe import Markup

from reconciler.web import charts, scales
from reconciler.web.buckets import Percentiles, Sample, percentiles, time_buckets
from reconciler.web.charts import Series

GOLDEN = Path(__file__).parent / "golden"
END = dt.datetime(2026, 12, 5, 14, 7, 30, tzinfo=dt.UTC)
EVIL = "<script>alert(1)</script>"


def parse(markup: str) -> ET.Element:
    """Our own markup, parsed as XML (it must be well-formed); namespaces dropped from tags."""
    root = ET.fromstring(markup)  # noqa: S314 - the markup under test, not untrusted input
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    return root


def minutes(count: int, step: int = 5) -> list[dt.datetime]:
    """``count`` times ``step`` minutes apart, the last at 14:05."""
    last = dt.datetime(2026, 12, 5, 14, 5, tzinfo=dt.UTC)
    return [last - dt.timedelta(minutes=step * (count - 1 - i)) for i in range(count)]


def text_of(element: ET.Element) -> str:
    return "".join(element.itertext())


def path_points(d: str) -> int:
    return len(re.findall(r"[ML]", d))


def three_series(n: int = 12) -> Markup:
    times = minutes(n)
    return charts.line_chart(
        id_prefix="lat",
        title="Latency",
        times=times,
        series=[
            Series("p50", [100.0 + i for i in range(n)]),
            Series("p95", [200.0 + 10 * i for i in range(n)]),
            Series("p99", [300.0 + 20 * i for i in range(n)]),
        ],
        unit="ms",
        headline="p95",
        requests=[1000 + i for i in range(n)],
    )


def one_sparkline(n: int = 60) -> Markup:
    return charts.sparkline(
        id_prefix="card-7",
        title="p95 latency",
        times=minutes(n, 1),
        values=[50.0 + (i % 9) for i in range(n)],
        unit="ms",
    )


BUILDERS: dict[str, tuple[Callable[[], Markup], int]] = {
    "line chart": (three_series, 3),
    "sparkline": (one_sparkline, 1),
    "success rate": (
        lambda: charts.line_chart(
            id_prefix="ok",
            title="Success",
            times=minutes(4),
            series=[Series("success rate", [1.0, 0.99, 0.5, 0.97])],
            unit="%",
            peak="low",
            y_range=(0.0, 1.0),
        ),
        1,
    ),
}


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("name", BUILDERS)
def test_a_chart_is_a_named_figure_with_one_dashed_path_per_series_and_a_table(name: str) -> None:
    build, count = BUILDERS[name]
    markup = str(build())
    figure = parse(markup)
    assert figure.tag == "figure"
    svg = figure.find("svg")
    assert svg is not None
    assert svg.get("role") == "img"
    ids = {e.get("id"): e for e in figure.iter() if e.get("id")}
    labelled = (svg.get("aria-labelledby") or "").split()
    assert [ids[i].tag for i in labelled] == ["title", "desc"]
    assert all(text_of(ids[i]).strip() for i in labelled)
    paths = svg.findall(".//path")
    assert len(paths) == count
    dashes = [p.get("stroke-dasharray") for p in paths]
    assert None not in dashes and len(set(dashes)) == count
    assert len({p.get("class") for p in paths}) == count
    # a strict CSP: no inline style, no script, no event handler
    assert not [e for e in figure.iter() if e.get("style") is not None or e.tag == "script"]
    assert not [a for e in figure.iter() for a in e.attrib if a.startswith("on")]
    table = figure.find("details/table")
    assert table is not None and table.find("caption") is not None
    assert all(th.get("scope") == "col" for th in table.findall("thead/tr/th"))
    assert all(r.find("th").get("scope") == "row" for r in table.findall("tbody/tr"))  # type: ignore[union-attr]


def test_the_line_chart_has_labelled_ticks_units_and_a_legend() -> None:
    svg = parse(str(three_series())).find("svg")
    assert svg is not None
    y_labels = [text_of(t) for t in svg.findall("g[@class='axis axis-y']/text")]
    assert y_labels[0] == "ms" and len(y_labels) >= 4
    # the unit is written once, above the axis; the ticks are numbers
    assert all(re.fullmatch(r"[0-9.,]+", label) for label in y_labels[1:])
    x_labels = [text_of(t) for t in svg.findall("g[@class='axis axis-x']/text")]
    assert x_labels[-1] == "time (UTC)" and len(x_labels) >= 3
    assert all(re.fullmatch(r"\d\d:\d\d", label) for label in x_labels[:-1])
    legend = svg.find("g[@class='legend']")
    assert legend is not None
    assert [text_of(t) for t in legend.findall("text")] == ["p50", "p95", "p99"]
    paths = svg.findall(".//path")
    lines = legend.findall("line")
    assert [ln.get("stroke-dasharray") for ln in lines] == [
        p.get("stroke-dasharray") for p in paths
    ]


def test_the_summary_names_the_headline_peak_when_and_n() -> None:
    desc = parse(str(three_series())).find("svg/desc")
    assert desc is not None
    # p95 = 200 + 10 * 11 at the last time, 14:05; n = sum(1000..1011)
    assert text_of(desc) == "p95 peaked at 310 ms at 14:05; n = 12,066."


def test_a_low_peak_and_seconds_in_the_summary() -> None:
    desc = parse(str(BUILDERS["success rate"][0]())).find("svg/desc")
    assert desc is not None and text_of(desc) == "success rate was lowest at 50.0 % at 14:00."
    slow = charts.line_chart(
        id_prefix="s",
        title="t",
        times=minutes(3),
        series=[Series("p95", [900.0, 1412.0, 1000.0])],
        unit="ms",
    )
    assert "p95 peaked at 1.41 s at 14:00." in str(slow)


@pytest.mark.parametrize(
    ("unit", "values", "cells"),
    [
        ("ms", [12.25, 1400.0, 3.0], ["12.2", "1,400.0", "3.0"]),
        ("%", [1.0, 0.995, 0.5], ["100.0", "99.5", "50.0"]),
        ("requests", [1234, 0, 7], ["1,234", "0", "7"]),
        ("USD", [0.0123, 1.5, 0.0], ["0.0123", "1.5000", "0.0000"]),
    ],
)
def test_the_table_rows_are_the_data(
    unit: scales.Unit, values: list[float], cells: list[str]
) -> None:
    times = minutes(3)
    figure = parse(
        str(
            charts.line_chart(
                id_prefix="t",
                title="T",
                times=times,
                series=[Series("a", values), Series("b", list(reversed(values)))],
                unit=unit,
                requests=[5, 6, 7],
            )
        )
    )
    rows = figure.findall("details/table/tbody/tr")
    got = [[text_of(c) for c in row] for row in rows]
    assert got == [
        [t.strftime("%Y-%m-%d %H:%M"), a, b, str(n)]
        for t, a, b, n in zip(times, cells, reversed(cells), (5, 6, 7), strict=True)
    ]
    header = [text_of(th) for th in figure.findall("details/table/thead/tr/th")]
    assert header == ["time (UTC)", f"a ({unit})", f"b ({unit})", "n"]


def test_10000_points_become_at_most_300_a_path_and_keep_the_spikes() -> None:
    rng = random.Random(7)
    n = 10_000
    base = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    times = [base + dt.timedelta(seconds=60 * i) for i in range(n)]
    values: list[float | None] = [100 + rng.random() * 10 for _ in range(n)]
    values[4321] = 5000.0  # one spike
    values[777] = 0.0  # one dip
    chart = charts.line_chart(
        id_prefix="big",
        title="Raw",
        times=times,
        series=[Series("a", values), Series("b", [v and v / 2 for v in values])],
        unit="ms",
    )
    figure = parse(str(chart))
    paths = figure.findall("svg//path")
    assert len(paths) == 2
    # the value axis runs from 0 to 6 s (ticks of 2 s) over y = 208 up to 28: the spike of
    # 5,000 ms is at 28 + 180 * (1 - 5 / 6) = 58, its half at 133, the dip to 0 at 208
    for path, spike in zip(paths, (58.0, 133.0), strict=True):
        d = path.get("d") or ""
        assert 2 <= path_points(d) <= scales.MAX_POINTS
        ys = [float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+)", d)]
        assert min(ys) == spike
        assert max(ys) == 208.0
    assert len(figure.findall("details/table/tbody/tr")) == n


@pytest.mark.parametrize("count", [1, 2, 299, 300, 301, 1000, 10_000])
def test_downsampling_never_exceeds_the_budget(count: int) -> None:
    xs = [float(i) for i in range(count)]
    ys: list[float | None] = [None if i % 13 == 5 else float(i % 17) for i in range(count)]
    segments = scales.downsample(xs, ys)
    assert sum(len(s) for s in segments) <= scales.MAX_POINTS
    assert all(segments)
    points = [p for s in segments for p in s]
    assert [x for x, _ in points] == sorted(x for x, _ in points)


def test_every_text_is_escaped() -> None:
    chart = charts.line_chart(
        id_prefix="x",
        title=EVIL,
        times=minutes(3),
        series=[Series(EVIL, [1.0, 2.0, 3.0]), Series('"><b>', [3.0, 2.0, 1.0])],
        unit="ms",
        requests=[1, 2, 3],
    )
    markup = str(chart)
    assert "<script" not in markup and "<b>" not in markup
    figure = parse(markup)
    assert not figure.findall(".//script") and not figure.findall(".//b")
    assert text_of(figure.find("svg/title")) == EVIL  # type: ignore[arg-type]
    assert text_of(figure.find("figcaption")) == EVIL  # type: ignore[arg-type]
    legend = [text_of(t) for t in figure.findall("svg/g[@class='legend']/text")]
    assert legend == [EVIL, '"><b>']
    assert text_of(figure.find("details/table/thead/tr/th[2]")) == f"{EVIL} (ms)"  # type: ignore[arg-type]
    spark = parse(
        str(charts.sparkline(id_prefix="y", title=EVIL, times=minutes(2), values=[1, 2], unit=""))
    )
    assert text_of(spark.find("svg/title")) == EVIL  # type: ignore[arg-type]
    empty = parse(str(charts.sparkline(id_prefix="z", title=EVIL, times=[], values=[], unit="")))
    assert text_of(empty.find("figcaption")) == EVIL  # type: ignore[arg-type]
    assert "<script" not in str(
        charts.sparkline(id_prefix="z", title=EVIL, times=[], values=[], unit="")
    )


@pytest.mark.parametrize("gap", [None, math.nan, math.inf, -math.inf])
def test_a_missing_or_non_finite_value_is_a_gap(gap: float | None) -> None:
    values = [1.0, 2.0, gap, 4.0, 5.0, gap, 7.0]
    chart = charts.line_chart(
        id_prefix="g", title="G", times=minutes(7), series=[Series("a", values)], unit="ms"
    )
    markup = str(chart)
    assert not re.search(r"nan|inf", markup, re.IGNORECASE)
    figure = parse(markup)
    d = figure.find("svg//path").get("d")  # type: ignore[union-attr]
    assert d is not None
    assert d.count("M") == 3 and path_points(d) == 5
    assert d.endswith("m-3 0h6")  # the lone last point is drawn as a short dash
    cells = [text_of(r.findall("td")[0]) for r in figure.findall("details/table/tbody/tr")]
    assert cells == ["1.0", "2.0", "no value", "4.0", "5.0", "no value", "7.0"]
    spark = str(
        charts.sparkline(id_prefix="s", title="S", times=minutes(7), values=values, unit="ms")
    )
    assert not re.search(r"nan|inf", spark, re.IGNORECASE)
    assert parse(spark).find("svg/path").get("d").count("M") == 3  # type: ignore[union-attr]


def test_values_too_large_to_draw_are_gaps_and_stay_in_the_table() -> None:
    values = [1.0, 1e308, -1e308, 2.0, 1e16]
    markup = str(
        charts.line_chart(
            id_prefix="h", title="H", times=minutes(5), series=[Series("a", values)], unit=""
        )
    )
    assert not re.search(r"nan|inf", markup, re.IGNORECASE)
    figure = parse(markup)
    assert path_points(figure.find("svg//path").get("d") or "") == 2  # type: ignore[union-attr]
    cells = [text_of(r.findall("td")[0]) for r in figure.findall("details/table/tbody/tr")]
    assert cells == ["1", "1e+308", "-1e+308", "2", "1e+16"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: charts.line_chart(id_prefix="e", title="Empty", times=[], series=[], unit="ms"),
        lambda: charts.line_chart(
            id_prefix="e", title="Empty", times=[], series=[Series("a", [])], unit="ms"
        ),
        lambda: charts.line_chart(
            id_prefix="e",
            title="Empty",
            times=minutes(3),
            series=[Series("a", [None, math.nan, None])],
            unit="ms",
        ),
        lambda: charts.sparkline(id_prefix="e", title="Empty", times=[], values=[], unit="ms"),
        lambda: charts.sparkline(
            id_prefix="e", title="Empty", times=minutes(2), values=[None, None], unit="ms"
        ),
        lambda: charts.window_charts([], id_prefix="e", title="Empty")["latency"],
        lambda: charts.window_charts(time_buckets([], "1h", end=END), id_prefix="e", title="Empty")[
            "cost"
        ],
    ],
)
def test_no_data_is_a_figure_saying_so(build: Callable[[], Markup]) -> None:
    figure = parse(str(build()))
    assert figure.tag == "figure" and figure.find("svg") is None
    assert text_of(figure.find("figcaption")).startswith("Empty")  # type: ignore[arg-type]
    assert text_of(figure.find("p")) == "no data in this window"  # type: ignore[arg-type]


# ---------------------------------------------------------------- the numbers


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # scoring.percentile: the value at index round(q * (n - 1)) of the sorted samples
        (list(range(1, 101)), {0.5: 51, 0.95: 95, 0.99: 99}),
        (list(range(100, 0, -1)), {0.5: 51, 0.95: 95, 0.99: 99}),
        ([7.0] * 100, {0.5: 7.0, 0.95: 7.0, 0.99: 7.0}),
        (list(range(1, 1001)), {0.5: 501, 0.95: 950, 0.99: 990}),
        ([1.0] * 98 + [500.0, 1000.0], {0.5: 1.0, 0.95: 1.0, 0.99: 500.0}),
    ],
)
def test_percentiles_are_nearest_rank(samples: list[float], expected: dict[float, float]) -> None:
    result = percentiles(samples)
    assert result.n == len(samples) and not result.insufficient
    assert result.values == expected


def test_percentiles_leave_out_missing_samples_and_say_when_too_few() -> None:
    clean = [float(i) for i in range(1, 101)]
    result = percentiles([*clean, None, math.nan, math.inf])
    assert result.n == 100 and result.values[0.99] == 99.0
    short = percentiles([*clean[:99], None])
    assert short.n == 99 and short.insufficient
    assert short.values == {0.5: None, 0.95: None, 0.99: None}
    assert percentiles([], (0.5,)) == Percentiles(0, {0.5: None}, insufficient=True)


def at(hh: int, mm: int, ss: float = 0.0) -> dt.datetime:
    return dt.datetime(2026, 12, 5, hh, mm, tzinfo=dt.UTC) + dt.timedelta(seconds=ss)


@pytest.mark.parametrize(
    ("window", "count", "first", "last_end"),
    [
        ("1h", 12, at(13, 10), at(14, 10)),
        ("24h", 24, at(15, 0) - dt.timedelta(days=1), at(15, 0)),
        ("7d", 28, at(18, 0) - dt.timedelta(days=7), at(18, 0)),
    ],
)
def test_windows_cut_into_aligned_buckets_ending_with_the_one_holding_end(
    window: str, count: int, first: dt.datetime, last_end: dt.datetime
) -> None:
    buckets = time_buckets([], window, end=END)
    assert len(buckets) == count
    assert buckets[0].start == first and buckets[-1].end == last_end
    assert all(a.end == b.start for a, b in itertools.pairwise(buckets))
    assert all(b.requests == 0 and b.success_rate is None for b in buckets)


@pytest.mark.parametrize(
    ("when", "index"),
    [
        (at(13, 10), 0),  # a bucket's start belongs to it
        (at(13, 15) - dt.timedelta(microseconds=1), 0),
        (at(13, 15), 1),
        (at(14, 5), 11),
        (END, 11),
        (at(14, 10) - dt.timedelta(microseconds=1), 11),
        (at(13, 10) - dt.timedelta(microseconds=1), None),  # before the window
        (at(14, 10), None),  # after the last bucket
        (dt.datetime(2026, 12, 5, 13, 30), 4),  # naive is UTC
    ],
)
def test_bucket_boundaries(when: dt.datetime, index: int | None) -> None:
    buckets = time_buckets([Sample(when, 10.0, True, 0.5)], "1h", end=END)
    counts = [b.requests for b in buckets]
    assert counts == [int(i == index) for i in range(12)]


def test_each_bucket_has_its_own_percentiles_rate_requests_and_cost() -> None:
    early = [Sample(at(13, 10, i), float(i + 1), i % 10 != 0, 0.01) for i in range(100)]
    late = [Sample(at(14, 5, i), 1000.0 + i, True, None) for i in range(150)]
    few = [Sample(at(13, 30, i), 5.0, True, 0.25) for i in range(42)]
    buckets = time_buckets(
        [*late, *early, *few, (at(13, 31), math.nan, False, math.nan)], "1h", end=END
    )
    first, middle, last = buckets[0], buckets[4], buckets[11]
    assert (first.requests, first.ok, first.success_rate) == (100, 90, 0.9)
    assert first.cost == pytest.approx(1.0)
    assert first.latency.values == {0.5: 51.0, 0.95: 95.0, 0.99: 99.0}
    assert (last.requests, last.cost, last.latency.n) == (150, 0.0, 150)
    assert last.latency.values[0.99] == 1000.0 + round(0.99 * 149)
    assert (middle.requests, middle.ok, middle.latency.n) == (43, 42, 42)
    assert middle.cost == pytest.approx(42 * 0.25)
    assert middle.latency.insufficient and middle.latency.values[0.5] is None


def test_insufficient_data_under_100_samples_and_a_value_at_100() -> None:
    buckets = time_buckets(
        [Sample(at(13, 10, i), 20.0, True) for i in range(42)]
        + [Sample(at(13, 15, i), 30.0, True) for i in range(100)],
        "1h",
        end=END,
    )
    figure = parse(str(charts.window_charts(buckets, id_prefix="m", title="m")["latency"]))
    rows = figure.findall("details/table/tbody/tr")
    assert [text_of(c) for c in rows[0]][1:] == ["insufficient data (n = 42)"] * 3 + ["42"]
    assert [text_of(c) for c in rows[1]][1:] == ["30.0"] * 3 + ["100"]
    assert [text_of(c) for c in rows[2]][1:] == ["no value"] * 3 + ["0"]
    desc = text_of(figure.find("svg/desc"))  # type: ignore[arg-type]
    assert desc == (
        "p95 peaked at 30 ms at 13:15; 1 of 12 points insufficient data (n < 100); n = 142."
    )
    only_few = time_buckets([Sample(at(13, 10, i), 20.0, True) for i in range(42)], "1h", end=END)
    alone = charts.window_charts(only_few, id_prefix="m", title="m")
    figure = parse(str(alone["latency"]))
    assert figure.find("svg") is None
    assert text_of(figure.find("p")) == "insufficient data (n = 42)"  # type: ignore[arg-type]
    assert parse(str(alone["requests"])).find("svg") is not None  # the count is still a chart
    spark = charts.sparkline(
        id_prefix="c",
        title="p95",
        times=minutes(2),
        values=[None, 12.0],
        counts=[42, 100],
        unit="ms",
    )
    assert "insufficient data (n = 42)" in str(spark)


def test_window_charts_are_four_figures_with_distinct_ids() -> None:
    rng = random.Random(3)
    samples = [
        Sample(
            END - dt.timedelta(seconds=rng.uniform(0, 7 * 86400)),
            rng.expovariate(0.01),
            True,
            0.001,
        )
        for _ in range(20_000)
    ]
    result = charts.window_charts(time_buckets(samples, "7d", end=END), id_prefix="m1")
    assert list(result) == ["latency", "success", "requests", "cost"]
    ids = [e.get("id") for m in result.values() for e in parse(str(m)).iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    latency = parse(str(result["latency"]))
    assert len(latency.findall("svg//path")) == 3
    assert len(latency.findall("details/table/tbody/tr")) == 28
    ticks = [text_of(t) for t in latency.findall("svg/g[@class='axis axis-x']/text")][:-1]
    assert all(re.fullmatch(r"[A-Z][a-z]{2} \d\d", t) for t in ticks) and len(ticks) >= 3


def test_output_is_deterministic_and_ids_follow_the_prefix() -> None:
    assert three_series() == three_series()
    assert 'id="lat-title"' in three_series()
    assert charts.chart_id("gpt-4o") == "gpt-4o"
    odd = charts.chart_id("team/gpt 4o.mini")
    assert re.fullmatch(r"[A-Za-z][\w-]*", odd) and odd == charts.chart_id("team/gpt 4o.mini")
    assert odd != charts.chart_id("team/gpt-4o-mini")
    with pytest.raises(ValueError, match="not an id"):
        charts.sparkline(id_prefix="a b", title="t", times=[], values=[], unit="")
    with pytest.raises(ValueError, match="2 values for 3 times"):
        charts.line_chart(
            id_prefix="a", title="t", times=minutes(3), series=[Series("s", [1, 2])], unit=""
        )


def golden_chart() -> str:
    times = minutes(12)
    return str(
        charts.line_chart(
            id_prefix="golden",
            title="gpt-4o latency, last hour",
            times=times,
            series=[
                Series(
                    "p50",
                    [
                        120.0,
                        118.5,
                        None,
                        121.0,
                        125.0,
                        119.0,
                        130.0,
                        128.0,
                        122.0,
                        120.0,
                        119.5,
                        121.0,
                    ],
                ),
                Series(
                    "p95",
                    [
                        340.0,
                        355.0,
                        None,
                        360.0,
                        410.0,
                        380.0,
                        1412.0,
                        600.0,
                        390.0,
                        350.0,
                        345.0,
                        352.0,
                    ],
                ),
                Series(
                    "p99",
                    [
                        610.0,
                        640.0,
                        None,
                        700.0,
                        800.0,
                        720.0,
                        2100.0,
                        900.0,
                        700.0,
                        650.0,
                        640.0,
                        660.0,
                    ],
                ),
            ],
            unit="ms",
            headline="p95",
            requests=[410, 398, 0, 402, 415, 420, 433, 401, 399, 404, 397, 411],
        )
    )


def test_golden_latency_chart() -> None:
    """Regenerate with ``REGEN_GOLDEN=1`` (see the module docstring); the .svg is the
    chart alone, openable in a browser; the .html is the whole figure with its table."""
    markup = golden_chart()
    svg = markup[markup.index("<svg") : markup.index("</svg>") + len("</svg>")]
    files = {GOLDEN / "latency.svg": svg + "\n", GOLDEN / "latency.html": markup + "\n"}
    if os.environ.get("REGEN_GOLDEN"):
        for path, content in files.items():
            path.write_text(content, encoding="utf-8")
        # never a pass: a test comparing the files with themselves would prove nothing
        pytest.skip("golden files regenerated; run again without REGEN_GOLDEN to check them")
    for path, content in files.items():
        assert path.read_text(encoding="utf-8") == content, (
            f"{path.name} differs: see the docstring"
        )
    parse(svg)
