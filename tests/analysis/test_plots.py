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


def test_one_svg_per_plot_with_axis_labels(page: _Collect) -> None:
    titles = [t for t in page.text if t.endswith(("service", "region", "rack")) or "CDF" in t]
    svgs = [a for tag, a in page.tags if tag == "svg"]
    assert len(svgs) == 5
    for needle in (
        "Latency CDF per service",
        "Throughput per region",
        "p99 latency per region",
        "Accelerator utilization per rack",
        "Power per region",
        "latency (ms, log scale)",
        "completed requests/s",
        "power (W)",
        "time (s)",
    ):
        assert any(needle in t for t in page.text), needle
    assert titles
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


def test_heatmap_cells_are_racks_by_intervals(page: _Collect) -> None:
    labels = [t for t in page.text if t.startswith("rack ")]
    assert labels == ["rack 0", "rack 1", "rack 2", "rack 3"]
    fills = [a.get("fill") for tag, a in page.tags if tag == "rect"]
    # 4 racks x 10 one-second intervals, all with data (no grey cells)
    assert "#ccc" not in fills
    assert sum(1 for f in fills if f and f.startswith("#") and f not in ("#ccc",)) >= 40


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
