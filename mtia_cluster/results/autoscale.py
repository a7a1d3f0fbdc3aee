"""The ``autoscale`` section of summary.json: replicas over time per autoscaled (region, service).

Its input is the run's replica timeline (engine/autoscale.py rows: one per change of a
group's counts, at the window boundary it happened), kept in the manifest as ``autoscale``
for a results directory and on :class:`~mtia_cluster.engine.output.RunOutput` in process.
Every summary path adds it through :func:`with_autoscale` (``summarize`` for a run or a
directory, ``ResultsWriter.finalize`` for ``replay``), so the figures are one computation.

Energy: the ``devices`` rows charge every provisioned accelerator its idle power, off or not
(the counters do not know replica states). ``off_idle_energy_j`` is the idle energy of the
accelerators while their replica was off, which a powered-off replica does not draw; the
section's ``energy_j`` is the group's ``energy_j`` minus it (off replicas count as off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from mtia_cluster.units import NS_PER_S


def autoscale_section(rows: Sequence[Mapping[str, Any]], span_ns: int) -> dict[str, Any]:
    """Per (region, service): replica counts over time and what they add up to."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["region"], row["service"]), []).append(row)
    return {
        "groups": [_group(region, service, g, span_ns) for (region, service), g in groups.items()]
    }


def _group(region: str, service: str, rows: list[Mapping[str, Any]], span_ns: int) -> dict:
    """Time-weighted figures of one group's piecewise-constant counts over [0, span_ns]."""
    ends = [int(r["at_ns"]) for r in rows[1:]] + [max(span_ns, int(rows[-1]["at_ns"]))]
    weight = {"running": 0.0, "starting": 0.0, "off_accelerators": 0.0, "off_idle_power_w": 0.0}
    for row, end in zip(rows, ends, strict=True):
        span_s = (end - int(row["at_ns"])) / NS_PER_S
        for key in weight:
            weight[key] += float(row[key]) * span_s
    total_s = max(span_ns, 1) / NS_PER_S
    on = [int(r["running"]) + int(r["starting"]) for r in rows]
    return {
        "region": region,
        "service": service,
        "replicas_min": min(int(r["running"]) for r in rows),
        "replicas_max": max(int(r["running"]) for r in rows),
        "replicas_mean": weight["running"] / total_s,
        "scale_ups": sum(b > a for a, b in pairwise(on)),
        "scale_downs": sum(b < a for a, b in pairwise(on)),
        "starting_replica_s": weight["starting"],
        "off_accelerator_s": weight["off_accelerators"],
        "off_idle_energy_j": weight["off_idle_power_w"],
        "timeline": [
            [int(r["at_ns"]) / NS_PER_S, r["running"], r["starting"], r["draining"], r["desired"]]
            for r in rows
        ],
    }


def with_autoscale(
    summary: dict[str, Any], rows: Sequence[Mapping[str, Any]] | None, span_ns: int
) -> dict[str, Any]:
    """`summary` with its ``autoscale`` section when the run autoscaled (else unchanged)."""
    if rows:
        section = autoscale_section(rows, span_ns)
        energy = {(g["region"], g["service"]): g.get("energy_j") for g in summary["groups"]}
        for g in section["groups"]:
            total = energy.get((g["region"], g["service"]))
            # the group's energy with its off replicas drawing nothing
            g["energy_j"] = None if total is None else total - g["off_idle_energy_j"]
        summary["autoscale"] = section
    return summary


def replica_series(
    summary: Mapping[str, Any], span_s: float
) -> list[tuple[str, list[float], list[float | None]]]:
    """Step series of running and running + starting replicas per autoscaled group, for the
    report's "Replicas over time" chart: (label, times s, replicas)."""
    out: list[tuple[str, list[float], list[float | None]]] = []
    for g in (summary.get("autoscale") or {}).get("groups", []):
        for label, count in (("running", lambda p: p[1]), ("+starting", lambda p: p[1] + p[2])):
            xs: list[float] = []
            ys: list[float | None] = []
            for i, point in enumerate(g["timeline"]):
                if i:  # the step: the previous count up to this change
                    xs.append(point[0])
                    ys.append(ys[-1])
                xs.append(point[0])
                ys.append(float(count(point)))
            xs.append(max(span_s, xs[-1]))
            ys.append(ys[-1])
            out.append((f"{g['region']}/{g['service']} {label}", xs, ys))
    return out


AUTOSCALE_COLUMNS = [
    "region",
    "service",
    "replicas min",
    "replicas mean",
    "replicas max",
    "scale-ups",
    "scale-downs",
    "starting replica-s",
    "off accelerator-s",
    "off idle energy J",
    "energy J (off = 0 W)",
]


def autoscale_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    """`analyze`'s autoscaling table (AUTOSCALE_COLUMNS), one row per autoscaled group."""
    return [
        [
            g["region"],
            g["service"],
            g["replicas_min"],
            g["replicas_mean"],
            g["replicas_max"],
            g["scale_ups"],
            g["scale_downs"],
            g["starting_replica_s"],
            g["off_accelerator_s"],
            g["off_idle_energy_j"],
            g.get("energy_j"),
        ]
        for g in (summary.get("autoscale") or {}).get("groups", [])
    ]
