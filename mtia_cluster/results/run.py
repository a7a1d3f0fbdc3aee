"""The one way to summarize a run: `summarize(run_or_directory)` and `write_run`.

An in-process run (:class:`~mtia_cluster.engine.output.RunOutput`: rows and device counter
samples) is converted to exactly the tables a shard writer writes (`completed_to_table`,
`DeviceTracker`), fed to the same mergeable statistics (`StatsBuilder`) and summarized by
`derive_from_stats` -> `summary_from_partials`, the code `ResultsWriter.finalize()` runs for
`replay`. A results directory is summarized by `derive` (its requests read back) with the
SLOs, interval and verdict rules its manifest recorded. Every command (simulate, replay,
capacity searches, rollout replays, drills) goes through here, so a figure printed is the
figure written.

The verdict rules are the scenario's (its `verdict:` options, LoadGen Server's by default);
`rules` overrides them (searches and short replays pass
``VerdictRules(min_duration_ns=0, early_stopping=False)``: options of the one verdict, not a
second judge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from mtia_cluster.engine.output import RunOutput
from mtia_cluster.results.autoscale import with_autoscale
from mtia_cluster.results.convert import (
    completed_by_region,
    completed_to_table,
    request_file_table,
)
from mtia_cluster.results.derive import derive, derive_from_stats
from mtia_cluster.results.devfold import DeviceFold, fleet_tracker
from mtia_cluster.results.devstats import stats_of_intervals
from mtia_cluster.results.links import write_links
from mtia_cluster.results.partials import StatsBuilder
from mtia_cluster.results.reader import open_results
from mtia_cluster.results.schema import DEVICE_SCHEMA
from mtia_cluster.results.verdict import VerdictRules
from mtia_cluster.results.writer import ResultsWriter, run_extra
from mtia_cluster.results.writer_io import dataset_or_none, request_dataset
from mtia_cluster.slo import ServiceSLO


@dataclass
class RunSummary:
    """The summary.json document of a run and the tables it was computed from."""

    summary: dict[str, Any]
    regions: pa.Table  # the `regions/` interval rows
    counts: dict[str, Any]  # the manifest's counts
    span_ns: int
    requests: pa.Table | None = None  # `requests` rows, by region (in memory only)
    devices: pa.Table | None = None  # `devices` rows (in memory only; None: folded)

    def group(self, region: str, service: str) -> dict[str, Any]:
        """The summary group of (region, service); KeyError when absent."""
        for g in self.summary["groups"]:
            if g["region"] == region and g["service"] == service:
                return g
        raise KeyError((region, service))

    @property
    def verdicts(self) -> dict[tuple[str, str], str]:
        """VALID / INVALID / NO_SLO per (region, service) group."""
        return {(g["region"], g["service"]): g["verdict"]["result"] for g in self.summary["groups"]}


def device_tables(run: RunOutput) -> list[pa.Table]:
    """`devices` rows per metrics interval (what a shard writer writes: `DeviceTracker`
    over every accelerator, peak memory included): from the run's kept counter samples,
    or the rows its `DeviceFold` kept (a fold that kept none cannot give them)."""
    if isinstance(run.devices, DeviceFold):
        if run.devices.rows is None:
            raise ValueError("the run's device samples were folded: DeviceFold(keep_rows=True)")
        return list(run.devices.rows)
    tracker = fleet_tracker(run.topology, run.regions, run.services)
    out = []
    for (t0, _), (t1, counters) in zip(run.samples, run.samples[1:], strict=False):
        if t1 > t0:
            out.append(tracker.interval(counters, start_ns=t0, end_ns=t1))
    return out


def run_folded(sim: Any, trace: Any, **kwargs: Any) -> RunOutput:
    """`sim.run(trace, **kwargs)` with its device samples folded as they come
    (`DeviceFold`): the bounded in-process run every command uses."""
    return sim.run(trace, devices=DeviceFold.of(sim), **kwargs)


def summarize(
    source: RunOutput | str | Path,
    *,
    rules: VerdictRules | None = None,
    slos: Mapping[str, ServiceSLO] | None = None,
    arrivals_from_ns: int | None = None,
) -> RunSummary:
    """The summary of an in-process run or of a results directory (see module doc).

    `arrivals_from_ns` (in-process runs): summarize only the requests arriving at or after
    it (a drill judges the requests after its failure); devices are not filtered."""
    if isinstance(source, RunOutput):
        if arrivals_from_ns is not None:
            keep = source.requests.arrival_ns >= arrivals_from_ns
            source = replace(source, requests=source.requests.take(keep))
        return _summarize_memory(source, rules or VerdictRules(**source.scenario.verdict), slos)
    if arrivals_from_ns is not None:
        raise ValueError("arrivals_from_ns applies to in-process runs")
    res = open_results(source)
    m = res.manifest
    d = derive(
        request_dataset(res.path),
        dataset_or_none(res.path / "devices"),
        services=m["services"],
        regions=m["regions"],
        slos=dict(slos) if slos is not None else res.slos,
        rules=rules or VerdictRules(**m["verdict_rules"]),
        interval_ns=m["interval_ns"],
        span_ns=m["simulated_span_ns"],
        check_unique=False,
    )
    with_autoscale(d.summary, m.get("autoscale"), d.span_ns)
    return RunSummary(d.summary, d.regions, d.counts, d.span_ns)


def _summarize_memory(
    run: RunOutput, rules: VerdictRules, slos: Mapping[str, ServiceSLO] | None
) -> RunSummary:
    sc = run.scenario
    slos = dict(sc.slo if slos is None else slos)
    builder = StatsBuilder(run.services, slos, sc.metrics_interval_ns, check_unique=False)
    parts = []  # rows converted once, per region (no filter pass over all rows)
    for region, rows in completed_by_region(run.requests):
        parts.append(
            completed_to_table(rows, services=run.services, regions=run.regions, slos=slos)
        )
        builder.add(run.regions[region], request_file_table(parts[-1]))
    table = (
        pa.concat_tables(parts)
        if parts
        else completed_to_table(run.requests, services=run.services, regions=run.regions, slos=slos)
    )
    stats = builder.result()
    dev_table = None
    if isinstance(run.devices, DeviceFold):  # folded as the run went
        stats.devices = run.devices.stats
        if run.devices.rows is not None:
            dev_table = _concat_devices(run.devices.rows)
    else:
        devices = device_tables(run)
        dev_table = _concat_devices(devices)
        stats.devices = stats_of_intervals(devices, sc.metrics_interval_ns)
    d = derive_from_stats(
        stats,
        None,
        services=run.services,
        regions=run.regions,
        slos=slos,
        rules=rules,
        interval_ns=sc.metrics_interval_ns,
        span_ns=run.end_ns,
    )
    with_autoscale(d.summary, run.autoscale, d.span_ns)
    return RunSummary(d.summary, d.regions, d.counts, d.span_ns, table, dev_table)


def _concat_devices(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if tables else DEVICE_SCHEMA.empty_table()


def run_writer(
    scenario: Any,
    out: str | Path,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    manifest: Mapping[str, Any],
    trace_path: str | Path | None,
    overwrite: bool,
) -> ResultsWriter:
    """The `ResultsWriter` of an in-process run of `scenario` (its SLOs, verdict rules and
    metrics interval): `write_run` and the streaming `simulate -o` (results/stream.py)
    both open it. Every shard writes from this process, so a Ctrl-C leaves nothing behind
    (`discard_if_interrupted`; replay's actors may still write, its writer keeps the temp)."""
    return ResultsWriter(
        out,
        manifest=manifest,
        services=services,
        regions=regions,
        slos=scenario.slo,
        rules=VerdictRules(**scenario.verdict),
        interval_ns=scenario.metrics_interval_ns,
        trace_path=trace_path,
        overwrite=overwrite,
        discard_if_interrupted=True,
    )


def write_run(
    run: RunOutput,
    out: str | Path,
    *,
    manifest: Mapping[str, Any],
    trace_path: str | Path | None,
    wall_time_s: float,
    overwrite: bool = False,
) -> Path:
    """Write an in-process run as a results directory through `ResultsWriter` (the writer
    `replay` uses): one shard, its rows and device intervals, finalized atomically."""
    with run_writer(
        run.scenario,
        out,
        services=run.services,
        regions=run.regions,
        manifest=manifest,
        trace_path=trace_path,
        overwrite=overwrite,
    ) as writer:
        shard = writer.shard(0)
        shard.write_completed(run.requests)
        for table in device_tables(run):
            shard.write_devices(table)
        shard.close()
        write_links(writer, run.topology, run.regions)  # fabric links/, from devices/
        extra = run_extra(run.fleet_events, run.autoscale)
        return writer.finalize(wall_time_s=wall_time_s, simulated_span_ns=run.end_ns, extra=extra)
