"""Device samples of in-process runs are folded as they come (results/devfold.py): what a run
holds does not grow with its simulated span, and the summary is the one of keeping them.

Counted in entries held (device rows, per-accelerator totals, energy bins), not in bytes or
seconds: a run of the same requests spread over a longer span keeps no device row and the
same per-accelerator totals; only the `regions/` energy column grows (one float per region
per metrics interval, the table's own size). The kept path (`Simulation.run` without a sink)
holds one sample per interval: the contrast, and the reference the fold must equal bit for
bit. Sizes a run cannot hold are refused before any work, one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config.limits import ENV
from mtia_cluster.config.scenario import load_scenario, parse_scenario
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.output import KeptSamples
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.results import DeviceFold, summarize, write_run
from mtia_cluster.traces.io import read_trace, write_trace

ROOT = Path(__file__).resolve().parents[2]
RR = ROOT / "configs" / "scenarios" / "rr-small.yaml"
LLM = ROOT / "configs" / "scenarios" / "llm-small.yaml"


def mixed() -> Any:
    """Two regions: R&R and a synthetic pool in one, R&R in the other; 1-s metrics."""
    rank = {"service": "rank", "model": "lc1", "platform": "mtia-2i-rack", "hosts": 1}
    syn = {"service": "syn", "model": "svc-exp-1ms", "platform": "mtia-2i-rack"}
    return parse_scenario(
        {
            "name": "bounded",
            "seed": 3,
            "report_interval_ms": 5,
            "metrics_interval_ms": 1000,
            "regions": [
                {"name": "a", "pools": [rank, {**syn, "accelerators": 4}]},
                {"name": "b", "pools": [{**rank, "model": "hc1"}]},
            ],
        }
    )


def spread(n: int, span_s: float, seed: int, services: int, llm: bool) -> RequestBatch:
    """`n` requests arriving uniformly over `span_s`, sorted, fixed sizes per seed."""
    rng = entity_rng(seed, 7)
    arrival = np.sort(rng.integers(0, int(span_s * 1e9) + 1, n)).astype(np.int64)
    if llm:
        return make_requests(
            arrival, input_tokens=rng.integers(16, 256, n), output_tokens=rng.integers(2, 64, n)
        )
    base = make_requests(arrival, items=rng.integers(1, 300, n))
    cols = {**base.columns(), "service": rng.integers(0, services, n).astype(np.int32)}
    if services > 1:
        cols["region"] = rng.integers(0, 2, n).astype(np.int32)
    return RequestBatch(**cols)


def runs(sc: Any, trace: RequestBatch) -> tuple[Any, Any, DeviceFold]:
    """The same run twice: samples kept (the reference) and folded as they come."""
    kept = Simulation(sc).run(trace)
    sim = Simulation(sc)
    fold = DeviceFold.of(sim)
    return kept, sim.run(trace, devices=fold), fold


def same_summary(kept: Any, folded: Any) -> None:
    a, b = summarize(kept), summarize(folded)
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    assert a.regions.equals(b.regions)
    assert b.devices is None  # nothing kept to build device rows from


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    span_s=st.floats(0.5, 240.0),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["mixed", "llm"]),
)
def test_folded_runs_hold_the_same_whatever_the_span(span_s: float, seed: int, kind: str) -> None:
    if kind == "llm":
        sc = load_scenario(LLM, ["metrics_interval_ms=1000"])
        trace = spread(12, span_s, seed, 1, llm=True)
    else:
        sc, trace = mixed(), spread(40, span_s, seed, 2, llm=False)
    kept, folded, fold = runs(sc, trace)
    same_summary(kept, folded)
    intervals = len(kept.samples) - 1
    assert intervals == -(-kept.end_ns // sc.metrics_interval_ns)  # one kept per interval
    assert fold.intervals == intervals and folded.samples == []
    held = fold.retained()
    assert held["device_rows"] == 0
    assert held["accelerator_totals"] == kept.topology.accelerators
    assert held["energy_bins"] <= len(sc.regions) * intervals  # the regions/ energy column


def test_longer_span_holds_no_more_per_accelerator() -> None:
    # the same 40 requests over 2 s and over 400 s: the kept samples grow 200-fold, the
    # fold's per-accelerator entries not at all
    sc = mixed()
    short, long_ = (runs(sc, spread(40, s, 5, 2, llm=False)) for s in (2.0, 400.0))
    assert len(long_[0].samples) > 100 * len(short[0].samples)
    assert long_[2].retained()["device_rows"] == short[2].retained()["device_rows"] == 0
    assert long_[2].retained()["accelerator_totals"] == short[2].retained()["accelerator_totals"]
    same_summary(long_[0], long_[1])


def test_kept_rows_write_the_directory_of_the_kept_samples(tmp_path: Path) -> None:
    sc = mixed()
    trace = spread(40, 30.0, 9, 2, llm=False)
    kept = Simulation(sc).run(trace)
    sim = Simulation(sc)
    folded = sim.run(trace, devices=DeviceFold.of(sim, keep_rows=True))
    dirs = [
        write_run(r, tmp_path / name, manifest={}, trace_path=None, wall_time_s=0.0)
        for name, r in (("kept", kept), ("folded", folded))
    ]
    for part in sorted((dirs[0] / "devices").glob("part-*.parquet")):
        other = dirs[1] / "devices" / part.name
        assert pq.read_table(part).equals(pq.read_table(other))
    assert (dirs[0] / "summary.json").read_bytes() == (dirs[1] / "summary.json").read_bytes()
    assert summarize(folded).devices.equals(summarize(kept).devices)


def test_kept_samples_are_refused_past_the_in_memory_limit(monkeypatch) -> None:
    sink = KeptSamples(accelerators=72, limit=3 * 72)
    from mtia_cluster.engine.cell import DeviceCounters

    empty = DeviceCounters.empty()
    for t in range(3):
        sink(t, empty)
    with pytest.raises(UserError, match="device_intervals=216"):
        sink(3, empty)
    assert len(sink.samples) == 3
    # a run that keeps its samples is refused before it starts when the trace alone needs
    # more (2 s / 1 s + 2 intervals x 76 accelerators > 100); folded, the same run is fine
    monkeypatch.setenv(ENV, "device_intervals=100")
    sc, trace = mixed(), spread(10, 2.0, 1, 2, llm=False)
    with pytest.raises(UserError, match=r"metrics_interval_ms.*device_intervals=100"):
        Simulation(sc).run(trace)
    sim = Simulation(sc)
    assert len(sim.run(trace, devices=DeviceFold.of(sim)).requests) == 10


@pytest.fixture()
def late_trace(tmp_path: Path) -> Path:
    """One request arriving 10**8 s after t = 0: a span of 0, samples over 10**8 s."""
    path = tmp_path / "late.parquet"
    table = pa.table(
        {
            "request_id": pa.array([0], pa.int64()),
            "arrival_ns": pa.array([10**17], pa.int64()),
            "service": pa.array(["feed-ranking"]).dictionary_encode(),
            "items": pa.array([100], pa.int32()),
        }
    )
    pq.write_table(table, path)
    return path


def one_line(args: list[str], *needles: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner(env={ENV: "", **(env or {})}).invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", ["simulate", "simulate -o", "replay"])
def test_samples_from_t0_to_a_late_arrival_are_refused(
    late_trace: Path, tmp_path: Path, command: str
) -> None:
    # before: the span (last - first arrival) was 0, so nothing refused it; the run then
    # sampled 10**9 metrics intervals of 72 accelerators (kept: memory; -o: rows on disk)
    args = [command.split()[0], str(RR), "--trace", str(late_trace)]
    if command != "simulate":
        args += ["-o", str(tmp_path / "run")]
    if command == "replay":
        args += ["--address", "inprocess"]
    line = one_line(
        args,
        str(RR),
        "metrics_interval_ms",
        "100,000,000.000 s",
        "72,000,000,144",
        "streamed_device_intervals=1,000,000,000",
    )
    assert "last arrival" in line
    assert not (tmp_path / "run").exists()


def test_region_intervals_are_refused_before_work(tmp_path: Path) -> None:
    trace = tmp_path / "t.parquet"
    table = read_trace(ROOT / "traces" / "demo.parquet", end_ns=30 * 10**9)
    write_trace(table, trace, {"source": "slice of traces/demo.parquet"})
    demo = ROOT / "configs" / "scenarios" / "demo.yaml"
    for extra in ([], ["-o", str(tmp_path / "run")]):
        # 30 s of 1-s intervals in 2 regions: 58 rows > 10
        args = ["simulate", str(demo), "--trace", str(trace), "--set", "metrics_interval_ms=1000"]
        args += extra
        one_line(
            args, "metrics_interval_ms", "region_intervals=10", env={ENV: "region_intervals=10"}
        )
    assert not (tmp_path / "run").exists()
