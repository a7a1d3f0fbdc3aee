"""The cell protocol and the struct-of-arrays types that cross a cell's boundary.

A *cell* (DESIGN §3) is the smallest group of hosts that is simulated exactly on its own: an
R&R host, an LLM replica, a prefill/decode pool pair. Time advances in windows of the
router's report interval. In each window the driver

1. ``submit``s the requests the router sent to the cell (all with ``arrival_ns`` inside the
   window, sorted by ``(arrival_ns, request_id)``),
2. calls ``advance(until_ns)``: the cell processes every event at time ``< until_ns`` and
   returns the requests that finished before ``until_ns``,
3. reads ``report()`` (the router's view for the next window) and ``device_counters()``.

A cell must give identical results whether it is advanced in one long call or window by
window: events are ordered by (time, source, sequence), never by how calls were cut.
Nothing here knows about shards, processes or Ray.

All times are int64 nanoseconds. Services and regions are int32 indices into the name tables
held by the simulation (``Simulation.services``, ``Simulation.regions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from mtia_cluster.catalog import Catalog
    from mtia_cluster.config.scenario import LLMSettings

# Request status codes (DESIGN §4 `requests.status`).
STATUS_OK = 0
STATUS_DROPPED = 1
STATUS_REJECTED = 2
STATUS_FAILED = 3
STATUS_NAMES = ("ok", "dropped", "rejected", "failed")

_T = TypeVar("_T", bound="Columns")


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """Field names of a dataclass, in declaration order (memoized per class)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class Columns:
    """Helpers shared by the struct-of-arrays dataclasses: length, slicing, concatenation."""

    def __len__(self) -> int:
        return len(getattr(self, _names(type(self))[0]))

    def take(self: _T, index: Any) -> _T:
        """Rows selected by a slice, an integer index array or a boolean mask."""
        return type(self)(**{n: getattr(self, n)[index] for n in _names(type(self))})

    @classmethod
    def concat(cls: type[_T], parts: list[_T]) -> _T:
        """All rows of `parts`, in order."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in _names(cls)})

    @classmethod
    def empty(cls: type[_T]) -> _T:
        """Zero rows with the right dtypes."""
        return cls(**{n: np.zeros(0, dtype=_DTYPES[n]) for n in _names(cls)})

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> array (no copy)."""
        return {n: getattr(self, n) for n in _names(type(self))}


_DTYPES: dict[str, type] = {
    "request_id": np.int64,
    "arrival_ns": np.int64,
    "service": np.int32,
    "region": np.int32,
    "items": np.int32,
    "input_tokens": np.int32,
    "output_tokens": np.int32,
    "session_id": np.int64,
    "prefix_blocks": object,
    "host_id": np.int32,
    "accelerator_id": np.int32,
    "start_ns": np.int64,
    "first_token_ns": np.int64,
    "finish_ns": np.int64,
    "status": np.int8,
    "batch_size": np.int32,
    "busy_ns": np.int64,
    "memory_bound_ns": np.int64,
    "batches": np.int64,
    "work_units": np.int64,
    "peak_memory_bytes": np.int64,
    "preemptions": np.int32,
    "cached_tokens": np.int64,
    "kv_capacity_tokens": np.int64,
    "kv_token_s": np.float64,
    "kv_peak_tokens": np.int64,
    "prefix_queried_tokens": np.int64,
    "prefix_cached_tokens": np.int64,
    "kv_transfers": np.int64,
    "kv_transfer_bytes": np.int64,
    "ready_ns": np.int64,
    "unit": np.int64,
    "origin_region": np.int32,
    "spill_rtt_ns": np.int64,
    "network_ns": np.int64,
}


