"""`analyze ROLLOUT_DIR [--plot FILE]`: summary report, wave Gantt chart and capacity vs
demand per region (HTML inline SVG; PNG needs matplotlib, else one line and exit 2)."""

from __future__ import annotations

import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.results.analysis.rollout_plots import collect, envelope
from rollout.plans import EXAMPLES

REGRESSION = EXAMPLES / "model-regression-rollback.yaml"
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regression example's output (replays on): wave 0 rolled back, wave 1 cancelled."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("r") / "out"
    r = CliRunner().invoke(cli, ["rollout", str(REGRESSION), "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_gantt_bars_follow_the_wave_events(rolled_back: Path) -> None:
    data = collect(rolled_back)
    assert data.rows == ["w0 canary", "w1 us-east (cancelled)", "w1 eu-west (cancelled)"]
    bars = [(b.row, b.phase, b.start_day, b.end_day) for b in data.bars]
    # events: start h0, swapped h48, gate fail + rollback start h96, rollback done h144
    assert bars == [(0, "swapping", 0.0, 2.0), (0, "baking", 2.0, 4.0),
                    (0, "rolling_back", 4.0, 6.0)]  # fmt: skip
    assert data.regions == ["canary", "us-east", "eu-west"]
    assert sum(len(v) for v in data.moments.values()) == 3  # replayed moments, all canary
    assert not any(agrees for _, _, agrees in data.moments["canary"])


def test_paused_wave_bar_runs_to_the_end(runner, tmp_path: Path) -> None:
    out = tmp_path / "p"
    args = ["rollout", str(REGRESSION), "-o", str(out), "--fast",
            "--set", "rollout.on_gate_failure=pause"]  # fmt: skip
    assert runner.invoke(cli, args).exit_code == 0
    data = collect(out)
    paused = [b for b in data.bars if b.phase == "paused"]
    assert len(paused) == 1 and paused[0].start_day == 4.0
    assert paused[0].end_day == pytest.approx(21.0 - 1 / 24)  # last timeline step


def test_analyze_rollout_dir_prints_summary_and_json(runner, rolled_back: Path) -> None:
    r = runner.invoke(cli, ["analyze", str(rolled_back)])
    assert r.exit_code == 0, r.output
    assert "waves rolled_back, cancelled" in r.output and "3 disagree" in r.output
    assert "canary" in r.output
    r = runner.invoke(cli, ["analyze", str(rolled_back), "--json"])
    assert json.loads(r.output) == json.loads((rolled_back / "summary.json").read_text())
    r = runner.invoke(cli, ["analyze", str(rolled_back), "--compare", str(rolled_back)])
    assert r.exit_code == 2 and "rollout directory" in r.output


def test_html_plot_has_gantt_and_one_chart_per_region(
    runner, rolled_back: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rollout.html"
    r = runner.invoke(cli, ["analyze", str(rolled_back), "--plot", str(out)])
    assert r.exit_code == 0, r.output
    page = _Tags()
    page.feed(out.read_text())
    titles = [t for t in page.text if t.startswith("Waves") or "capacity vs demand" in t]
    assert titles.count("Waves (Gantt)") >= 1
    assert {"canary: capacity vs demand", "us-east: capacity vs demand"} <= set(titles)
    svgs = [a for tag, a in page.tags if tag == "svg"]
    assert len(svgs) == 1 + 3
    bars = [a["class"] for tag, a in page.tags if tag == "rect" and "bar" in (a.get("class") or "")]
    assert sorted(bars) == ["bar baking", "bar rolling_back", "bar swapping"]
    polylines = [a for tag, a in page.tags if tag == "polyline"]
    assert len(polylines) >= 2 * 3  # capacity and demand per region
    assert "Exact replays" in page.text
    assert not re.search(r"<script|https?://", out.read_text().replace("http://www.w3.org", ""))


@pytest.mark.skipif(HAS_MPL, reason="matplotlib installed: the error path is not reachable")
def test_png_without_matplotlib_is_one_line_exit_2(runner, rolled_back: Path, tmp_path) -> None:
    out = tmp_path / "rollout.png"
    r = runner.invoke(cli, ["analyze", str(rolled_back), "--plot", str(out)])
    assert r.exit_code == 2 and "matplotlib" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.skipif(not HAS_MPL, reason="needs matplotlib (optional extra plot)")
def test_png_with_matplotlib(runner, rolled_back: Path, tmp_path) -> None:
    out = tmp_path / "rollout.png"
    r = runner.invoke(cli, ["analyze", str(rolled_back), "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@settings(max_examples=100, deadline=None)
@given(
    cap=st.lists(st.floats(0, 1e6), min_size=1, max_size=400),
    seed=st.integers(0, 1000),
    max_points=st.integers(1, 50),
    per_day=st.sampled_from([1, 4, 24]),
)
def test_envelope_keeps_every_dip_and_peak(
    cap: list[float], seed: int, max_points: int, per_day: int
) -> None:
    c = np.array(cap)
    d = np.random.default_rng(seed).uniform(0, 1e6, len(c))
    days = np.arange(len(c)) / per_day
    x, lo, hi = envelope(days, c, d, max_points, 1.0 / per_day)
    assert len(x) == len(lo) == len(hi)
    assert len(x) == len(c) if len(c) <= max_points else len(x) <= max_points
    assert min(lo) == c.min() and max(hi) == d.max()
    starts = np.searchsorted(days, x)
    ends = [*starts[1:], len(c)]
    for s, e, a, b in zip(starts, ends, lo, hi, strict=True):
        assert a == c[s:e].min() and b == d[s:e].max()
        if len(c) > max_points and e < len(c):
            assert (e - s) % per_day == 0  # whole days


def test_outage_plot_shows_offered_demand_and_headline(runner, tmp_path: Path) -> None:
    """Region b down for 6 h: region a's plotted demand includes the failover it received
    (above its own), b's capacity drops to 0; the headline names the outage."""
    import yaml

    from rollout.plans import plan_dict

    data = plan_dict(
        **{"timeline.horizon_days": 2, "timeline.step_h": 1},
        outages=[{"region": "b", "at_day": 1, "duration_h": 6}],
    )
    plan = tmp_path / "p.yaml"
    plan.write_text(yaml.safe_dump(data))
    out = tmp_path / "o"
    assert runner.invoke(cli, ["rollout", str(plan), "-o", str(out), "--fast"]).exit_code == 0
    d = collect(out)
    a_dem, b_cap = np.asarray(d.demand["a"]), np.asarray(d.capacity["b"])
    own = 1.0e7  # flat demand of region a
    assert a_dem.max() > own * 2 and np.isclose(np.median(a_dem), own)
    assert b_cap.min() == 0 and b_cap.max() > 0
    r = runner.invoke(cli, ["analyze", str(out)])
    assert r.exit_code == 0 and "region outages 1 (360 region-minutes" in r.output


def test_gates_and_rollbacks_are_marked_and_tables_read_as_text(
    rolled_back: Path, tmp_path: Path
) -> None:
    """Capacity vs demand shows the canary's failed gate and its rollback; the replay table
    has no Python None/True/False; Gantt labels start right of the plot's left edge."""
    from click.testing import CliRunner

    data = collect(rolled_back)
    assert data.marks["canary"] == [(4.0, "gate FAIL w0"), (4.0, "rollback w0"),
                                    (6.0, "rolled back w0")]  # fmt: skip
    assert "us-east" not in data.marks  # its wave was cancelled: no gate, no rollback
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["analyze", str(rolled_back), "--plot", str(out)])
    assert r.exit_code == 0, r.output
    page = _Tags()
    page.feed(out.read_text())
    assert {"gate FAIL w0", "rollback w0", "rolled back w0"} <= set(page.text)
    cells = [t for t in page.text if t in ("None", "True", "False")]
    assert not cells
    text = out.read_text()
    gantt = text[text.index("Waves (Gantt)") :]
    left = float(re.search(r'<rect x="([0-9.]+)" y="40" width="[0-9.]+" height="250"', gantt)[1])
    longest = max(len(r) for r in data.rows)  # "w1 us-east (cancelled)"
    assert left >= 0.6 * 12 * longest


def test_many_regions_are_small_multiples(tmp_path: Path) -> None:
    from click.testing import CliRunner

    out = tmp_path / "r16"
    plan = EXAMPLES / "mtia2i-16-regions.yaml"
    r = CliRunner().invoke(cli, ["rollout", str(plan), "-o", str(out), "--fast"])
    assert r.exit_code == 0, r.output
    html = tmp_path / "r16.html"
    r = CliRunner().invoke(cli, ["analyze", str(out), "--plot", str(html)])
    assert r.exit_code == 0, r.output
    text = html.read_text()
    grid = text[text.index('<div class="multiples">') :]
    assert grid.count("capacity vs demand</text>") == 16
    assert "gate pass w4" in grid
