"""A capacity search never tries a rate whose replay would span more than MAX_REPLAY_SPAN_S
(planning/capacity.py): the search's floor. An SLO no rate meets ends at the floor with
0 req/s and one note naming it, instead of bisecting toward 0 req/s (replays of millions of
simulated seconds: the session-5 OOM)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import mtia_cluster.planning.capacity as capacity_mod
from mtia_cluster.cli.main import cli
from mtia_cluster.planning.search import find_max_rate

from .test_capacity import CONFIG  # one MTIA 1 server, HC3, p99 <= 100 ms


@settings(max_examples=100, deadline=None)
@given(
    threshold=st.floats(1e-4, 1e4),
    floor=st.floats(1e-3, 1e2),
    guess=st.floats(1e-2, 1e5),
    parallel=st.integers(1, 4),
)
def test_no_rate_below_the_floor_is_tried(threshold, floor, guess, parallel):
    tried: list[float] = []

    def evaluate(rates):
        tried.extend(rates)
        return [r <= threshold for r in rates]

    res = find_max_rate(evaluate, guess, parallel=parallel, rel_tol=0.05, min_rate=floor)
    assert min(tried) >= floor
    if threshold < floor:  # nothing at or above the floor passes: the search says so
        assert res.best_rate == 0.0 and floor in tried
    else:
        assert floor <= res.best_rate <= threshold


def test_an_slo_no_rate_meets_stops_at_the_floor(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "cap.yaml"
    cfg.write_text(CONFIG)
    spans: list[float] = []
    judge = capacity_mod._judge

    def spy(scenario, work, rate, slo):
        spans.append(float(capacity_mod._requests(work, rate).arrival_ns.max()) / 1e9)
        return judge(scenario, work, rate, slo)

    monkeypatch.setattr(capacity_mod, "_judge", spy)
    args = ["capacity", str(cfg), "--service", "ranking", "--address", "inprocess"]
    result = CliRunner().invoke(cli, [*args, "--slo", "p99=1us"])  # below any service time
    assert result.exit_code == 0, result.output
    assert spans and max(spans) <= capacity_mod.MAX_REPLAY_SPAN_S
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no rate down to" in notes[0] and "86,400" in notes[0]
    row = result.stdout.splitlines()[2].split()
    assert row[:3] == ["mtia-1", "mtia-1-server", "0"]
