"""Device counters of the compiled LLM fleet's replicas at every metrics boundary of a span.

:func:`.fleetkernel.run_span` records every replica's scheduler scalars at each metrics
boundary it crosses; the samples there must be what ``LLMReplicaCell.counter_values``
(``cell.replica_values``) gives for a scheduler holding those scalars, at the cell's bound.
Doing that replica by replica through Python objects cost ~20 ms for the 442 boundaries of
the Azure trace on 8 replicas; here all boundaries and replicas are computed at once with
exact integer arithmetic. The attosecond sums do not fit int64 (2**63 as is 9.2 s), so they
are kept as the kernel keeps them, nanoseconds plus an attosecond remainder: with
``busy_as = hi * 1e9 + lo`` (0 <= lo < 1e9) and likewise the part of the running iteration
past the bound, ``(busy_as - tail_as) // 1e9 == (hi - tail_hi) + (lo - tail_lo) // 1e9``.
The KV token integral (up to ~2**92 as) is divided by 1e18 in Python integers (a correctly
rounded float, as ``replica_values`` divides), one value per replica and boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.cell import DeviceCounters
from mtia_cluster.engine.llm import kernel as k
from mtia_cluster.engine.llm.cell import LLMReplicaCell, counters_columns
from mtia_cluster.engine.llm.costs import AS_PER_NS, AS_PER_S


@dataclass
class BoundaryValues:
    """Per boundary q: `every[q]` the ``cell.EVERY`` columns (one row each, one value per
    replica), `ints[q]` the integer ``cell.LEAD`` columns (all but ``kv_token_s``), `kv[q]`
    ``kv_token_s`` (``counters_columns``'s arguments)."""

    every: np.ndarray  # (boundaries, 5, replicas) int64
    ints: np.ndarray  # (boundaries, 7, replicas) int64
    kv: np.ndarray  # (boundaries, replicas) float64


def boundary_values(
    cells: list[LLMReplicaCell],
    snap: np.ndarray,
    adv: np.ndarray,
    base: list[tuple[int, int, int]],
) -> BoundaryValues:
    """The ``replica_values`` of `cells` at each boundary: `snap` (boundaries, replicas,
    scalars) the kernel's scalars, `adv` the last advance bound of each boundary, `base` the
    ``jitglue.accumulated`` sums at packing. A cell's bound only grows (``show``)."""
    q, n = snap.shape[0], snap.shape[1]
    start = np.array([c.bound_ns for c in cells], np.int64)
    until = np.maximum(np.maximum.accumulate(adv.astype(np.int64))[:, None], start[None, :])
    le_ns, le_rem = snap[:, :, k.LE_NS], snap[:, :, k.LE_REM]
    ahead = (le_ns > until) | ((le_ns == until) & (le_rem > 0))  # iteration runs past it
    tail_hi, tail_lo = np.where(ahead, le_ns - until, 0), np.where(ahead, le_rem, 0)
    every = np.empty((q, 5, n), np.int64)
    parts = [[divmod(b[j], AS_PER_NS) for b in base] for j in range(3)]
    for row, j, ns, rem in ((0, 0, k.BUSY_NS, k.BUSY_REM), (4, 1, k.MEM_NS, k.MEM_REM)):
        hi = np.array([p[0] for p in parts[j]], np.int64) + snap[:, :, ns]
        lo = np.array([p[1] for p in parts[j]], np.int64) + snap[:, :, rem]
        mask = True if row == 0 else snap[:, :, k.LASTMEM] != 0
        every[:, row] = hi - np.where(mask, tail_hi, 0)
        every[:, row] += (lo - np.where(mask, tail_lo, 0)) // AS_PER_NS
    every[:, 1], every[:, 2] = snap[:, :, k.IT], snap[:, :, k.TOKENS]
    every[:, 3] = _peaks(cells, snap[:, :, k.MAXUSED])
    ints = np.zeros((q, 7, n), np.int64)
    ints[:, 0] = [c.scheduler.limits.num_blocks * c.scheduler.limits.block_size for c in cells]
    ints[:, 1], ints[:, 2] = snap[:, :, k.MAXKV], snap[:, :, k.PREEMPTED]
    ints[:, 3] = snap[:, :, k.QUERIED]
    ints[:, 4] = [c.scheduler.reused_tokens for c in cells]  # no prefix cache in a span
    tail = tail_hi * AS_PER_NS + tail_lo  # < 2**62: one iteration at most
    kv = [
        (b + (h << 31) + lo - held * t) / AS_PER_S
        for b, h, lo, held, t in zip(
            [b[2] for b in base] * q,
            snap[:, :, k.KV_HI].ravel().tolist(),
            snap[:, :, k.KV_LO].ravel().tolist(),
            snap[:, :, k.HELD].ravel().tolist(),
            tail.ravel().tolist(),
            strict=True,
        )
    ]
    return BoundaryValues(every, ints, np.array(kv, np.float64).reshape(q, n))


def _peaks(cells: list[LLMReplicaCell], used: np.ndarray) -> np.ndarray:
    """``peak_memory_bytes`` of each replica (column) for `used` peak KV blocks, computed
    as ``replica_values`` does (float bytes, truncated) once per distinct value."""
    out = np.empty(used.shape, np.int64)
    for i, cell in enumerate(cells):
        values, where = np.unique(used[:, i], return_inverse=True)
        bs, per_token = cell.scheduler.limits.block_size, cell.kv_bytes_per_token
        n, weight = len(cell.accelerator_ids), cell.weight_bytes
        peaks = [int(weight + u * bs * per_token / n) for u in values.tolist()]
        out[:, i] = np.array(peaks, np.int64)[where.reshape(-1)]
    return out


def shard_counters(
    values: BoundaryValues, q: int, ids: np.ndarray, sizes: list[int], replicas: slice
) -> DeviceCounters:
    """The counters at boundary `q` of the `replicas` of one shard (accelerators `ids`,
    `sizes` per replica), as the shard's ``device_counters`` builds them."""
    every, ints = values.every[q][:, replicas], values.ints[q][:, replicas]
    return counters_columns(ids, sizes, every, ints, values.kv[q, replicas])
