"""`mtia-cluster simulate CONFIG --trace T`: replay a trace in one process (no Ray)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from mtia_cluster.cli._common import echo_json, echo_table, json_option, set_option

COLUMNS = [
    ("region", "region"),
    ("service", "service"),
    ("requests", "requests"),
    ("throughput_per_s", "req/s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("utilization", "util"),
    ("energy_j", "energy J"),
    ("slo", "SLO"),
]


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trace",
    "trace_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trace (Parquet).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write summary.json and requests.parquet here (atomic).",
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split cells into N in-process shards (results do not change).",
)
@set_option
@json_option
def simulate(
    config: Path,
    trace_path: Path,
    output: Path | None,
    seed: int | None,
    shards: int,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replay TRACE on the fleet of CONFIG and print a per-region/service summary."""
    from mtia_cluster.config.scenario import load_scenario
    from mtia_cluster.engine.simulation import Simulation
    from mtia_cluster.engine.trace_input import load_trace

    scenario = load_scenario(config, overrides, seed=seed)
    trace = load_trace(trace_path, scenario)
    sim = Simulation(scenario, shards=shards)
    started = time.perf_counter()
    bar_cm: Any = click.progressbar(length=len(trace), label="replaying", file=sys.stderr)
    with bar_cm as bar:
        done = [0]

        def progress(routed: int, total: int) -> None:
            bar.update(routed - done[0])
            done[0] = routed

        results = sim.run(trace, progress=progress)
    wall_s = time.perf_counter() - started
    rows = results.summary()
    info = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "requests": len(trace),
        "simulated_s": results.end_ns / 1e9,
        "wall_s": wall_s,
        "requests_per_wall_s": len(trace) / wall_s if wall_s > 0 else None,
    }
    if output is not None:
        _write(output, results, rows, info)
    if as_json:
        echo_json({**info, "summary": rows})
        return
    click.echo(
        f"{scenario.name}: {len(trace):,} requests, {results.end_ns / 1e9:.3f} s "
        f"simulated in {wall_s:.2f} s wall"
    )
    echo_table([h for _, h in COLUMNS], [[r.get(k, "") for k, _ in COLUMNS] for r in rows])


def _write(output: Path, results: Any, rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """summary.json and requests.parquet, into a temporary directory renamed on success."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtia_cluster.atomic import atomic_path
    from mtia_cluster.cli._common import _clean

    with atomic_path(output, directory=True) as tmp:
        cols = results.requests.columns()
        table = pa.table({**cols, "latency_ns": cols["finish_ns"] - cols["arrival_ns"]})
        pq.write_table(table, tmp / "requests.parquet")
        (tmp / "summary.json").write_text(
            json.dumps(_clean({**info, "summary": rows}), indent=2), encoding="utf-8"
        )
