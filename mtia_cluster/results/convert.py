"""Engine struct-of-arrays types -> Arrow tables of the results schema.

`completed_to_table` turns a :class:`~mtia_cluster.engine.cell.Completed` (int index columns)
into `requests` rows with names, ``latency_ns`` and ``slo_ok``. `DeviceTracker` turns the
engine's cumulative :class:`~mtia_cluster.engine.cell.DeviceCounters` into `devices` rows per
interval, with energy from a power model that follows utilization per component
(cost/power.py): ``idle_w * interval_s + (busy_w - idle_w) * compute_bound_s +
(memory_w - idle_w) * memory_bound_s`` for the accelerator, the same form for its share of
the host (``host_idle_w``, ``host_busy_w``), then PUE, price, carbon and amortized capex.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.cost.power import device_rates
from mtia_cluster.engine.cell import (
    LLM_COUNTERS,
    STATUS_NAMES,
    STATUS_OK,
    Completed,
    DeviceCounters,
)
from mtia_cluster.errors import UserError
from mtia_cluster.results.schema import (
    DEVICE_SCHEMA,
    REQUEST_COLUMNS,
    REQUEST_FILE_SCHEMA,
    dictionary,
)
from mtia_cluster.results.slo import slo_ok
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.units import J_PER_KWH, NS_PER_S

# cumulative DeviceCounters written per interval as differences (dtype of the running total)
_DIFFED = {
    "kv_token_s": np.float64,
    "preemptions": np.int64,
    "prefix_queried_tokens": np.int64,
    "prefix_cached_tokens": np.int64,
    "kv_transfers": np.int64,
    "kv_transfer_bytes": np.int64,
}


def _check_index(name: str, values: np.ndarray, size: int) -> None:
    """Indices must point into their name table."""
    if len(values) and (int(values.min()) < 0 or int(values.max()) >= size):
        raise UserError(
            f"{name} index outside the name table of {size} entries",
            field=name,
            value=(int(values.min()), int(values.max())),
        )


def _slo_flags(c: Completed, services: Sequence[str], slos: Mapping[str, ServiceSLO]) -> np.ndarray:
    """`slo_ok` per row, each service with its own SLO."""
    out = np.zeros(len(c), dtype=bool)
    for index in np.unique(c.service):
        rows = c.service == index
        out[rows] = slo_ok(
            slos.get(services[int(index)]),
            status=c.status[rows],
            arrival_ns=c.arrival_ns[rows],
            first_token_ns=c.first_token_ns[rows],
            finish_ns=c.finish_ns[rows],
            output_tokens=c.output_tokens[rows],
        )
    return out


def rows_by_region(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """`requests` rows split by their `region` column, regions in order of first appearance
    (for tables that did not come from engine rows; those split with `completed_by_region`)."""
    region = table["region"].cast(pa.string())
    return [(name, table.filter(pc.equal(region, name))) for name in pc.unique(region).to_pylist()]


def completed_by_region(completed: Completed) -> list[tuple[int, Completed]]:
    """Engine rows split by their region index, in region order, each region's rows in their
    order in `completed`: one stable counting pass over the int codes (no per-region scan of
    every row), and no copy at all when the rows are of one region."""
    c = completed
    if len(c) == 0:
        return []
    first = int(c.region[0])
    if bool(np.all(c.region == first)):
        return [(first, c)]
    counts = np.bincount(c.region)
    order = np.argsort(_narrow_codes(c.region, len(counts)), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [(r, c.take(order[bounds[r] : bounds[r + 1]])) for r in np.flatnonzero(counts).tolist()]


def _narrow_codes(codes: np.ndarray, n: int) -> np.ndarray:
    """Non-negative codes below `n` in the narrowest integer type: numpy's stable sort of
    8- and 16-bit keys is a radix sort (~4-8x faster than its merge sort of int32 for a
    131,072-row flush), and a stable order of the same keys is the same permutation."""
    if n <= 256:
        return codes.astype(np.uint8)
    if n <= 32768:
        return codes.astype(np.int16)
    return codes


def completed_to_table(
    completed: Completed,
    *,
    services: Sequence[str],
    regions: Sequence[str],
    slos: Mapping[str, ServiceSLO],
) -> pa.Table:
    """`requests` rows (all DESIGN §4 columns, `region` included) for `completed`."""
    c = completed
    _check_index("service", c.service, len(services))
    _check_index("region", c.region, len(regions))
    _check_index("origin_region", c.origin_region, len(regions))
    if len(c.status) and (int(c.status.min()) < 0 or int(c.status.max()) >= len(STATUS_NAMES)):
        raise UserError("unknown request status code", field="status", value=int(c.status.max()))
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(c.request_id, pa.int64()),
        "service": dictionary(services, pa.array(c.service)),
        "region": dictionary(regions, pa.array(c.region)),
        "host_id": pa.array(c.host_id, pa.int32()),
        "accelerator_id": pa.array(c.accelerator_id, pa.int32()),
        "arrival_ns": pa.array(c.arrival_ns, pa.int64()),
        "start_ns": pa.array(c.start_ns, pa.int64()),
        "first_token_ns": pa.array(c.first_token_ns, pa.int64()),
        "finish_ns": pa.array(c.finish_ns, pa.int64()),
        "latency_ns": pa.array(c.finish_ns - c.arrival_ns, pa.int64()),
        **_llm_times(c),
        "status": dictionary(STATUS_NAMES, pa.array(c.status)),
        "batch_size": pa.array(c.batch_size, pa.int32()),
        "items": pa.array(c.items, pa.int32()),
        "input_tokens": pa.array(c.input_tokens, pa.int32()),
        "output_tokens": pa.array(c.output_tokens, pa.int32()),
        "preemptions": pa.array(c.preemptions, pa.int32()),
        "cached_tokens": pa.array(c.cached_tokens, pa.int64()),
        "origin_region": dictionary(regions, pa.array(c.origin_region)),
        "spill_rtt_ns": pa.array(c.spill_rtt_ns, pa.int64()),
        "network_ns": pa.array(c.network_ns, pa.int64()),
        "slo_ok": pa.array(_slo_flags(c, services, slos), pa.bool_()),
    }
    return pa.table([cols[n] for n in REQUEST_COLUMNS], names=list(REQUEST_COLUMNS))


def _llm_times(c: Completed) -> dict[str, pa.Array]:
    """`ttft_ns`, `tpot_ns` (LLM requests finished ok; TPOT needs 2+ output tokens) and
    `queue_ns` (requests finished ok: arrival to service start); null elsewhere."""
    ok = c.status == STATUS_OK
    llm = ok & (c.output_tokens > 0)
    steps = c.output_tokens.astype(np.int64) - 1
    decoded = llm & (steps > 0)
    tpot = (c.finish_ns - c.first_token_ns) / np.maximum(steps, 1)
    return {
        "ttft_ns": pa.array(c.first_token_ns - c.arrival_ns, pa.int64(), mask=~llm),
        "tpot_ns": pa.array(tpot, pa.float64(), mask=~decoded),
        "queue_ns": pa.array(c.start_ns - c.arrival_ns, pa.int64(), mask=~ok),
    }


def request_file_table(table: pa.Table) -> pa.Table:
    """The columns stored in a `requests` part file (all but the partition key `region`)."""
    return table.select(REQUEST_FILE_SCHEMA.names).cast(REQUEST_FILE_SCHEMA)


@dataclass(frozen=True)
class DeviceInfo:
    """Static facts about the accelerators one shard owns (parallel arrays, one per device).

    `service` is the index of the service placed on the accelerator (-1: none); `chip`,
    `region`, `service` index into the name tables. `idle_w`/`busy_w` are the power at zero
    and full (compute-bound) utilization. The cost rates (cost/power.py) are optional: by
    default memory-bound work draws `busy_w`, and host, capex, price and carbon are zero.
    """

    accelerator_id: np.ndarray  # int32, global
    host_id: np.ndarray  # int32
    rack_id: np.ndarray  # int32
    region: np.ndarray  # int32 index into regions
    chip: np.ndarray  # int32 index into chips
    service: np.ndarray  # int32 index into services, -1 when idle
    idle_w: np.ndarray  # float64
    busy_w: np.ndarray  # float64
    memory_w: np.ndarray = None  # type: ignore[assignment]  # float64; default busy_w
    host_idle_w: np.ndarray = None  # type: ignore[assignment]  # float64; default 0
    host_busy_w: np.ndarray = None  # type: ignore[assignment]
    capex_usd_per_s: np.ndarray = None  # type: ignore[assignment]
    pue: np.ndarray = None  # type: ignore[assignment]  # default 1
    usd_per_kwh: np.ndarray = None  # type: ignore[assignment]
    gco2e_per_kwh: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.accelerator_id)
        defaults = {"memory_w": self.busy_w, "pue": np.ones(n)}
        for name in COST_RATES:
            if getattr(self, name) is None:
                value = defaults.get(name, np.zeros(n))
                object.__setattr__(self, name, np.asarray(value, dtype=np.float64))


COST_RATES = (
    "memory_w",
    "host_idle_w",
    "host_busy_w",
    "capex_usd_per_s",
    "pue",
    "usd_per_kwh",
    "gco2e_per_kwh",
)


class DeviceTracker:
    """Differences cumulative counters into per-interval `devices` rows."""

    def __init__(
        self,
        info: DeviceInfo,
        *,
        regions: Sequence[str],
        chips: Sequence[str],
        services: Sequence[str],
    ) -> None:
        self.info = info
        self.regions, self.chips, self.services = list(regions), list(chips), list(services)
        n = len(info.accelerator_id)
        ids = info.accelerator_id.astype(np.int64)
        self._lo = int(ids.min()) if n else 0
        span = int(ids.max()) - self._lo + 1 if n else 1
        self._lookup = np.full(span, -1, dtype=np.int64)  # accelerator id - lo -> position
        self._lookup[ids - self._lo] = np.arange(n)
        self._prev = np.zeros((4, n), dtype=np.int64)  # cumulative busy, batches, work, memory
        # cumulative LLM replica counters differenced per interval (the rest are levels)
        self._prev_llm = {name: np.zeros(n, dtype=_DIFFED[name]) for name in _DIFFED}

    def _order(self, counters: DeviceCounters) -> np.ndarray | slice:
        """The rows of `counters` in the tracker's device order: all of them as they are when
        they already come in that order (the engine sorts its counters by id), else a
        permutation through a lookup table over the id range (ids are dense: O(n), no sort)."""
        ids = counters.accelerator_id
        mine = self.info.accelerator_id
        if len(ids) == len(mine) and np.array_equal(ids, mine):
            return slice(None)
        pos = self._lookup[np.clip(ids.astype(np.int64) - self._lo, 0, len(self._lookup) - 1)]
        foreign = (ids < self._lo) | (ids >= self._lo + len(self._lookup)) | (pos < 0)
        if foreign.any():
            raise UserError(
                "counters for an accelerator this shard does not own",
                field="accelerator_id",
                value=int(ids[np.flatnonzero(foreign)[0]]),
            )
        if len(pos) != len(mine) or np.any(np.bincount(pos, minlength=len(mine)) != 1):
            raise UserError(
                "counters must cover every accelerator of the shard",
                field="accelerator_id",
                value=len(pos),
            )
        order = np.empty(len(pos), dtype=np.int64)
        order[pos] = np.arange(len(pos))
        return order

    def interval(self, counters: DeviceCounters, *, start_ns: int, end_ns: int) -> pa.Table:
        """`devices` rows for [start_ns, end_ns) from cumulative counters at end_ns."""
        if end_ns <= start_ns:
            raise UserError(
                "device interval must have end_ns > start_ns",
                field="interval",
                value=(start_ns, end_ns),
            )
        order = self._order(counters)
        busy = counters.busy_ns[order].astype(np.int64) - self._prev[0]
        batches = counters.batches[order].astype(np.int64) - self._prev[1]
        work = counters.work_units[order].astype(np.int64) - self._prev[2]
        memory = counters.memory_bound_ns[order].astype(np.int64) - self._prev[3]
        self._prev[0] += busy
        self._prev[1] += batches
        self._prev[2] += work
        self._prev[3] += memory
        peak = counters.peak_memory_bytes[order]
        # floors of attosecond clocks: never more memory-bound than busy time in an interval
        memory = np.minimum(memory, busy)
        table = self._table(busy, batches, work, peak, np.maximum(memory, 0), start_ns, end_ns)
        return self._with_llm(table, counters, order)

    def _with_llm(
        self, table: pa.Table, counters: DeviceCounters, order: np.ndarray | slice
    ) -> pa.Table:
        """Fill the LLM replica columns: levels as they are, cumulative counters differenced."""
        for name in LLM_COUNTERS:
            value = getattr(counters, name)[order]
            if name in _DIFFED:
                now = value.astype(_DIFFED[name])
                value, self._prev_llm[name] = now - self._prev_llm[name], now
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pa.array(value, table.schema.field(name).type))
        return table

    def _table(
        self,
        busy: np.ndarray,
        batches: np.ndarray,
        work: np.ndarray,
        peak: np.ndarray,
        memory: np.ndarray,
        start_ns: int,
        end_ns: int,
    ) -> pa.Table:
        """Assemble one interval's rows."""
        i = self.info
        n = len(busy)
        span_s = (end_ns - start_ns) / NS_PER_S
        util = busy / float(end_ns - start_ns)
        energy = device_energy_j(i, busy, memory, span_s)
        service = pa.array(i.service.astype(np.int32), mask=i.service < 0)
        cols = [
            pa.array(np.full(n, start_ns, dtype=np.int64)),
            pa.array(np.full(n, end_ns, dtype=np.int64)),
            pa.array(i.accelerator_id, pa.int32()),
            pa.array(i.host_id, pa.int32()),
            pa.array(i.rack_id, pa.int32()),
            dictionary(self.regions, pa.array(i.region)),
            dictionary(self.chips, pa.array(i.chip)),
            pa.DictionaryArray.from_arrays(service, pa.array(self.services, pa.string())),
            pa.array(busy, pa.int64()),
            pa.array(util, pa.float64()),
            pa.array(energy, pa.float64()),
            pa.array(energy / span_s, pa.float64()),
            pa.array(batches, pa.int64()),
            pa.array(work, pa.int64()),
            pa.array(peak, pa.int64()),
            pa.array(memory, pa.int64()),
            *(pa.array(v, pa.float64()) for v in cost_columns(i, busy, energy, span_s)),
        ]
        zeros = np.zeros(n, dtype=np.int64)
        for name in DEVICE_SCHEMA.names[len(cols) :]:  # the LLM columns, see `_with_llm`
            cols.append(pa.array(zeros, DEVICE_SCHEMA.field(name).type))
        return pa.Table.from_arrays(cols, schema=DEVICE_SCHEMA)


