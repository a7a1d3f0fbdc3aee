"""Size limits checked before any work: a validated input that would need implausible memory
or time is refused with one line naming the field, the size and the limit (exit status 2).

Every limit has a documented default (docs/limits.md) and can be raised for one command with
the environment variable ``MTIA_CLUSTER_LIMITS``, e.g.
``MTIA_CLUSTER_LIMITS=accelerators=4000000,trace_span_s=31536000 mtia-cluster simulate ...``.
An environment variable (not a config section or a flag) so the same limits apply to every
command and every input kind (scenario, trace, trace spec, YAML) without changing their
schemas.

Checks here take already validated objects (:func:`check_scenario` a Scenario right after it
is parsed, :func:`check_run` a Scenario and a trace's span). Trace files are checked when
opened (traces/limits.py) and YAML documents while loaded (config/yaml_limits.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_S

if TYPE_CHECKING:
    from mtia_cluster.config.scenario import Scenario

ENV = "MTIA_CLUSTER_LIMITS"


@dataclass(frozen=True)
class Limits:
    """The limits in force (defaults: docs/limits.md explains each figure)."""

    accelerators: int = 1_000_000  # in one scenario's fleet
    items_per_request: int = 1_000_000  # a trace row's items; a pool's batching.max_items
    tokens_per_request: int = 10_000_000  # a trace row's input_tokens and output_tokens each
    report_interval_min_ns: int = 1_000  # shortest window (router report interval)
    windows: int = 200_000_000  # trace span / report interval
    windows_x_pools: int = 2_000_000_000  # windows x pools (router work per window)
    device_intervals: int = 10_000_000  # (trace span / metrics interval) x accelerators
    trace_span_s: float = 31 * 86_400.0  # last arrival - first arrival
    generated_requests: int = 100_000_000  # rows `trace generate` builds in memory
    yaml_depth: int = 64  # nesting of mappings and lists in one YAML document
    yaml_nodes: int = 1_000_000  # nodes of a YAML document with every alias expanded

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults with the overrides of ``MTIA_CLUSTER_LIMITS`` (name=value,...)."""
        text = (os.environ if environ is None else environ).get(ENV, "").strip()
        if not text:
            return cls()
        types = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in types:
                known = ", ".join(types)
                raise UserError(
                    f"expected NAME=VALUE with NAME one of {known}", field=ENV, value=part
                )
            changes[name] = _parse(name, raw.strip(), types[name] == "float")
        return replace(cls(), **changes)


def _parse(name: str, raw: str, real: bool) -> int | float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or (not real and not value.is_integer()):
        kind = "number" if real else "integer"
        raise UserError(f"{name} must be a positive {kind}", field=ENV, value=raw)
    return value if real else int(value)


def limit_error(
    what: str,
    size: float,
    name: str,
    limit: float,
    file: Any = None,
    field: str | None = None,
    unit: str = "",
) -> UserError:
    """The one-line refusal: which field, how big, which limit and how to raise it."""
    return UserError(
        f"{what} {_fmt(size)}{unit} exceeds the limit {name}={_fmt(limit)} "
        f"(raise it with {ENV}={name}=N)",
        file=file,
        field=field,
    )


def _fmt(x: float) -> str:
    """12,345 (or 12,345.678) for sizes up to 10**15, 1.2e+23 beyond."""
    if abs(x) >= 1e15:
        return f"{float(x):.3g}"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3f}".rstrip("0")


def check_scenario(scenario: Scenario, limits: Limits | None = None) -> None:
    """Sizes a scenario alone fixes: fleet size, batch sizes, window length, event times,
    and region weights that leave requests without a region nowhere to go."""
    lim = limits or Limits.from_env()
    sc, file = scenario, scenario.file
    total = 0
    for i, region in enumerate(sc.regions):
        for j, pool in enumerate(region.pools):
            total += pool.accelerators
            prefix = pool.field_prefix or f"regions[{i}].pools[{j}]"
            if total > lim.accelerators:
                key = pool.count_key
                raise limit_error(
                    "accelerators in the fleet up to this pool:",
                    total,
                    "accelerators",
                    lim.accelerators,
                    file,
                    f"{prefix}.{key}",
                )
            if pool.max_items > lim.items_per_request:
                raise limit_error(
                    "max_items",
                    pool.max_items,
                    "items_per_request",
                    lim.items_per_request,
                    file,
                    f"{prefix}.batching.max_items",
                )
    if sc.report_interval_ns < lim.report_interval_min_ns:
        raise UserError(
            f"{sc.report_interval_ns:,} ns is below the limit "
            f"report_interval_min_ns={lim.report_interval_min_ns:,} "
            f"(lower it with {ENV}=report_interval_min_ns=N)",
            file=file,
            field="report_interval_ms",
        )
    span_ns = lim.trace_span_s * NS_PER_S
    for k, event in enumerate(sc.events):
        if event.at_ns > span_ns:
            raise limit_error(
                "event at",
                event.at_ns / NS_PER_S,
                "trace_span_s",
                lim.trace_span_s,
                file,
                f"events[{k}].at_s",
                " s",
            )
    _check_weights(sc)


def _check_weights(sc: Scenario) -> None:
    """Rows without a region are spread by weight over the regions serving their service:
    every service needs one region of positive weight (checked at load, not after a run)."""
    for service in sc.services:
        serving = [
            i for i, r in enumerate(sc.regions) if any(p.service == service for p in r.pools)
        ]
        if not any(sc.regions[i].weight > 0 for i in serving):
            raise UserError(
                f"every region serving {service!r} has weight 0, so its requests without a "
                "region could go nowhere; give one a weight > 0",
                file=sc.file,
                field=f"regions[{serving[0]}].weight",
            )


def check_run(scenario: Scenario, span_ns: int, limits: Limits | None = None) -> None:
    """Sizes a scenario and a trace fix together: windows to step through and device
    intervals to keep, from the trace's span (first to last arrival)."""
    lim = limits or Limits.from_env()
    sc = scenario
    windows = span_ns // sc.report_interval_ns + 1
    pools = sum(len(r.pools) for r in sc.regions)
    accelerators = sum(p.accelerators for r in sc.regions for p in r.pools)
    intervals = span_ns // sc.metrics_interval_ns + 2
    field = "report_interval_ms"
    where = f"trace span {span_ns / NS_PER_S:,.3f} s /"
    if windows > lim.windows:
        raise limit_error(
            f"{where} report interval: windows", windows, "windows", lim.windows, sc.file, field
        )
    if windows * pools > lim.windows_x_pools:
        raise limit_error(
            f"{where} report interval x {pools} pools:",
            windows * pools,
            "windows_x_pools",
            lim.windows_x_pools,
            sc.file,
            field,
        )
    if intervals * accelerators > lim.device_intervals:
        raise limit_error(
            f"{where} metrics interval x {accelerators:,} accelerators: device intervals",
            intervals * accelerators,
            "device_intervals",
            lim.device_intervals,
            sc.file,
            "metrics_interval_ms",
        )