@dataclass
class RequestBatch(Columns):
    """Requests as parallel arrays (one row per request), the trace's columns as indices.

    ``items`` is 0 for LLM requests; ``input_tokens``/``output_tokens`` are 0 for R&R;
    ``session_id`` is -1 when the trace has none. ``prefix_blocks`` (object) holds each
    request's prompt hash chain (``traces.columns.PrefixChain``) or None.
    """

    request_id: np.ndarray  # int64
    arrival_ns: np.ndarray  # int64
    service: np.ndarray  # int32 index into Simulation.services
    region: np.ndarray  # int32 index into Simulation.regions
    items: np.ndarray  # int32
    input_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32
    session_id: np.ndarray  # int64
    prefix_blocks: np.ndarray  # object: PrefixChain or None


@dataclass
class Completed(Columns):
    """Finished (or rejected/dropped/failed) requests: DESIGN §4 `requests` columns.

    ``host_id``/``accelerator_id`` are global indices (for a multi-accelerator replica, its
    first accelerator). ``first_token_ns`` equals ``finish_ns`` for R&R. ``batch_size`` is the
    number of requests in the batch (R&R) or in the iteration that produced the first token
    (LLM). ``preemptions`` counts the times an LLM request was evicted and recomputed,
    ``cached_tokens`` its prompt tokens reused from the prefix cache (0 for R&R).
    ``origin_region`` is the request's home region and ``spill_rtt_ns`` the round trip it
    paid when the global router served it in another region (``region``; then first token
    and finish include the RTT; engine/global_routing.py), else its region and 0.
    ``network_ns`` is the part of its latency spent on the network: scale-out fabric
    transfers plus ``spill_rtt_ns`` (docs/network.md, "Per-request network time"; a cell
    that moves nothing over the fabric leaves it 0). Latency,
    TTFT/TPOT/queue times, slo_ok and names are derived by `results` from these.
    """

    request_id: np.ndarray  # int64
    service: np.ndarray  # int32
    region: np.ndarray  # int32
    host_id: np.ndarray  # int32
    accelerator_id: np.ndarray  # int32
    arrival_ns: np.ndarray  # int64
    start_ns: np.ndarray  # int64, service start on the accelerator
    first_token_ns: np.ndarray  # int64
    finish_ns: np.ndarray  # int64
    status: np.ndarray  # int8, STATUS_*
    batch_size: np.ndarray  # int32
    items: np.ndarray  # int32
    input_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32
    preemptions: np.ndarray  # int32
    cached_tokens: np.ndarray  # int64
    origin_region: np.ndarray  # int32, home region (== region unless spilled)
    spill_rtt_ns: np.ndarray  # int64, round trip to the serving region (0 unless spilled)
    network_ns: np.ndarray = field(default_factory=lambda: _UNSET)  # int64, fabric + RTT

    def __post_init__(self) -> None:
        """A cell that gives no network time moved nothing over the fabric: zeros."""
        if self.network_ns is _UNSET:
            self.network_ns = np.zeros(len(self.request_id), dtype=np.int64)


_UNSET: np.ndarray = np.zeros(0, dtype=np.int64)  # a DeviceCounters field not given


