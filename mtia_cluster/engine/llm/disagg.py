"""Prefill/decode disaggregation inside one cell: a pool of prefill instances, a pool of
decode instances and the KV links between them (N:M, any tp on each side).

Each instance is a :class:`~.scheduler.ReplicaScheduler`. A prefill instance serves every
request as if it wanted one output token: it computes the prompt (chunked, batched with
other prompts) and samples the first token. A request that wants more tokens then sends its
prompt's KV (``input_tokens x kv_bytes_per_token`` bytes) to a decode instance over the link
between the two (:mod:`.pd_routing`: fabric, bandwidth, FIFO sharing per prefill instance);
the first token reaches the user when the transfer ends (transfer time is in TTFT). It
arrives at the decode instance *prefilled* and is admitted, decoded and finished there under
that instance's own KV capacity (preempted requests are recomputed locally).

Routing inside the replica happens at the scenario's window boundaries (multiples of
``report_interval_ns`` from 0), as the fleet's routers do: the window's arrivals go to a
prefill instance by the service's router policy (:class:`~mtia_cluster.engine.router.Router`
over the prefill instances' reports at the window start: outstanding requests, their prefix
caches), and a prompt whose prefill ends in the window goes to a decode instance picked by
:class:`~.pd_routing.DecodeChooser` from the decode instances' reports at the window start.
Every choice is a function of the state at a window boundary, and every instance only of its
own arrivals, so advancing in one call or in any cuts gives the same rows (tested): results
do not depend on how cells are sharded or placed.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import (
    STATUS_OK,
    STATUS_REJECTED,
    Completed,
    DeviceCounters,
    LoadReport,
    RequestBatch,
    completed_from,
)
from mtia_cluster.engine.llm.cell import Rows, replica_counters
from mtia_cluster.engine.llm.kvcache import chains_to_keys
from mtia_cluster.engine.llm.limits import NOT_SET
from mtia_cluster.engine.llm.pd_routing import (
    FABRIC_OUT,
    DecodeChooser,
    KVLink,
    PrefixView,
    kv_need_blocks,
    unadmitted_blocks,
)
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
from mtia_cluster.engine.router import Router


class DisaggregatedCell:
    """Prefill and decode instance pools joined by KV links (see module doc)."""

    def __init__(
        self,
        prefill: list[ReplicaScheduler],
        decode: list[ReplicaScheduler],
        *,
        prefill_ids: list[np.ndarray],
        decode_ids: list[np.ndarray],
        host_id: int,
        kv_bytes_per_token: int,
        links: list[list[KVLink]],
        router: Router,
        report_interval_ns: int,
        weight_bytes_per_accelerator: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """`links[p][d]`: the link from prefill instance p to decode instance d; `router`
        picks prefill instances (its cells are 0..len(prefill)-1)."""
        self.prefill, self.decode = list(prefill), list(decode)
        self.prefill_ids = [np.asarray(a, dtype=np.int32) for a in prefill_ids]
        self.decode_ids = [np.asarray(a, dtype=np.int32) for a in decode_ids]
        self.host_id = host_id
        self.kv_bytes_per_token = kv_bytes_per_token
        self.links, self.router, self.interval = links, router, report_interval_ns
        self.weight_bytes = weight_bytes_per_accelerator
        self.chooser = DecodeChooser(len(decode))
        self.view = PrefixView()
        self.transfer_ns_total = 0
        self.transfers = [0, 0]  # KV transfers started, over scale-up and over scale-out
        # per prefill instance: KV transfers it sent (count, bytes); kept across failures
        self.sent = [[0, 0] for _ in self.prefill]
        self._until_ns = 0
        self._pos = 0  # every choice for times before it is made
        self._reset(0)
        self._none = Completed.empty()  # returned (never mutated) by windows finishing nothing

    def _reset(self, at_ns: int) -> None:
        """Empty per-request state; links free from `at_ns`; reports to be taken again."""
        self._rows = Rows()
        self._arrival: list[int] = []  # per cell position
        self._prompt: list[int] = []  # prompt sent to prefill (0: rejected at arrival)
        self._outputs: list[int] = []
        self._first: list[int] = []  # first token at the user
        self._net: list[int] = []  # prefill end to KV at decode, over scale-out (network_ns)
        self._finish: list[int] = []
        self._pre_of: list[tuple[int, int]] = []  # routed positions: (instance, its position)
        self._pre_pos: list[list[int]] = [[] for _ in self.prefill]  # -> cell position
        self._dec_of: dict[int, tuple[int, int]] = {}
        self._dec_pos: list[list[int]] = [[] for _ in self.decode]
        self._pending: list[list[tuple[int, int, int, int]]] = [[] for _ in self.decode]
        self._link_free = [[at_ns, at_ns] for _ in self.prefill]  # per fabric queue
        self._in_flight: list[tuple[int, int]] = []  # transfers (start, end) not yet past
        self._ready: list[tuple[int, int]] = []  # prefill completions (finish, r) not sent
        self._seen_pre = [0] * len(self.prefill)
        self._seen_dec = [0] * len(self.decode)
        self._inner_events: list[tuple[int, int, int]] = []  # (instance, hash, sign)
        self._done: list[int] = []
        self._held: list[int] = []
        self._seq = self._routed = self._returned = 0
        self._pre_b = self._dec_b = -1  # window whose reports were taken

    # ----------------------------------------------------------------- cell protocol
    def submit(self, batch: RequestBatch) -> None:
        """Queue the window's requests; a prefill instance is picked when its window runs."""
        if len(batch) == 0:
            return
        self._rows.append(batch)
        prompt = np.asarray(batch.input_tokens, dtype=np.int64)
        outputs = np.asarray(batch.output_tokens, dtype=np.int64)
        lim = self.decode[0].limits
        need = -(-(prompt + outputs - 1) // lim.block_size)
        decodable = (outputs == 1) | (need <= lim.num_blocks)
        # a request no decode instance can ever hold is rejected at arrival by the prefill side
        self._arrival += np.asarray(batch.arrival_ns, dtype=np.int64).tolist()
        self._prompt += np.where(decodable, prompt, 0).tolist()
        self._outputs += outputs.tolist()
        self._first += [NOT_SET] * len(batch)
        self._net += [0] * len(batch)
        self._finish += [NOT_SET] * len(batch)

    def advance(self, until_ns: int) -> Completed:
        """Make every choice and run every instance up to `until_ns`; return the requests
        finished before it. The prefill instances run from one window with arrivals to the
        next in one go (they only depend on their own arrivals); KV is sent in order of
        prefill end, each with the decode reports of the window its prefill ended in."""
        self._until_ns = max(self._until_ns, until_ns)
        step = self.interval
        if not self.router.needs_reports:  # choices independent of reports: route all now
            self._route(until_ns)
        while True:
            routed = self._routed
            a = self._arrival[routed] if routed < len(self._arrival) else until_ns
            b = min(a, until_ns) // step * step if a < until_ns else until_ns
            self._run_prefill(max(b, self._pos))
            self._pos = max(self._pos, b)
            if a >= until_ns:
                break
            self._open_prefill(b)
            self._route(min(b + step, until_ns))
        self._pos = max(self._pos, until_ns)
        if until_ns % step:  # reports of the window before the decode instances pass its start
            self._open_decode(until_ns // step * step)
        for d in range(len(self.decode)):
            self._flush(d, until_ns)
            self.decode[d].run_until(until_ns)
        return self._collect(until_ns)

    def _run_prefill(self, t: int) -> None:
        """Run the prefill instances to `t`, taking their reports at the start of `t`'s
        window on the way (arrivals may still come in that window)."""
        b = t // self.interval * self.interval
        if t > b and self._pre_b != b:
            self._prefill_to(b)
            self._open_prefill(b)
        self._prefill_to(t)

    def _prefill_to(self, t: int) -> None:
        """Run the prefill instances to `t`; send the KV of prompts finished before it."""
        for i, pre in enumerate(self.prefill):
            pre.run_until(t)
            pos = self._pre_pos[i]
            self._ready += [(pre.finish_ns[q], pos[q]) for q in pre.finished[self._seen_pre[i] :]]
            self._seen_pre[i] = len(pre.finished)
        self._ready.sort()
        k = bisect_left(self._ready, (t, -1))
        for finish, r in self._ready[:k]:
            self._open_decode(finish // self.interval * self.interval)
            self._handoff(r)
        del self._ready[:k]

    # ----------------------------------------------------------------- choices
    def _drain_prefix(self) -> None:
        """Prefill instances' cache events: to the replica's view and the inner router."""
        for i, pre in enumerate(self.prefill):
            events = pre.kv.take_events()
            self.view.apply(events)
            self._inner_events += [(i, h, s) for h, s in events]

    def _open_prefill(self, b: int) -> None:
        """The prefill instances' reports at window start `b`, to the inner router."""
        if self._pre_b == b:
            return
        for pre in self.prefill:
            pre.run_until(b)
        self._drain_prefix()
        if self._inner_events and self.router.affinity is not None:
            cells, hashes, signs = np.array(self._inner_events, dtype=np.int64).T
            self.router.apply_prefix_events(cells, hashes, signs)
        self._inner_events = []
        self.router.refresh(
            np.array([p.outstanding for p in self.prefill], dtype=np.int64),
            self.router.state.capacity,
        )
        self._pre_b = b

    def _route(self, hi: int) -> None:
        """Arrivals before `hi` not yet routed go to prefill instances (router policy)."""
        lo = self._routed
        end = bisect_left(self._arrival, hi, lo=lo)
        if end == lo:
            return
        pos = np.arange(lo, end)
        reqs = self._rows.take(pos)
        inst = self.router.route(end - lo, reqs if self.router.needs_requests else None)
        prompt = np.array(self._prompt[lo:end], dtype=np.int64)
        one = np.where(np.array(self._outputs[lo:end]) >= 1, 1, 0)
        self._pre_of += [(0, 0)] * (end - lo)
        for i in np.unique(inst).tolist():
            sel = np.flatnonzero(inst == i)
            sub, pre = reqs.take(sel), self.prefill[i]
            keys = None
            if pre.limits.prefix_caching:
                keys = chains_to_keys(sub.prefix_blocks, sub.input_tokens, pre.limits.block_size)
            first = len(pre.prompt)
            pre.add_many(sub.arrival_ns, prompt[sel], one[sel], sub.session_id, keys=keys)
            for k, r in enumerate((lo + sel).tolist()):
                self._pre_of[r] = (i, first + k)
            self._pre_pos[i] += (lo + sel).tolist()
        self._routed = end

    def _open_decode(self, b: int) -> None:
        """The decode instances' reports at window start `b`, to the chooser (one decode
        instance: no choice, no reports)."""
        if self._dec_b == b or len(self.decode) == 1:
            return
        load, free = [], []
        for d, dec in enumerate(self.decode):
            self._flush(d, b)
            dec.run_until(b)
            pending = self._pending[d]
            load.append(dec.outstanding + len(pending))
            free.append(dec.free_blocks - unadmitted_blocks(dec) - sum(x[3] for x in pending))
        self.chooser.refresh(load, free)
        self._dec_b = b

    def _handoff(self, r: int) -> None:
        """Prefill of cell request `r` done: finish it, or send its KV to a decode instance."""
        i, q = self._pre_of[r]
        pre = self.prefill[i]
        if pre.rejected[q] or self._outputs[r] == 1:
            self._first[r], self._finish[r] = pre.first_ns[q], pre.finish_ns[q]
            self._done.append(r)
            return
        prompt, bs = self._prompt[r], self.decode[0].limits.block_size
        need = kv_need_blocks(prompt, self._outputs[r], bs)
        d = self.chooser.choose(need)
        link = self.links[i][d]
        queue = self._link_free[i]
        start = max(pre.finish_ns[q], queue[link.fabric])
        took = link.transfer_ns(prompt * self.kv_bytes_per_token)
        queue[link.fabric] = end = start + took
        self.transfer_ns_total += took
        self.transfers[link.fabric] += 1
        self.sent[i][0] += 1
        self.sent[i][1] += prompt * self.kv_bytes_per_token
        self._in_flight.append((start, end))
        self._first[r] = end  # the first token reaches the user with the KV at decode
        if link.fabric == FABRIC_OUT:  # waiting for the link and moving: on the fabric
            self._net[r] = end - pre.finish_ns[q]
        heapq.heappush(self._pending[d], (end, self._seq, r, need))
        self._seq += 1

    def _flush(self, d: int, before: int) -> None:
        """Transfers to decode instance `d` ending before `before` arrive there, in order."""
        pending, rs = self._pending[d], []
        while pending and pending[0][0] < before:
            rs.append(heapq.heappop(pending))
        if not rs:
            return
        dec = self.decode[d]
        first = len(dec.prompt)
        cells = [x[2] for x in rs]
        dec.add_many(
            np.array([x[0] for x in rs], dtype=np.int64),
            np.array([self._prompt[r] for r in cells], dtype=np.int64),
            np.array([self._outputs[r] for r in cells], dtype=np.int64),
            np.full(len(rs), -1),  # prefilled requests never reuse a prefix: no cache entries
            np.ones(len(rs), dtype=bool),
        )
        for k, r in enumerate(cells):
            self._dec_of[r] = (d, first + k)
        self._dec_pos[d] += cells

    # ----------------------------------------------------------------- results
    def _collect(self, until_ns: int) -> Completed:
        """Requests finished before `until_ns` not yet returned; the rest held back."""
        done, self._done = self._done, []
        for d, dec in enumerate(self.decode):
            pos = self._dec_pos[d]
            for q in dec.finished[self._seen_dec[d] :]:
                self._finish[pos[q]] = dec.finish_ns[q]
                done.append(pos[q])
            self._seen_dec[d] = len(dec.finished)
        self._in_flight = [t for t in self._in_flight if t[1] > until_ns]
        finish = self._finish
        candidates = self._held + done
        out = [r for r in candidates if finish[r] < until_ns]
        self._held = [r for r in candidates if finish[r] >= until_ns]
        self._returned += len(out)
        return self._completed(out) if out else self._none

    def _completed(self, positions: list[int]) -> Completed:
        pos = np.array(positions, dtype=np.int64)
        finish = np.array([self._finish[r] for r in positions], dtype=np.int64)
        order = np.lexsort((pos, finish))
        pos, finish = pos[order], finish[order]
        idx = pos.tolist()
        pre = [(self.prefill[i], q) for i, q in (self._pre_of[r] for r in idx)]
        rejected = np.array([p.rejected[q] for p, q in pre], dtype=bool)
        return completed_from(
            self._rows.take(pos),
            host_id=self.host_id,
            accelerator_id=np.array([int(self.prefill_ids[self._pre_of[r][0]][0]) for r in idx]),
            start_ns=np.array([p.start_ns[q] for p, q in pre], dtype=np.int64),
            first_token_ns=np.array([self._first[r] for r in idx], dtype=np.int64),
            network_ns=np.array([self._net[r] for r in idx], dtype=np.int64),
            finish_ns=finish,
            status=np.where(rejected, STATUS_REJECTED, STATUS_OK).astype(np.int8),
            batch_size=np.array([p.batch_size[q] for p, q in pre], dtype=np.int32),
            preemptions=np.array([self._preemptions(r) for r in idx], dtype=np.int32),
            cached_tokens=np.array([p.cached_tokens[q] for p, q in pre], dtype=np.int64),
        )

    def _preemptions(self, r: int) -> int:
        """Times cell request `r` was preempted, on its prefill and decode instances."""
        i, q = self._pre_of[r]
        n = self.prefill[i].preemptions[q]
        if r in self._dec_of:
            d, k = self._dec_of[r]
            n += self.decode[d].preemptions[k]
        return n

    def evict(self, at_ns: int) -> RequestBatch:
        """The cell fails at `at_ns` (right after ``advance(at_ns)``): every request it holds
        and has not returned (not yet routed, at a prefill instance, on a link, at a decode
        instance, or finished at or after `at_ns` and held back) leaves it with its original
        columns, in arrival order (ties by request id). Every instance restarts empty and
        idle at `at_ns` (:meth:`~.scheduler.ReplicaScheduler.restarted`), links are free from
        `at_ns` (a transfer in flight is lost: its time past `at_ns` is not counted)."""
        pending = [r for r, f in enumerate(self._finish) if f == NOT_SET]
        positions = np.array(sorted({*self._held, *pending}), dtype=np.int64)
        out = self._rows.take(positions)
        out = out.take(np.lexsort((out.request_id, out.arrival_ns)))
        for i, pre in enumerate(self.prefill):
            events = pre.kv.lost_events()  # its cache is gone
            self.view.apply(events)
            self._inner_events += [(i, h, s) for h, s in events]
        inner = self._inner_events
        self.prefill = [p.restarted(at_ns) for p in self.prefill]
        self.decode = [d.restarted(at_ns) for d in self.decode]
        self.transfer_ns_total -= sum(end - max(start, at_ns) for start, end in self._in_flight)
        self._reset(at_ns)
        self._inner_events = inner  # the inner router still has to forget the caches
        self._until_ns = max(self._until_ns, at_ns)
        self._pos = max(self._pos, at_ns)
        return out

    def prefix_events(self) -> list[tuple[int, int]]:
        """The replica's prefix-cache events since the last call: a hash id appears when a
        first prefill instance holds it and leaves with the last (``pd_routing.PrefixView``)."""
        self._drain_prefix()
        return self.view.take()

    def report(self) -> LoadReport:
        """Outstanding = submitted and not yet returned; capacity weight = accelerators."""
        chips = sum(len(a) for a in (*self.prefill_ids, *self.decode_ids))
        return LoadReport(
            outstanding=len(self._outputs) - self._returned, capacity_weight=float(chips)
        )

    def stats(self) -> dict[str, Any]:
        """KV transfers (started, per fabric; their link time), and per instance the tokens
        computed and peak KV blocks used of the cache's (prefill instances, then decode)."""
        return {
            "transfers_scale_up": self.transfers[0],
            "transfers_scale_out": self.transfers[1],
            "transfer_ns_total": self.transfer_ns_total,
            "prefill_tokens": [p.tokens_done for p in self.prefill],
            "decode_tokens": [d.tokens_done for d in self.decode],
            "prefill_peak_kv": [p.max_used_blocks / p.limits.num_blocks for p in self.prefill],
            "decode_peak_kv": [d.max_used_blocks / d.limits.num_blocks for d in self.decode],
        }

    def device_counters(self) -> DeviceCounters:
        """The prefill instances' accelerators' counters (with the KV transfers each sent),
        then the decode instances'."""
        none = [(0, 0)] * len(self.decode)
        parts = [
            replica_counters(
                sched, ids, self._until_ns, weight, self.kv_bytes_per_token, (moved[0], moved[1])
            )
            for scheds, id_lists, weight, sent in (
                (self.prefill, self.prefill_ids, self.weight_bytes[0], self.sent),
                (self.decode, self.decode_ids, self.weight_bytes[1], none),
            )
            for sched, ids, moved in zip(scheds, id_lists, sent, strict=True)
        ]
        return DeviceCounters.concat(parts)
