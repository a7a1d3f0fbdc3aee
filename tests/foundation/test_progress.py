"""The one progress display (cli/progress.py): rate and ETA on a terminal, at most one line a
minute off it, nothing with --json."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.progress import LOG_INTERVAL_S, Progress


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=200))
def test_off_a_terminal_at_most_one_line_a_minute(gaps: list[float]) -> None:
    clock, out = _Clock(), io.StringIO()
    with Progress("replaying", "requests", stream=out, clock=clock) as p:
        for i, gap in enumerate(gaps):
            clock.t += gap
            p.update(i + 1, len(gaps), "simulated 1 s")
    elapsed = sum(gaps)
    lines = out.getvalue().splitlines()
    assert len(lines) <= elapsed // LOG_INTERVAL_S
    if elapsed >= LOG_INTERVAL_S + max(gaps):  # a long run does report
        assert lines


def test_log_line_has_counts_rate_and_eta() -> None:
    clock, out = _Clock(), io.StringIO()
    p = Progress("replaying", "requests", stream=out, clock=clock)
    clock.t += 60.0
    p.update(600_000, 1_800_000, "simulated 200 s")
    line = out.getvalue().strip()
    assert line.startswith("replaying: 600,000/1,800,000 requests (33%)")
    assert line.endswith("elapsed 01:00, 10k requests/s, ETA 02:00, simulated 200 s")


def test_rate_is_measured_from_the_first_report() -> None:
    """Start-up before the first report (e.g. Ray starting) does not count in the rate."""
    clock, out = _Clock(), io.StringIO()
    p = Progress("replaying", "requests", stream=out, clock=clock)
    clock.t += 100.0  # start-up
    p.update(1_000, 101_000)
    clock.t += 10.0
    p.update(21_000, 101_000)  # 20,000 in 10 s
    assert p.rate() == 2_000.0 and p.eta_s() == 40.0


def test_terminal_bar_shows_rate_and_eta() -> None:
    clock, out = _Clock(), _Tty()
    with Progress("replaying", "requests", stream=out, clock=clock) as p:
        for k in range(1, 5):
            clock.t += 1.0
            p.update(k * 1000, 10_000)
    text = out.getvalue()
    assert "replaying" in text and "40%" in text
    assert "1k requests/s, ETA 00:06" in text  # 6,000 left at 1,000/s


def test_json_output_means_no_progress_at_all() -> None:
    clock = _Clock()
    for stream in (io.StringIO(), _Tty()):
        with Progress("x", "rows", enabled=False, stream=stream, clock=clock) as p:
            for k in range(10):
                clock.t += 100.0
                p.update(k, 10)
        assert stream.getvalue() == ""