@dataclass
class DeviceCounters(Columns):
    """Cumulative per-accelerator counters, from time 0 up to the last ``advance`` bound.

    ``busy_ns`` counts only the part of each busy period before ``until_ns`` (a batch running
    across a window boundary is split between the windows), so differences between two calls
    are exact interval figures. ``work_units`` is items (R&R) or tokens (LLM).
    ``memory_bound_ns`` is the part of ``busy_ns`` spent in memory-bound work (LLM
    iterations whose memory time exceeds their compute time, perf/llm.py); cells that do
    not split their busy time leave it zero (their pool's power says which bound it is,
    cost/power.py).
    """

    accelerator_id: np.ndarray  # int32, global
    busy_ns: np.ndarray  # int64
    batches: np.ndarray  # int64, batches/iterations started
    work_units: np.ndarray  # int64
    peak_memory_bytes: np.ndarray  # int64
    memory_bound_ns: np.ndarray = field(default_factory=lambda: _UNSET)  # int64, of busy_ns
    # LLM replica statistics, on the replica's lead (first) accelerator, 0 elsewhere and for
    # R&R; zeros when a cell does not give them (engine/llm/kvstats.py, docs/results.md)
    kv_capacity_tokens: np.ndarray = field(default_factory=lambda: _UNSET)  # int64
    kv_token_s: np.ndarray = field(default_factory=lambda: _UNSET)  # float64, integral
    kv_peak_tokens: np.ndarray = field(default_factory=lambda: _UNSET)  # int64
    preemptions: np.ndarray = field(default_factory=lambda: _UNSET)  # int32
    prefix_queried_tokens: np.ndarray = field(default_factory=lambda: _UNSET)  # int64
    prefix_cached_tokens: np.ndarray = field(default_factory=lambda: _UNSET)  # int64
    kv_transfers: np.ndarray = field(default_factory=lambda: _UNSET)  # int64, sent
    kv_transfer_bytes: np.ndarray = field(default_factory=lambda: _UNSET)  # int64, sent

    def __post_init__(self) -> None:
        """Counters a cell did not give are zeros (one per accelerator)."""
        n = len(self.accelerator_id)
        for name in ("memory_bound_ns", *LLM_COUNTERS):
            if getattr(self, name) is _UNSET:
                setattr(self, name, np.zeros(n, dtype=_DTYPES[name]))


LLM_COUNTERS = (
    "kv_capacity_tokens",
    "kv_token_s",
    "kv_peak_tokens",
    "preemptions",
    "prefix_queried_tokens",
    "prefix_cached_tokens",
    "kv_transfers",
    "kv_transfer_bytes",
)


