"""Cost and energy are conserved (#19): every figure of a summary is a sum of device rows, so
the groups plus idle accelerators, the regions and the services each add up to the fleet
total; and each device row follows the power model (idle + compute- and memory-bound busy
power, host share following utilization, x PUE, price, carbon, amortized capex)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.engine.cell import DeviceCounters
from mtia_cluster.results import DeviceInfo, DeviceTracker, VerdictRules
from mtia_cluster.results.devices import COST_COLUMNS
from mtia_cluster.results.devstats import device_stats, totals_of
from mtia_cluster.results.summary import summary_from_partials
from mtia_cluster.units import J_PER_KWH

REGIONS, SERVICES = ["r0", "r1", "r2"], ["rank", "chat"]
SUMMED = ("energy_j", "host_energy_j", "facility_energy_kwh", "energy_cost_usd", "capex_usd",
          "cost_usd", "co2e_g")  # fmt: skip


@st.composite
def fleets(draw: st.DrawFn) -> tuple[DeviceInfo, list[DeviceCounters], list[int]]:
    """A few accelerators with random rates, regions, services (-1: idle) and counters."""
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    idle = rng.uniform(5, 100, n)
    busy = idle + rng.uniform(0, 900, n)
    host_idle = rng.uniform(0, 400, n)
    info = DeviceInfo(
        accelerator_id=np.arange(n, dtype=np.int32),
        host_id=np.arange(n, dtype=np.int32) // 2,
        rack_id=np.zeros(n, dtype=np.int32),
        region=rng.integers(0, len(REGIONS), n).astype(np.int32),
        chip=np.zeros(n, dtype=np.int32),
        service=rng.integers(-1, len(SERVICES), n).astype(np.int32),
        idle_w=idle,
        busy_w=busy,
        memory_w=idle + (busy - idle) * rng.uniform(0, 1, n),
        host_idle_w=host_idle,
        host_busy_w=host_idle + rng.uniform(0, 400, n),
        capex_usd_per_s=rng.uniform(0, 1e-3, n),
        pue=rng.uniform(1, 2, n),
        usd_per_kwh=rng.uniform(0, 0.3, n),
        gco2e_per_kwh=rng.uniform(0, 800, n),
    )
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**10), min_size=1, max_size=6))))
    samples, cum_busy, cum_mem, last = [], np.zeros(n, np.int64), np.zeros(n, np.int64), 0
    for end in bounds:
        add = (rng.uniform(0, 1, n) * (end - last)).astype(np.int64)
        cum_mem += (rng.uniform(0, 1, n) * add).astype(np.int64)
        cum_busy += add
        samples.append(
            DeviceCounters(
                accelerator_id=info.accelerator_id.copy(),
                busy_ns=cum_busy.copy(),
                batches=np.zeros(n, np.int64),
                work_units=np.zeros(n, np.int64),
                peak_memory_bytes=np.zeros(n, np.int64),
                memory_bound_ns=cum_mem.copy(),
            )
        )
        last = end
    return info, samples, bounds


def _totals(rows: pa.Table, interval_ns: int) -> Any:
    """Device totals per (region, service) as the summary path reads them back."""
    return totals_of(device_stats(ds.dataset(rows), interval_ns))


def _summary(info: DeviceInfo, samples: list[DeviceCounters], bounds: list[int]) -> Any:
    tracker = DeviceTracker(info, regions=REGIONS, chips=["x"], services=SERVICES)
    starts = [0, *bounds[:-1]]
    tables = [
        tracker.interval(c, start_ns=s, end_ns=e)
        for c, s, e in zip(samples, starts, bounds, strict=True)
    ]
    rows = pa.concat_tables(tables)
    summary = summary_from_partials(
        lambda region: {},
        _totals(rows, bounds[-1]),
        services=SERVICES,
        regions=REGIONS,
        slos={},
        duration_ns=bounds[-1],
        rules=VerdictRules(),
    )
    return summary, rows


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_groups_regions_and_services_add_up_to_the_fleet(drawn: Any) -> None:
    info, samples, bounds = drawn
    summary, rows = _summary(info, samples, bounds)
    fleet = summary["fleet"]
    idle = rows.filter(pa.compute.is_null(rows["service"]))
    for key in SUMMED:
        by_region = sum(r[key] for r in summary["regions"])
        by_service = sum(s[key] for s in summary["services"])
        by_group = sum(g[key] for g in summary["groups"])
        assert _close(by_region, fleet[key]), key
        assert _close(by_service, by_group), key
        if key in idle.column_names:  # accelerators of no service count in the fleet only
            unassigned = pa.compute.sum(idle[key]).as_py() or 0.0
            assert _close(by_group + unassigned, fleet[key]), key
    assert _close(fleet["cost_usd"], fleet["capex_usd"] + fleet["energy_cost_usd"])


@settings(max_examples=150, deadline=None)
@given(fleets())
def test_rows_follow_the_power_model(drawn: Any) -> None:
    """Each row, recomputed here from the rates and the counter differences."""
    info, samples, bounds = drawn
    _, rows = _summary(info, samples, bounds)
    r = rows.to_pydict()
    for k in range(rows.num_rows):
        a = r["accelerator_id"][k]
        span_s = (r["interval_end_ns"][k] - r["interval_start_ns"][k]) / 1e9
        busy_s, mem_s = r["busy_ns"][k] / 1e9, r["memory_bound_ns"][k] / 1e9
        assert 0 <= mem_s <= busy_s <= span_s
        acc = info.idle_w[a] * span_s + (info.busy_w[a] - info.idle_w[a]) * (busy_s - mem_s)
        acc += (info.memory_w[a] - info.idle_w[a]) * mem_s
        host = info.host_idle_w[a] * span_s + (info.host_busy_w[a] - info.host_idle_w[a]) * busy_s
        kwh = (acc + host) * info.pue[a] / J_PER_KWH
        assert _close(r["energy_j"][k], acc) and _close(r["host_energy_j"][k], host)
        assert _close(r["facility_energy_j"][k] / J_PER_KWH, kwh)
        assert _close(r["energy_cost_usd"][k], kwh * info.usd_per_kwh[a])
        assert _close(r["co2e_g"][k], kwh * info.gco2e_per_kwh[a])
        assert _close(r["capex_usd"][k], info.capex_usd_per_s[a] * span_s)


def test_results_written_before_the_cost_columns_still_summarize() -> None:
    """A `devices/` dataset without the cost columns (older results) reads as zero cost."""
    info = DeviceInfo(
        accelerator_id=np.arange(2, dtype=np.int32),
        host_id=np.zeros(2, dtype=np.int32),
        rack_id=np.zeros(2, dtype=np.int32),
        region=np.zeros(2, dtype=np.int32),
        chip=np.zeros(2, dtype=np.int32),
        service=np.zeros(2, dtype=np.int32),
        idle_w=np.full(2, 10.0),
        busy_w=np.full(2, 50.0),
        capex_usd_per_s=np.full(2, 1.0),
    )
    counters = DeviceCounters(
        accelerator_id=info.accelerator_id,
        busy_ns=np.array([5, 7], np.int64),
        batches=np.zeros(2, np.int64),
        work_units=np.zeros(2, np.int64),
        peak_memory_bytes=np.zeros(2, np.int64),
    )
    _, rows = _summary(info, [counters], [10])
    old = rows.drop_columns([c for c in COST_COLUMNS if c in rows.column_names])
    new, before = _totals(rows, 10), _totals(old, 10)
    assert new.keys() == before.keys()
    for key, totals in before.items():
        assert totals.energy_j == new[key].energy_j
        assert set(totals.cost.values()) == {0.0} and new[key].cost["capex_usd"] > 0
