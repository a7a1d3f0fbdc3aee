"""`--plot`: the HTML report is rendered and parsed; PNG needs matplotlib (optional extra)."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from analysis_synth import SERVICES, Spec, write
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.results import open_results
from mtia_cluster.results.analysis import plots, svg

# analysis_synth's racks: two per region, each with one accelerator of each chip
RACKS = [("us-east", "mtia-1+mtia-2i")] * 2 + [("eu-west", "mtia-1+mtia-2i")] * 2


class _Collect(HTMLParser):
    """Tags, attributes and text of a page (also fails on nothing: HTMLParser is lenient)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "rect", "line", "polyline"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("rect", "line", "polyline", "meta"):
            return
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("p") / "run", Spec(per_group=600, drop_every=30))


@pytest.fixture(scope="module")
def page(run: Path, tmp_path_factory: pytest.TempPathFactory) -> _Collect:
    out = tmp_path_factory.mktemp("html") / "report.html"
    result = CliRunner().invoke(cli, ["analyze", str(run), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    parser = _Collect()
    text = out.read_text()
    parser.feed(text)
    parser.close()
    assert not parser.stack, parser.stack
    # self-contained: no scripts, stylesheets, images or URLs other than the SVG namespace
    assert not re.search(r"<(script|link|img|iframe)\b", text)
    assert not re.search(r"(src|href)\s*=", text)
    urls = re.findall(r"https?://[^\s\"')]+", text)
    assert set(urls) <= {"http://www.w3.org/2000/svg"}
    return parser


def test_per_service_panels_never_pool_services(page: _Collect) -> None:
    """Each service has its own section and charts in its own metrics (R&R: latency; LLM:
    TTFT and TPOT), with the SLO bound drawn; no chart mixes the services' latencies."""
    svgs = [a for tag, a in page.tags if tag == "svg"]
    # ranker: throughput, p99 latency, utilization; chat: throughput, TTFT, TPOT, utilization;
    # fleet: CDF, heat map, power
    assert len(svgs) == 3 + 4 + 3
    headings = [t for t in page.text if t in ("ranker (rr)", "chat (llm)", "Fleet")]
    assert headings == ["ranker (rr)", "chat (llm)", "Fleet"]
    for needle in (
        "ranker (rr): throughput per region",
        "ranker (rr): p99 latency per region",
        "ranker (rr): accelerator utilization per region",
        "chat (llm): TTFT p99 per region",
        "chat (llm): TPOT p99 per region",
        "chat (llm): accelerator utilization per region",
        "End-to-end latency CDF per service (requests with status ok)",
        "Accelerator utilization per rack",
        "Accelerator power per region (all services)",
        "p99 time to first token (ms)",
        "p99 time per output token (ms)",
        "latency (ms, log scale)",
        "completed requests/s",
        "power (W)",
        "time (s)",
        "SLO 95 ms",
        "SLO 300 ms",
        "SLO 20 ms",
    ):
        assert any(needle in t for t in page.text), needle
    assert not any("p99 latency per region" in t and "chat" in t for t in page.text)
    assert {"ranker", "chat", "us-east", "eu-west"} <= set(page.text)


def test_lines_stay_inside_the_plot_area(page: _Collect) -> None:
    lines = [a["points"] for tag, a in page.tags if tag == "polyline"]
    assert len(lines) >= len(SERVICES) + 3 * 2
    for points in lines:
        assert points is not None
        for pair in points.split():
            x, y = (float(v) for v in pair.split(","))
            assert svg.LEFT - 0.5 <= x <= svg.WIDTH - svg.RIGHT + 0.5
            assert svg.TOP - 0.5 <= y <= svg.HEIGHT - svg.BOTTOM + 0.5


def test_heatmap_rows_are_named_region_rack_chip(page: _Collect) -> None:
    labels = [t for t in page.text if "/rack " in t]
    assert labels == [f"{region}/rack {i}/{chip}" for i, (region, chip) in enumerate(RACKS)]
    fills = [a.get("fill") for tag, a in page.tags if tag == "rect"]
    # 4 racks x 10 one-second intervals, all with data (no grey cells)
    assert "#ccc" not in fills
    assert sum(1 for f in fills if f and f.startswith("#") and f not in ("#ccc",)) >= 40


def test_heatmap_has_no_empty_columns_when_the_last_interval_is_short(tmp_path: Path) -> None:
    """rr-small samples devices every 100 ms; a run ending mid-interval has a short last
    one. Every column of the heat map holds data (binning by the short last interval left
    every other column empty: grey stripes)."""
    from mtia_cluster.paths import configs_dir

    runner = CliRunner()
    trace, out = tmp_path / "t.parquet", tmp_path / "run"
    gen = ["trace", "generate", "--service", "feed-ranking", "--rate", "2000"]
    r = runner.invoke(cli, [*gen, "--duration", "1.23", "-o", str(trace)])
    assert r.exit_code == 0, r.output
    config = str(configs_dir() / "scenarios" / "rr-small.yaml")
    r = runner.invoke(cli, ["simulate", config, "--trace", str(trace), "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = plots.collect(open_results(out), None)
    assert len(data.heat[0]) >= 12
    assert all(v is not None for row in data.heat for v in row)


def test_heatmap_labels_fit_left_of_the_plot() -> None:
    """The plot area starts right of the longest label (never clipped at the SVG's edge)."""
    label = "ap-southeast-2/rack 1234/mtia-2i"
    out = svg.heatmap(
        [[0.5, 0.6]], row_labels=[label], x_edges=[0, 1, 2], title="t", xlabel="x", ylabel="y"
    )
    frame = re.findall(r'<rect x="([0-9.]+)" y="40" width="[0-9.]+" height="250" fill="none"', out)
    assert frame and float(frame[0]) >= 7 * len(label)


def test_event_markers_and_bound_lines_are_drawn() -> None:
    out = svg.line_chart(
        [("a", [0.0, 10.0], [1.0, 2.0])],
        title="t",
        xlabel="x",
        ylabel="y",
        markers=[(5.0, "fail us-east (1 cell)"), (50.0, "outside")],
        bound=(3.0, "SLO 3 ms"),
    )
    assert out.count('class="marker"') == 2  # the line and its label; 50 is off the axis
    assert "fail us-east (1 cell)" in out and "outside" not in out
    assert out.count('class="bound"') == 2 and "SLO 3 ms" in out


def test_latency_cdf_is_monotone_and_complete(run: Path) -> None:
    cdf = plots.latency_cdfs(open_results(run))
    assert set(cdf) == set(SERVICES)
    for xs, ys in cdf.values():
        assert xs == sorted(xs) and ys == sorted(ys)
        assert ys[-1] == pytest.approx(1.0)
    # ranker latencies are 1..100 ms: the CDF reaches 1 within a bucket (0.8%) of 100 ms
    xs, ys = cdf["ranker"]
    first_full = next(x for x, y in zip(xs, ys, strict=True) if y >= 1.0 - 1e-12)
    assert 100.0 <= first_full <= 100.0 * (1 + 1 / 128) + 1e-9


@given(st.floats(-1e9, 1e9), st.floats(1e-6, 1e9))
def test_ticks_cover_the_range(lo: float, width: float) -> None:
    ticks = svg.nice_ticks(lo, lo + width)
    slack = width * 1e-9 + abs(lo) * 1e-12
    assert ticks[0] <= lo + slack and ticks[-1] >= lo + width - slack
    assert 2 <= len(ticks) <= 12


def test_png_without_matplotlib_is_one_line(
    runner: CliRunner, run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    result = runner.invoke(cli, ["analyze", str(run), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "matplotlib" in result.output
    assert not (tmp_path / "p.png").exists()


def test_png_is_a_real_image(runner: CliRunner, run: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    result = runner.invoke(cli, ["analyze", str(run), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 500 and height > 1000


def test_service_panels_equal_the_windowed_analysis(run: Path) -> None:
    """One truth: each panel's per-window figures are `analyze --window`'s, region by region."""
    from mtia_cluster.results.analysis import analyze
    from mtia_cluster.results.analysis.service_panels import collect_panels

    res = open_results(run)
    window = 2_000_000_000
    panels = {p.service: p for p in collect_panels(res, window)}
    assert set(panels) == set(SERVICES)
    doc = analyze(res, by=("region", "service"), window_ns=window)
    checked = 0
    for row in doc["rows"]:
        if row["level"] != "region,service":
            continue
        panel = panels[row["service"]]
        k = panel.times_s[row["region"]].index(row["window_start_ns"] / 1e9)
        got = {key: vals[row["region"]][k] for key, vals in panel.values.items()}
        want = {
            "completed_per_s": row["completed_per_s"],
            "latency_p99_ms": (row["latency_ns"]["p99"] or 0) / 1e6,
            "ttft_p99_ms": ((row.get("ttft_ns") or {}).get("p99") or 0) / 1e6,
            "tpot_p99_ms": ((row.get("tpot_ns") or {}).get("p99") or 0) / 1e6,
            "utilization_pct": 100 * (row["utilization"] or 0),
        }
        for key, value in got.items():
            assert (value or 0) == pytest.approx(want[key], rel=1e-9, abs=1e-9), (key, row)
            checked += 1
    assert checked >= 2 * 2 * 3


def test_legend_labels_fit_inside_the_chart() -> None:
    """A long legend label narrows the plot area instead of running off the SVG's right edge
    (the autoscaled replicas chart's "region/service +starting")."""
    label = "ap-southeast-2/feed-ranking +starting"
    out = svg.line_chart([(label, [0.0, 10.0], [1.0, 2.0])], title="t", xlabel="x", ylabel="y")
    (x,) = re.findall(r'<text x="([0-9.]+)" y="[0-9.]+">' + re.escape(label), out)
    assert float(x) + 7 * len(label) <= svg.WIDTH
    for points in re.findall(r'points="([^"]+)"', out):  # the lines stay left of the legend
        assert all(float(p.split(",")[0]) < float(x) - 30 for p in points.split())


def test_dashed_series_are_drawn_under_the_solid_ones() -> None:
    """running + starting replicas equals running most of the time: it is dashed and drawn
    first, so the running line stays visible on top."""
    series = [("a running", [0.0, 1.0], [1.0, 1.0]), ("a +starting", [0.0, 1.0], [1.0, 1.0])]
    out = svg.line_chart(series, title="t", xlabel="x", ylabel="y", dashed=["a +starting"])
    lines = re.findall(r"<polyline [^>]*>", out)
    assert len(lines) == 2 and "stroke-dasharray" in lines[0] and "dasharray" not in lines[1]
    assert 'stroke="#d62728"' in lines[0]  # colours stay by series order (legend matches)


def test_spill_flows_are_a_table_of_the_summary() -> None:
    from mtia_cluster.results.analysis.report import spill_lines, spill_table_html

    flows = [
        {"origin": "us-east", "destination": "eu-west", "service": "rr-ranking", "requests": 1370},
        {"origin": "us-east", "destination": "eu-west", "service": "llm-chat", "requests": 42},
    ]
    html = spill_table_html({"spill": flows})
    assert html.count("<tr>") == 3 and "1,370" in html and "llm-chat" in html
    assert len(spill_lines({"spill": flows})) == 2
    assert spill_table_html({"spill": []}) == "" and spill_table_html({}) == ""


def test_group_table_does_not_round_utilization_up_to_100() -> None:
    g = {
        "region": "r",
        "service": "s",
        "kind": "llm",
        "completed_per_s": 1.0,
        "utilization": 0.9999,
        "verdict": {"result": "VALID"},
    }
    html = plots.groups_table_html({"groups": [g]})
    assert "<td>99.99</td>" in html and "100.0" not in html


@given(st.integers(1, 10**12), st.integers(1, 10**10))
def test_window_lengths_cover_the_span_exactly(span_ns: int, window: int) -> None:
    """Rates in the panels divide by each window's covered time: the lengths sum to the
    span and only the last may be short."""
    from mtia_cluster.results.analysis.service_panels import window_lengths_s

    windows = -(-span_ns // window)
    if windows > 10_000:
        return
    lengths = window_lengths_s(span_ns, window, windows)
    assert sum(lengths) == pytest.approx(span_ns / 1e9, rel=1e-9)
    assert all(v == window / 1e9 for v in lengths[:-1]) and 0 < lengths[-1] <= window / 1e9


def test_identical_link_series_are_one_line_with_a_count(tmp_path: Path) -> None:
    """Eight stripes of one rack with the same utilization are one series "(+7 identical)";
    distinct links keep their own lines, busiest first."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from mtia_cluster.results.links import busiest_links

    rows: dict[str, list] = {"region": [], "link": [], "interval_start_ns": [], "utilization": []}
    for name, util in [
        *((f"rack0/stripe{i}", [0.5, 0.9]) for i in range(8)),
        ("spine0", [0.2, 0.3]),
    ]:
        for k, u in enumerate(util):
            rows["region"].append("us-east")
            rows["link"].append(name)
            rows["interval_start_ns"].append(k * 10**9)
            rows["utilization"].append(u)
    out = busiest_links(ds.dataset(pa.table(rows)))
    assert list(out) == ["us-east/rack0/stripe0 (+7 identical)", "us-east/spine0"]
    assert out["us-east/spine0"] == ([0.0, 1.0], [0.2, 0.3])


def test_html_group_table_is_the_console_table() -> None:
    """The report's first table has the console's columns (rejected and failed included)
    and each cell is the console's text (one row builder, one formatter)."""
    from mtia_cluster.cli._common import _fmt
    from mtia_cluster.results.analysis.report import GROUP_HEADERS, group_rows

    g = {
        "region": "r",
        "service": "s",
        "kind": "rr",
        "completed_per_s": 1234.5678,
        "rejected": 7,
        "failed": 3,
        "items_per_s": 2.5e6,
        "latency_ns": {"p50": 1_234_567, "p99": 9_876_543},
        "utilization": 0.42,
        "avg_power_w": 355.25,
        "items_per_j": 17.0,
        "verdict": {"result": "INVALID"},
    }
    html = plots.groups_table_html({"groups": [g]})
    for h in GROUP_HEADERS:
        assert f"<th>{h}</th>" in html
    cells = [_fmt(v) for v in group_rows({"groups": [g]})[0]]
    assert html.count("<td>") == len(cells) == len(GROUP_HEADERS)
    assert "".join(f"<td>{c}</td>" for c in cells) in html
    assert "<td>7</td><td>3</td>" in html
