"""An LLM replica as an engine cell (the :class:`~mtia_cluster.engine.cell.Cell` protocol).

The cell owns one :class:`~.scheduler.ReplicaScheduler` and translates between the engine's
struct-of-arrays batches and the scheduler's request positions. ``advance(until_ns)`` runs
every iteration that starts before ``until_ns``; an iteration that started before the bound
may end after it, so requests it finishes are held back until a later ``advance`` passes
their ``finish_ns``. That keeps outputs, reports and counters a function of ``until_ns`` only:
advancing in one call or window by window gives identical rows (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import (
    LLM_COUNTERS,
    STATUS_OK,
    STATUS_REJECTED,
    Completed,
    DeviceCounters,
    LoadReport,
    RequestBatch,
    completed_from,
)
from mtia_cluster.engine.llm.costs import AS_PER_NS, AS_PER_S, IterationCost
from mtia_cluster.engine.llm.kvcache import chains_to_keys
from mtia_cluster.engine.llm.requests import DECODE, DONE
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.llm.stretch import decode_run

# DeviceCounters columns of an LLM replica: the first five on every accelerator, the
# others (replica statistics, engine/llm/kvstats.py) on the lead one (0 elsewhere)
EVERY = ("busy_ns", "batches", "work_units", "peak_memory_bytes", "memory_bound_ns")
LEAD = LLM_COUNTERS  # the LLM-only columns, in the schema's order


def replica_values(
    sched: ReplicaScheduler,
    n: int,
    until_ns: int,
    weight_bytes_per_accelerator: float,
    kv_bytes_per_token: int,
    transfers: tuple[int, int] = (0, 0),
) -> tuple[list[int], list[float]]:
    """The figures of `replica_counters` for one replica of `n` accelerators up to
    `until_ns`: (the `EVERY` columns' values, the `LEAD` columns' values). Busy time and the
    KV token integral leave out the running iteration's part after the bound."""
    tail_as = sched.busy_tail_as(until_ns * AS_PER_NS)
    busy_as = sched.busy_as - tail_as
    memory_as = sched.memory_as - sched.memory_tail_as(until_ns * AS_PER_NS)
    kv_bytes = sched.max_used_blocks * sched.limits.block_size * kv_bytes_per_token
    peak = int(weight_bytes_per_accelerator + kv_bytes / n)
    every = [busy_as // AS_PER_NS, sched.iteration, sched.tokens_done, peak]
    every.append(memory_as // AS_PER_NS)
    lim = sched.limits
    token_as = sched.kv_token_as - sched.kv_held_tokens * tail_as
    lead = [lim.num_blocks * lim.block_size, token_as / AS_PER_S, sched.max_kv_tokens]
    lead += [sched.preempted, sched.queried_tokens, sched.reused_tokens, *transfers]
    return every, lead


def replica_counters(
    sched: ReplicaScheduler,
    accelerator_ids: np.ndarray,
    until_ns: int,
    weight_bytes_per_accelerator: float,
    kv_bytes_per_token: int,
    transfers: tuple[int, int] = (0, 0),
) -> DeviceCounters:
    """Counters of one replica's accelerators up to `until_ns` (all busy in each iteration)."""
    n = len(accelerator_ids)
    values = replica_values(
        sched, n, until_ns, weight_bytes_per_accelerator, kv_bytes_per_token, transfers
    )
    return counters_from(np.asarray(accelerator_ids, dtype=np.int32), [n], [values])


def counters_from(
    ids: np.ndarray, sizes: list[int], values: list[tuple[list[int], list[float]]]
) -> DeviceCounters:
    """DeviceCounters of replicas of `sizes` accelerators (`ids`, in order) from their
    `replica_values` (a fleet's counters are read at every metrics boundary)."""
    every = np.array([v[0] for v in values], np.int64).T.copy()  # one row per column
    ints = np.array([v[1][:1] + v[1][2:] for v in values], np.int64).T.copy()
    kv = np.array([v[1][1] for v in values], np.float64)
    return counters_columns(ids, sizes, every, ints, kv)


def counters_columns(
    ids: np.ndarray, sizes: list[int], every: np.ndarray, ints: np.ndarray, kv: np.ndarray
) -> DeviceCounters:
    """DeviceCounters of replicas of `sizes` accelerators (`ids`, in order) from their
    values by column: `every` one row per `EVERY` column, `ints` one per `LEAD` column but
    ``kv_token_s`` (`kv`), one value per replica in each. Integer columns are int64, the
    KV integral float64."""
    lead_ints = LEAD[:1] + LEAD[2:]
    if len(sizes) == len(ids):  # one accelerator per replica: every one is a lead
        cols = dict(zip(EVERY, every, strict=True))
        cols.update(zip(lead_ints, ints, strict=True))
        cols[LEAD[1]] = kv
        return DeviceCounters(accelerator_id=ids, **cols)
    sizes_a = np.array(sizes, np.int64)
    cols = {name: np.repeat(every[j], sizes_a) for j, name in enumerate(EVERY)}
    lead = np.concatenate(([0], np.cumsum(sizes_a)[:-1]))
    for name, values in (*zip(lead_ints, ints, strict=True), (LEAD[1], kv)):
        col = np.zeros(len(ids), dtype=values.dtype)
        col[lead] = values
        cols[name] = col
    return DeviceCounters(accelerator_id=ids, **cols)


def counters_of(cells: list[LLMReplicaCell], ids: np.ndarray) -> DeviceCounters:
    """``DeviceCounters.concat([c.device_counters() for c in cells])``, column by column
    (`ids`: the cells' accelerator ids, in order)."""
    sizes = [len(c.accelerator_ids) for c in cells]
    return counters_from(ids, sizes, [c.counter_values() for c in cells])


NEVER_NS = 2**62  # quiet_until of a replica with nothing in flight


def iteration_floor_as(cost: IterationCost) -> int:
    """The shortest iteration of any token count >= 1 with no context (iteration time never
    shrinks with context or token pairs: their coefficients are checked non-negative)."""
    return min(
        max(cost.compute_base_as[t], cost.memory_base_as[t]) + cost.other_as[t]
        for t in range(1, cost.max_tokens + 1)
    )


def fewest_iterations_left(sched: ReplicaScheduler) -> int:
    """The fewest iterations before some unfinished request of `sched` can finish: an
    iteration samples at most one token of a request, so a decoder needs its iterations to
    its finish and any other request (prefilling, waiting, preempted: it keeps its sampled
    tokens) at least its tokens still to sample; 1 if some request is not yet queued."""
    if len(sched.running) + len(sched.waiting) < sched.outstanding:
        return 1
    it, state, finish_iter = sched.iteration, sched.state, sched.finish_iter
    outputs, generated = sched.outputs, sched.generated
    return min(
        finish_iter[r] - it if state[r] == DECODE else outputs[r] - generated[r]
        for r in chain(sched.running, sched.waiting)
    )


class Rows:
    """Growable columns of the submitted requests (capacity doubling), by scheduler position."""

    def __init__(self) -> None:
        self._cols = RequestBatch.empty().columns()
        self._n = 0

    def append(self, batch: RequestBatch) -> None:
        end = self._n + len(batch)
        for name, new in batch.columns().items():
            col = self._cols[name]
            if end > len(col):
                grown = np.empty(max(end, 2 * len(col), 64), dtype=col.dtype)
                grown[: self._n] = col[: self._n]
                self._cols[name] = col = grown
            col[self._n : end] = new
        self._n = end

    def take(self, positions: np.ndarray) -> RequestBatch:
        return RequestBatch(**{name: col[positions] for name, col in self._cols.items()})

    def drop_prefix(self, cut: int) -> None:
        """Forget the first `cut` rows (later rows shift down)."""
        if cut <= 0:
            return
        for col in self._cols.values():
            col[: self._n - cut] = col[cut : self._n].copy()
        self._n -= cut


class LLMReplicaCell:
    """One LLM replica (tp x pp accelerators) serving requests with continuous batching."""

    def __init__(
        self,
        scheduler: ReplicaScheduler,
        *,
        accelerator_ids: np.ndarray,
        host_id: int,
        weight_bytes_per_accelerator: float = 0.0,
        kv_bytes_per_token: int = 0,
        compact_after: int | None = 4096,
    ) -> None:
        """`compact_after`: forget returned requests once this many have piled up (None:
        keep all, e.g. to inspect the scheduler afterwards)."""
        self.scheduler = scheduler
        self.compact_after = compact_after
        self._next_compact = compact_after or 0
        # of requests no longer held (compaction, failures)
        self._forgotten = {"preemptions": 0, "cached_tokens": 0, "prompt_tokens": 0}
        self._lost_prefixes: list[tuple[int, int]] = []  # prefix events of a failed scheduler
        self._submitted = 0
        self.accelerator_ids = np.asarray(accelerator_ids, dtype=np.int32)
        self.host_id = host_id
        self.weight_bytes = weight_bytes_per_accelerator
        self.kv_bytes_per_token = kv_bytes_per_token
        self._rows = Rows()
        self._seen_finished = 0  # scheduler.finished entries already looked at
        self._held: list[int] = []  # finished after the last bound: not yet returned
        self._returned = 0
        self._until_ns = 0
        self._none = Completed.empty()  # returned (never mutated) by windows finishing nothing
        self._floor: tuple[IterationCost | None, int] = (None, 0)  # see _floor_as

    def submit(self, batch: RequestBatch) -> None:
        """Queue the window's requests (sorted by arrival) on the replica."""
        if len(batch) == 0:
            return
        self._rows.append(batch)
        self._submitted += len(batch)
        sched = self.scheduler
        keys = None
        if sched.limits.prefix_caching:
            keys = chains_to_keys(batch.prefix_blocks, batch.input_tokens, sched.limits.block_size)
        sched.add_many(
            batch.arrival_ns, batch.input_tokens, batch.output_tokens, batch.session_id, keys=keys
        )

    def advance(self, until_ns: int) -> Completed:
        """Run iterations starting before `until_ns`; return requests finished before it."""
        sched = self.scheduler
        sched.run_until(until_ns)
        if until_ns > self._until_ns:
            self._until_ns = until_ns
        if not self._held and len(sched.finished) == self._seen_finished:
            return self._none  # nothing finished: the window costs no row work
        fresh = sched.finished[self._seen_finished :]
        self._seen_finished = len(sched.finished)
        finish = sched.finish_ns
        candidates = self._held + fresh
        done = [r for r in candidates if finish[r] < until_ns]
        self._held = [r for r in candidates if finish[r] >= until_ns]
        self._returned += len(done)
        rows = self._completed(done) if done else self._none
        if self.compact_after is not None and len(sched.finished) >= self._next_compact:
            self._compact()
        return rows

    def fleet_ready(self) -> bool:
        """Whether the compiled fleet (engine/llm/fleet.py) can run this replica: the
        compiled loop applies to it (no prefix cache, no network time) and `advance` has
        looked at every finished request."""
        sched = self.scheduler
        return sched.kernel is not None and self._seen_finished == len(sched.finished)

    def held_positions(self) -> list[int]:
        """Finished requests held back (finish at or after the last bound), by position."""
        return list(self._held)

    def rows_at(self, positions: np.ndarray) -> RequestBatch:
        """The submitted rows at scheduler `positions`."""
        return self._rows.take(positions)

    def absorb(
        self,
        batch: RequestBatch,
        unpack: Callable[[ReplicaScheduler, int], tuple[int, int, int]],
        held: list[int],
        returned: int,
        until_ns: int,
        cut: int,
    ) -> None:
        """Take back the replica from the compiled fleet: `batch` are the rows it was sent
        there (in order), `unpack(sched, cut)` writes the fleet's state of the scheduler into
        it (``jitglue.unpack_compacted``: positions below `cut`, finished and returned, are
        forgotten as `_compact` forgets them, and their sums returned), `held` are the
        finished requests held back after its last bound `until_ns` (positions before the
        cut), and `returned` the requests it returned meanwhile. The same state as
        submitting and advancing window by window, then compacting (`cut` 0: not)."""
        self._rows.append(batch)
        self._rows.drop_prefix(cut)
        self._submitted += len(batch)
        pre, cached, prompt = unpack(self.scheduler, cut)
        self._forgotten["preemptions"] += pre
        self._forgotten["cached_tokens"] += cached
        self._forgotten["prompt_tokens"] += prompt
        self._seen_finished = len(self.scheduler.finished)
        self._held = [r - cut for r in held]
        self._returned += returned
        self._until_ns = max(self._until_ns, until_ns)
        if cut and self.compact_after is not None:
            self._next_compact = len(self.scheduler.finished) + self.compact_after

    def compactable(self) -> bool:
        """Whether returned requests may be forgotten (`compact_after` is set)."""
        return self.compact_after is not None

    @property
    def bound_ns(self) -> int:
        """The last bound the replica was advanced to (its counters' time)."""
        return self._until_ns

    def evict(self, at_ns: int) -> RequestBatch:
        """The replica fails at `at_ns` (right after ``advance(at_ns)``): every request it
        holds and has not returned (queued, prefilling, decoding, preempted, or finished at or
        after `at_ns` and held back) leaves it with its original columns, in arrival order
        (ties by request id). The replica restarts empty and idle at `at_ns` (no KV blocks,
        no prefix-cache entries); its cumulative counters carry over, busy time up to `at_ns`.
        """
        sched = self.scheduler
        unseen = sched.finished[self._seen_finished :]  # only if advance was not called
        live = [r for r, s in enumerate(sched.state) if s != DONE]
        positions = np.array(sorted({*self._held, *unseen, *live}), dtype=np.int64)
        out = self._rows.take(positions)
        out = out.take(np.lexsort((out.request_id, out.arrival_ns)))
        self._forgotten["preemptions"] += sum(sched.preemptions)
        self._forgotten["cached_tokens"] += sum(sched.cached_tokens)
        self._forgotten["prompt_tokens"] += sum(sched.prompt)
        self._lost_prefixes += sched.kv.lost_events()  # its cache is gone
        self.scheduler = sched.restarted(at_ns)
        self._rows = Rows()
        self._seen_finished = 0
        self._held = []
        self._submitted = self._returned  # outstanding drops to zero
        self._next_compact = self.compact_after or 0
        self._until_ns = max(self._until_ns, at_ns)
        return out

    def _compact(self) -> None:
        """Drop the longest prefix of positions that are finished and already returned."""
        sched = self.scheduler
        held, state, cut = set(self._held), sched.state, 0
        while cut < len(state) and state[cut] == DONE and cut not in held:
            cut += 1
        assert self.compact_after is not None
        self._forgotten["preemptions"] += sum(sched.preemptions[:cut])
        self._forgotten["cached_tokens"] += sum(sched.cached_tokens[:cut])
        self._forgotten["prompt_tokens"] += sum(sched.prompt[:cut])
        sched.drop_prefix(cut)
        self._rows.drop_prefix(cut)
        self._held = [r - cut for r in self._held]
        self._seen_finished = len(sched.finished)
        self._next_compact = len(sched.finished) + self.compact_after

    def _completed(self, positions: list[int]) -> Completed:
        """Rows of finished `positions`, by finish time then position; every per-request
        figure gathered in one pass and converted by one array call."""
        sched = self.scheduler
        finish = sched.finish_ns
        if len(positions) > 1:
            positions = sorted(positions, key=lambda r: (finish[r], r))
        start, first, batch = sched.start_ns, sched.first_ns, sched.batch_size
        pre, cached, net = sched.preemptions, sched.cached_tokens, sched.net_as
        rejected = sched.rejected
        cols = np.array(
            [
                [start[r] for r in positions],
                [first[r] for r in positions],
                [finish[r] for r in positions],
                [batch[r] for r in positions],
                [pre[r] for r in positions],
                [cached[r] for r in positions],
                [net[r] // AS_PER_NS for r in positions],
                [rejected[r] for r in positions],
            ],
            dtype=np.int64,
        )
        return completed_from(
            self._rows.take(np.array(positions, dtype=np.int64)),
            host_id=self.host_id,
            accelerator_id=int(self.accelerator_ids[0]),
            start_ns=cols[0],
            first_token_ns=cols[1],
            finish_ns=cols[2],
            status=np.where(cols[7] != 0, STATUS_REJECTED, STATUS_OK).astype(np.int8),
            batch_size=cols[3].astype(np.int32),
            preemptions=cols[4].astype(np.int32),
            cached_tokens=cols[5],
            network_ns=cols[6],
        )

    def report(self) -> LoadReport:
        """Outstanding = submitted and not yet returned; capacity weight = accelerators."""
        outstanding = self._submitted - self._returned
        return LoadReport(outstanding=outstanding, capacity_weight=float(len(self.accelerator_ids)))

    def quiet_until(self) -> int | None:
        """A time before which none of the replica's requests finishes, as of the last
        ``advance`` and absent new submissions (None: not known): ``advance(u)`` for any
        ``u`` up to it returns nothing and leaves the report as it is, so a shard need not
        call it (engine/shard.py; any cut of time gives identical results).

        Requests held back bound it by their finish; the others finish at the end of an
        iteration that starts at the scheduler's clock or later (every iteration starting
        before the last bound has run), see `_to_next_finish_as`. None with a prefix cache
        (its events reach KV-aware routers at every advance)."""
        sched = self.scheduler
        if sched.kv.enabled:
            return None
        bound = min(map(sched.finish_ns.__getitem__, self._held), default=NEVER_NS)
        if not sched.outstanding:
            return bound
        cost = sched.cost
        if min(cost.compute_per_pair_as, cost.memory_per_context_as) < 0:
            return None  # iteration time could shrink with context: no floor
        return min(bound, (sched.t_as + self._to_next_finish_as(sched)) // AS_PER_NS)

    def _to_next_finish_as(self, sched: ReplicaScheduler) -> int:
        """A lower bound on the time from the clock to the next finish. When every
        unfinished request decodes and no block shortage can come first, exactly the time
        of the `k` decode-only iterations up to the first completion (`k`: the fewest
        tokens any decoder still needs; nothing is admitted meanwhile). Otherwise
        `fewest_iterations_left` iterations of at least the shortest duration."""
        n, cost = sched.n_dec, sched.cost
        if sched.outstanding != n:  # something waiting, prefilling or not yet admitted
            return fewest_iterations_left(sched) * self._floor_as(cost)
        k = min(map(sched.finish_iter.__getitem__, sched.running)) - sched.iteration
        if n * -(-k // sched.limits.block_size) > sched.free_blocks:
            return k * self._floor_as(cost)
        context = sched.offset_sum + n * sched.iteration
        return decode_run(cost, n, context, context, k, None)[1]

    def _floor_as(self, cost: IterationCost) -> int:
        """The shortest iteration `cost` allows (any tokens, no context), memoized."""
        if self._floor[0] is not cost:
            self._floor = (cost, iteration_floor_as(cost))
        return self._floor[1]

    def prefix_events(self) -> list[tuple[int, int]]:
        """Hash ids that appeared in (+1) or left (-1) the replica's prefix cache since the
        last call, in order (a failure removes them all): the router's view of the cache."""
        events = self._lost_prefixes + self.scheduler.kv.take_events()
        self._lost_prefixes = []
        return events

    def device_counters(self) -> DeviceCounters:
        """Every accelerator of the replica works in every iteration (TP/PP in lockstep)."""
        return counters_from(
            self.accelerator_ids, [len(self.accelerator_ids)], [self.counter_values()]
        )

    def counter_values(self) -> tuple[list[int], list[float]]:
        """`replica_values` of this replica as of its last bound (see `counters_of`)."""
        n = len(self.accelerator_ids)
        return replica_values(
            self.scheduler, n, self._until_ns, self.weight_bytes, self.kv_bytes_per_token
        )

    def stats(self) -> dict[str, Any]:
        """Scheduler figures for summaries and debugging: iterations, tokens computed, peak
        KV blocks used of the cache's, preemptions, prompt tokens submitted, and tokens
        looked up in and reused from the prefix cache over all admissions (re-admissions
        after preemption included): lookup hit rate = cached / queried, as vLLM counts it."""
        sched = self.scheduler
        forgotten = self._forgotten
        return {
            "iterations": sched.iteration,
            "tokens": sched.tokens_done,
            "max_used_kv_blocks": sched.max_used_blocks,
            "kv_blocks": sched.limits.num_blocks,
            "preemptions": int(sum(sched.preemptions)) + forgotten["preemptions"],
            "cached_tokens": int(sum(sched.cached_tokens)) + forgotten["cached_tokens"],
            "prompt_tokens": int(sum(sched.prompt)) + forgotten["prompt_tokens"],
            "queried_tokens": sched.queried_tokens,
        }