def device_energy_j(
    info: DeviceInfo, busy_ns: np.ndarray, memory_ns: np.ndarray, span_s: float
) -> np.ndarray:
    """Accelerator energy over an interval of `span_s`: idle power all along, plus the
    compute-bound and the memory-bound busy time at their own power above idle."""
    compute_s = (busy_ns - memory_ns) / NS_PER_S
    return (
        info.idle_w * span_s
        + (info.busy_w - info.idle_w) * compute_s
        + (info.memory_w - info.idle_w) * (memory_ns / NS_PER_S)
    )


def cost_columns(
    info: DeviceInfo, busy_ns: np.ndarray, energy_j: np.ndarray, span_s: float
) -> tuple[np.ndarray, ...]:
    """host_energy_j, facility_energy_j, energy_cost_usd, co2e_g, capex_usd of one interval
    (the DEVICE_SCHEMA order): the host share follows the accelerator's utilization."""
    host = info.host_idle_w * span_s + (info.host_busy_w - info.host_idle_w) * (busy_ns / NS_PER_S)
    facility = (energy_j + host) * info.pue
    kwh = facility / J_PER_KWH
    capex = info.capex_usd_per_s * span_s
    return host, facility, kwh * info.usd_per_kwh, kwh * info.gco2e_per_kwh, capex


def fleet_device_info(fleet: Any, accelerator_ids: np.ndarray) -> tuple[DeviceInfo, list[str]]:
    """DeviceInfo of `accelerator_ids` of an engine fleet, and the chip names it indexes
    (the fleet's chips, sorted: the same table for every shard of a run)."""
    acc = np.asarray(accelerator_ids, dtype=np.int64)
    chips = sorted(set(fleet.acc_chip))
    code = {c: i for i, c in enumerate(chips)}
    chip_of = np.fromiter((code[c] for c in fleet.acc_chip), np.int32, len(fleet.acc_chip))
    services = fleet.scenario.services
    pool_service = np.array([services.index(p.service) for p in fleet.pools], np.int32)
    info = DeviceInfo(
        accelerator_id=acc.astype(np.int32),
        host_id=np.asarray(fleet.acc_host, dtype=np.int32)[acc],
        rack_id=np.asarray(fleet.acc_rack, dtype=np.int32)[acc],
        region=np.asarray(fleet.acc_region, dtype=np.int32)[acc],
        chip=chip_of[acc],
        service=pool_service[np.asarray(fleet.acc_pool, dtype=np.int64)[acc]],
        **device_rates(fleet, acc),
    )
    return info, chips