@dataclass(frozen=True)
class LoadReport:
    """What a cell tells the router at a window boundary."""

    outstanding: int  # requests submitted and not yet completed
    capacity_weight: float  # relative capacity (e.g. accelerators x speed), for weighting


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell factory needs to build one cell (built by the simulation).

    ``llm`` is the pool's typed, load-time-validated serving settings (LLM cells only);
    ``catalog`` is the loaded catalog; ``accelerator_ids``/``host_ids`` are global indices
    owned by this cell.
    """

    cell_id: int
    region: int
    service: int
    model_name: str
    platform_name: str
    accelerator_ids: tuple[int, ...]
    host_ids: tuple[int, ...]
    seed: int
    llm: LLMSettings
    file: str | None
    field_prefix: str
    catalog: Catalog


@runtime_checkable
class Cell(Protocol):
    """A unit simulated exactly on its own between window boundaries (see module doc)."""

    def submit(self, batch: RequestBatch) -> None:
        """Accept requests routed here; arrivals lie in the current window, sorted."""
        ...

    def advance(self, until_ns: int) -> Completed:
        """Process every event at time < until_ns; return requests finished before it."""
        ...

    def report(self) -> LoadReport:
        """Outstanding requests and capacity weight, as of the last advance."""
        ...

    def device_counters(self) -> DeviceCounters:
        """Cumulative per-accelerator counters up to the last advance bound."""
        ...

    def evict(self, at_ns: int) -> RequestBatch:
        """The cell fails at `at_ns` (right after ``advance(at_ns)``): every request it holds
        and has not returned leaves it (arrival order); it restarts empty (fleet events)."""
        ...


def _column(v: np.ndarray | int, dtype: type, n: int) -> np.ndarray:
    """`v` as a length-n array of `dtype` (a scalar is repeated; an array is not copied)."""
    if isinstance(v, np.ndarray) and v.ndim == 1:
        return v if v.dtype == dtype else v.astype(dtype)
    return np.full(n, v, dtype=dtype)


def completed_from(
    req: RequestBatch,
    *,
    host_id: np.ndarray | int,
    accelerator_id: np.ndarray | int,
    start_ns: np.ndarray,
    first_token_ns: np.ndarray,
    finish_ns: np.ndarray,
    status: np.ndarray | int = STATUS_OK,
    batch_size: np.ndarray | int = 1,
    preemptions: np.ndarray | int = 0,
    cached_tokens: np.ndarray | int = 0,
    network_ns: np.ndarray | int = 0,
) -> Completed:
    """Build Completed rows for `req` (same order), broadcasting scalar arguments."""
    n = len(req)
    if n == 0:
        return Completed.empty()

    def col(v: np.ndarray | int, dtype: type) -> np.ndarray:
        return _column(v, dtype, n)

    return Completed(
        request_id=req.request_id,
        service=req.service,
        region=req.region,
        host_id=col(host_id, np.int32),
        accelerator_id=col(accelerator_id, np.int32),
        arrival_ns=req.arrival_ns,
        start_ns=col(start_ns, np.int64),
        first_token_ns=col(first_token_ns, np.int64),
        finish_ns=col(finish_ns, np.int64),
        status=col(status, np.int8),
        batch_size=col(batch_size, np.int32),
        items=req.items,
        input_tokens=req.input_tokens,
        output_tokens=req.output_tokens,
        preemptions=col(preemptions, np.int32),
        cached_tokens=col(cached_tokens, np.int64),
        origin_region=req.region,
        spill_rtt_ns=np.zeros(n, dtype=np.int64),
        network_ns=col(network_ns, np.int64),
    )


def make_requests(
    arrival_ns: np.ndarray,
    *,
    request_id: np.ndarray | None = None,
    service: np.ndarray | int = 0,
    region: np.ndarray | int = 0,
    items: np.ndarray | int = 1,
    input_tokens: np.ndarray | int = 0,
    output_tokens: np.ndarray | int = 0,
    session_id: np.ndarray | int = -1,
    prefix_blocks: np.ndarray | None = None,
) -> RequestBatch:
    """Convenience constructor (tests, synthetic workloads): scalars are broadcast."""
    arrival = np.asarray(arrival_ns, dtype=np.int64)
    n = len(arrival)

    def col(v: np.ndarray | int, dtype: type) -> np.ndarray:
        return _column(v, dtype, n)

    rid = np.arange(n, dtype=np.int64) if request_id is None else col(request_id, np.int64)
    return RequestBatch(
        request_id=rid,
        arrival_ns=arrival,
        service=col(service, np.int32),
        region=col(region, np.int32),
        items=col(items, np.int32),
        input_tokens=col(input_tokens, np.int32),
        output_tokens=col(output_tokens, np.int32),
        session_id=col(session_id, np.int64),
        prefix_blocks=np.full(n, None, dtype=object) if prefix_blocks is None else prefix_blocks,
    )


def sorted_by_request_id(parts: list[Completed]) -> Completed:
    """All rows of `parts` ordered by request_id (ids are unique).

    When the ids are a dense range (every trace the project writes or imports numbers its
    rows 0..n-1), the rows are placed at ``id - min`` directly: O(n), no sort (one
    concatenation per column, then one placement: a run emits hundreds of small parts).
    Otherwise a stable argsort of the concatenation.
    """
    rows = Completed.concat([p for p in parts if len(p)])
    n = len(rows)
    if n == 0:
        return rows
    at = rows.request_id - int(rows.request_id.min())
    seen = np.zeros(n, dtype=bool)
    if int(at.max()) < n:
        seen[at] = True
    if not seen.all():  # not a dense range, or a duplicate id left a hole
        return rows.take(np.argsort(rows.request_id, kind="stable"))
    out = {}
    for k, col in rows.columns().items():
        out[k] = np.empty(n, dtype=col.dtype)
        out[k][at] = col
    return Completed(**out)


def rejected_at_arrival(batch: RequestBatch) -> Completed:
    """`batch` as requests rejected on arrival (no pool serves them): every time = arrival."""
    return completed_from(
        batch,
        host_id=-1,
        accelerator_id=-1,
        start_ns=batch.arrival_ns,
        first_token_ns=batch.arrival_ns,
        finish_ns=batch.arrival_ns,
        status=STATUS_REJECTED,
        batch_size=0,
    )
