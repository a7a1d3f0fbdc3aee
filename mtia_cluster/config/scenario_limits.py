"""Size limits (config/limits.py) checked on an already validated scenario:
:func:`check_scenario` right after it is parsed, :func:`check_run` with a trace's span.

Apart from the limits themselves, which the YAML loader below the scenario types reads, so
that neither needs the other.
"""

from __future__ import annotations

from mtia_cluster.config.limits import ENV, Limits, limit_error
from mtia_cluster.config.scenario_types import PoolSpec, Scenario
from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_S


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
            _check_batch_sizes(pool, prefix, lim, file)
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
    _check_times(sc, lim)
    _check_failure_events(sc, lim)


def _check_times(sc: Scenario, lim: Limits) -> None:
    """Failure and autoscaling times: none longer than the trace_span_s limit (1e300 s
    overflowed int64 ns), and decisions no closer than report_interval_min_ns (a 0-ns
    interval never advanced)."""
    fields = [
        (f"failures[{k}].{key}", getattr(f, key))
        for k, f in enumerate(sc.failures)
        for key in ("mtbf_s", "mttr_s", "horizon_s")
    ]
    times = ("interval_s", "upscale_cooldown_s", "downscale_cooldown_s", "runtime_init_s")
    for service, policy in sc.autoscaling.items():
        where = f"autoscaling.{service}"
        fields += [(f"{where}.{key}", getattr(policy, key)) for key in times]
        if policy.interval_s * NS_PER_S < lim.report_interval_min_ns:
            raise UserError(
                f"{policy.interval_s:g} s is below the limit report_interval_min_ns="
                f"{lim.report_interval_min_ns:,} (lower it with {ENV}=report_interval_min_ns=N)",
                file=sc.file,
                field=f"{where}.interval_s",
            )
    for field, seconds in fields:
        if seconds > lim.trace_span_s:
            raise limit_error(
                field.rpartition(".")[2],
                seconds,
                "trace_span_s",
                lim.trace_span_s,
                sc.file,
                field,
                " s",
            )


def _check_failure_events(sc: Scenario, lim: Limits) -> None:
    """The fail/repair events `failures:` would draw, about 2 x units x horizon / (MTBF +
    MTTR) per spec, with every accelerator of the matching regions counted as a unit (an
    upper bound on hosts and racks): a 1-ms MTBF over a day is 10^8 events per host, drawn
    one by one before the first request (a hang, then out of memory)."""
    per_region = {r.name: sum(p.accelerators for p in r.pools) for r in sc.regions}
    for k, f in enumerate(sc.failures):
        per_unit = f.level != "region"  # a region fails as one unit
        units = sum(n if per_unit else 1 for r, n in per_region.items() if f.region in (None, r))
        events = 2.0 * units * f.horizon_s / (f.mtbf_s + f.mttr_s)
        if events > lim.failure_events:
            field = f"failures[{k}].mtbf_s"
            raise limit_error(
                "expected fail/repair events",
                round(events),
                "failure_events",
                lim.failure_events,
                sc.file,
                field,
            )


def _check_batch_sizes(pool: PoolSpec, prefix: str, lim: Limits, file: str | None) -> None:
    """A pool's largest batch (the R&R service table has max_items + 1 entries, the LLM
    iteration cost table max_num_batched_tokens + 1) and longest batching wait."""
    tokens = pool.llm.max_num_batched_tokens if pool.llm is not None else 0
    for key, size, name in (
        ("batching.max_items", pool.max_items, "items_per_request"),
        ("max_num_batched_tokens", tokens, "tokens_per_request"),
    ):
        if size > getattr(lim, name):
            what = key.rpartition(".")[2]
            raise limit_error(what, size, name, getattr(lim, name), file, f"{prefix}.{key}")
    if pool.max_wait_ns > lim.trace_span_s * NS_PER_S:  # beyond int64 ns long before 1e300
        wait_s = pool.max_wait_ns / NS_PER_S
        field = f"{prefix}.batching.max_wait_us"
        raise limit_error(
            "batching wait", wait_s, "trace_span_s", lim.trace_span_s, file, field, " s"
        )


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


def check_run(
    scenario: Scenario,
    span_ns: int,
    limits: Limits | None = None,
    *,
    streamed: bool = False,
    end_ns: int | None = None,
) -> None:
    """Sizes a scenario and a trace fix together: windows to step through and device and
    region intervals, from the trace's span (first to last arrival) or, for the intervals,
    its last arrival `end_ns` when larger (samples start at t = 0, however late the first
    arrival). `streamed`: the run writes its device intervals to `devices/` as it goes or
    folds them into totals (`simulate`, `simulate -o`, `replay`, capacity searches) instead
    of keeping them in memory (`Simulation.run` without a sink), so they have the larger
    bound. `regions/` rows are built in memory at the end of every run: their own limit."""
    lim = limits or Limits.from_env()
    sc = scenario
    windows = span_ns // sc.report_interval_ns + 1
    pools = sum(len(r.pools) for r in sc.regions)
    where = f"trace span {span_ns / NS_PER_S:,.3f} s /"
    if windows > lim.windows:
        raise limit_error(
            f"{where} report interval: windows",
            windows,
            "windows",
            lim.windows,
            sc.file,
            "report_interval_ms",
        )
    if windows * pools > lim.windows_x_pools:
        raise limit_error(
            f"{where} report interval x {pools} pools:",
            windows * pools,
            "windows_x_pools",
            lim.windows_x_pools,
            sc.file,
            "report_interval_ms",
        )
    _check_intervals(sc, max(span_ns, end_ns or 0), lim, streamed)


def _check_intervals(sc: Scenario, span_ns: int, lim: Limits, streamed: bool) -> None:
    """Device intervals (accelerators x metrics intervals) and `regions/` rows (regions x
    metrics intervals) of a run whose samples cover [0, span_ns] (the trace's last arrival,
    at least: the drain after it adds intervals too)."""
    device_limit = "streamed_device_intervals" if streamed else "device_intervals"
    accelerators = sum(p.accelerators for r in sc.regions for p in r.pools)
    intervals = span_ns // sc.metrics_interval_ns + 2
    where = f"t = 0 to the last arrival, {span_ns / NS_PER_S:,.3f} s / metrics interval x"
    checks = [
        (f"{accelerators:,} accelerators: device intervals", accelerators, device_limit),
        (f"{len(sc.regions):,} regions: region intervals", len(sc.regions), "region_intervals"),
    ]
    for what, count, name in checks:
        if intervals * count > getattr(lim, name):
            limit = getattr(lim, name)
            raise limit_error(
                f"{where} {what}", intervals * count, name, limit, sc.file, "metrics_interval_ms"
            )
