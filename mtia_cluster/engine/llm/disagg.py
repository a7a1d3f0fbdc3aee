"""Prefill/decode disaggregation inside one cell: a prefill instance, a decode instance and
the KV transfer between them.

The prefill instance is a :class:`~.scheduler.ReplicaScheduler` that serves every request as
if it wanted one output token: it computes the prompt (chunked, batched with other prompts)
and samples the first token, which is the request's ``first_token_ns``. A request that wants
more tokens then sends its prompt's KV (``input_tokens x kv_bytes_per_token`` bytes) over one
link, first come first served (requests finishing together go in request order), so the
transfer starts at ``max(prefill finish, link free)`` and lasts ``bytes / link bandwidth``.
It arrives at the decode instance *prefilled* (prompt computed, first token sampled) and is
admitted, decoded and finished there under the decode instance's own KV capacity (preempted
requests are recomputed locally). The prefill instance frees the request's KV when its
prefill ends (the transfer is not held against its memory: a simplification).

Both instances only depend on their own arrivals, and the link is FIFO, so advancing window
by window gives the same rows as one call (tested), as for :class:`~.cell.LLMReplicaCell`.
"""

from __future__ import annotations

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
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler


class DisaggregatedCell:
    """A prefill instance and a decode instance joined by a KV link (see module doc)."""

    def __init__(
        self,
        prefill: ReplicaScheduler,
        decode: ReplicaScheduler,
        *,
        prefill_ids: np.ndarray,
        decode_ids: np.ndarray,
        host_id: int,
        kv_bytes_per_token: int,
        link_bytes_per_s: float,
        weight_bytes_per_accelerator: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.prefill, self.decode = prefill, decode
        self.prefill_ids = np.asarray(prefill_ids, dtype=np.int32)
        self.decode_ids = np.asarray(decode_ids, dtype=np.int32)
        self.host_id = host_id
        self.kv_bytes_per_token = kv_bytes_per_token
        self.link_bytes_per_s = link_bytes_per_s
        self.weight_bytes = weight_bytes_per_accelerator
        self.link_free_ns = 0
        self.transfer_ns_total = 0
        self.transfers = [0, 0]  # KV transfers started so far: count, bytes (kept on failure)
        self._rows = Rows()
        self._outputs: list[int] = []
        self._finish: list[int] = []  # per cell position (= prefill position)
        self._decode_pos: list[int] = []  # decode position -> cell position
        self._decode_of: dict[int, int] = {}  # cell position -> decode position
        self._lost_prefixes: list[tuple[int, int]] = []  # prefix events of a failed prefill
        self._link: list[tuple[int, int]] = []  # per decode position: transfer (start, end)
        self._seen = [0, 0]  # prefill / decode `finished` entries already handled
        self._held: list[int] = []
        self._returned = 0
        self._until_ns = 0
        self._none = Completed.empty()  # returned (never mutated) by windows finishing nothing

    def submit(self, batch: RequestBatch) -> None:
        """Queue the window's requests on the prefill instance."""
        if len(batch) == 0:
            return
        self._rows.append(batch)
        prompt = np.asarray(batch.input_tokens, dtype=np.int64)
        outputs = np.asarray(batch.output_tokens, dtype=np.int64)
        lim = self.decode.limits
        kv_blocks = -(-(prompt + outputs - 1) // lim.block_size)
        decodable = (outputs == 1) | (kv_blocks <= lim.num_blocks)
        # a request the decode side can never hold is rejected at arrival by the prefill side
        lim_pre = self.prefill.limits
        keys = None
        if lim_pre.prefix_caching:  # the prefill instance's prefix cache
            keys = chains_to_keys(batch.prefix_blocks, batch.input_tokens, lim_pre.block_size)
        self.prefill.add_many(
            batch.arrival_ns,
            np.where(decodable, prompt, 0),
            np.where(outputs >= 1, 1, 0),
            batch.session_id,
            keys=keys,
        )
        self._outputs += outputs.tolist()
        self._finish += [NOT_SET] * len(batch)

    def transfer_ns(self, prompt_tokens: int) -> int:
        """Link time of one prompt's KV, rounded up to whole ns."""
        return -(-prompt_tokens * self.kv_bytes_per_token * 10**9 // int(self.link_bytes_per_s))

    def advance(self, until_ns: int) -> Completed:
        """Run both instances up to `until_ns`; return requests finished before it."""
        self._until_ns = max(self._until_ns, until_ns)
        pre = self.prefill
        pre.run_until(until_ns)
        done = self._handoff(pre.finished[self._seen[0] :])
        self._seen[0] = len(pre.finished)
        self.decode.run_until(until_ns)
        for q in self.decode.finished[self._seen[1] :]:
            r = self._decode_pos[q]
            self._finish[r] = self.decode.finish_ns[q]
            done.append(r)
        self._seen[1] = len(self.decode.finished)
        candidates = self._held + done
        finish = self._finish
        out = [r for r in candidates if finish[r] < until_ns]
        self._held = [r for r in candidates if finish[r] >= until_ns]
        self._returned += len(out)
        return self._completed(out) if out else self._none

    def evict(self, at_ns: int) -> RequestBatch:
        """The cell fails at `at_ns` (right after ``advance(at_ns)``): every request it holds
        and has not returned (at the prefill instance, on the link, at the decode instance,
        or finished at or after `at_ns` and held back) leaves it with its original columns,
        in arrival order (ties by request id). Both instances restart empty and idle at
        `at_ns` (:meth:`~.scheduler.ReplicaScheduler.restarted`), the link is free from
        `at_ns` (a transfer in flight is lost: its time past `at_ns` is not counted)."""
        pending = [r for r, f in enumerate(self._finish) if f == NOT_SET]
        positions = np.array(sorted({*self._held, *pending}), dtype=np.int64)
        out = self._rows.take(positions)
        out = out.take(np.lexsort((out.request_id, out.arrival_ns)))
        self._lost_prefixes += self.prefill.kv.lost_events()  # its cache is gone
        self.prefill = self.prefill.restarted(at_ns)
        self.decode = self.decode.restarted(at_ns)
        self.transfer_ns_total -= sum(
            end - max(start, at_ns) for start, end in self._link_after(at_ns)
        )
        self.link_free_ns = at_ns
        self._rows = Rows()
        self._outputs, self._finish, self._decode_pos, self._link = [], [], [], []
        self._decode_of = {}
        self._seen, self._held, self._returned = [0, 0], [], 0
        self._until_ns = max(self._until_ns, at_ns)
        return out

    def _link_after(self, at_ns: int) -> list[tuple[int, int]]:
        """Transfers still on the link at `at_ns` (the link is FIFO: the last ones)."""
        k = len(self._link)
        while k and self._link[k - 1][1] > at_ns:
            k -= 1
        return self._link[k:]

    def _handoff(self, finished: list[int]) -> list[int]:
        """Prefill completions: finish 1-token requests, send the rest's KV over the link."""
        pre = self.prefill
        done, arrival, prompt, outputs, session = [], [], [], [], []
        for r in sorted(finished, key=lambda r: (pre.finish_ns[r], r)):
            if pre.rejected[r] or self._outputs[r] == 1:
                self._finish[r] = pre.finish_ns[r]
                done.append(r)
                continue
            start = max(pre.finish_ns[r], self.link_free_ns)
            took = self.transfer_ns(pre.prompt[r])
            self.link_free_ns = start + took
            self.transfer_ns_total += took
            self.transfers[0] += 1
            self.transfers[1] += pre.prompt[r] * self.kv_bytes_per_token
            self._decode_of[r] = len(self._decode_pos)
            self._decode_pos.append(r)
            self._link.append((start, self.link_free_ns))
            arrival.append(self.link_free_ns)
            prompt.append(pre.prompt[r])
            outputs.append(self._outputs[r])
            session.append(-1)  # prefilled requests never reuse a prefix: no cache entries
        if arrival:
            self.decode.add_many(
                np.array(arrival),
                np.array(prompt),
                np.array(outputs),
                np.array(session),
                np.ones(len(arrival), dtype=bool),
            )
        return done

    def _completed(self, positions: list[int]) -> Completed:
        pre = self.prefill
        pos = np.array(positions, dtype=np.int64)
        finish = np.array([self._finish[r] for r in positions], dtype=np.int64)
        order = np.lexsort((pos, finish))
        pos, finish = pos[order], finish[order]
        idx = pos.tolist()
        rejected = np.array([pre.rejected[r] for r in idx], dtype=bool)
        return completed_from(
            self._rows.take(pos),
            host_id=self.host_id,
            accelerator_id=int(self.prefill_ids[0]),
            start_ns=np.array([pre.start_ns[r] for r in idx], dtype=np.int64),
            first_token_ns=np.array([pre.first_ns[r] for r in idx], dtype=np.int64),
            finish_ns=finish,
            status=np.where(rejected, STATUS_REJECTED, STATUS_OK).astype(np.int8),
            batch_size=np.array([pre.batch_size[r] for r in idx], dtype=np.int32),
            preemptions=np.array([self._preemptions(r) for r in idx], dtype=np.int32),
            cached_tokens=np.array([pre.cached_tokens[r] for r in idx], dtype=np.int64),
        )

    def _preemptions(self, r: int) -> int:
        """Times cell request `r` was preempted, on the prefill and the decode instance."""
        q = self._decode_of.get(r)
        return self.prefill.preemptions[r] + (0 if q is None else self.decode.preemptions[q])

    def prefix_events(self) -> list[tuple[int, int]]:
        """The prefill instance's prefix-cache events since the last call (see
        ``LLMReplicaCell.prefix_events``)."""
        events = self._lost_prefixes + self.prefill.kv.take_events()
        self._lost_prefixes = []
        return events

    def report(self) -> LoadReport:
        """Outstanding = submitted and not yet returned; capacity weight = accelerators."""
        chips = len(self.prefill_ids) + len(self.decode_ids)
        return LoadReport(
            outstanding=len(self._outputs) - self._returned, capacity_weight=float(chips)
        )

    def device_counters(self) -> DeviceCounters:
        """Prefill accelerators' counters (with the KV transfers they sent), then the decode
        accelerators'."""
        sent = (self.transfers[0], self.transfers[1])
        parts = [
            replica_counters(sched, ids, self._until_ns, weight, self.kv_bytes_per_token, moved)
            for sched, ids, weight, moved in (
                (self.prefill, self.prefill_ids, self.weight_bytes[0], sent),
                (self.decode, self.decode_ids, self.weight_bytes[1], (0, 0)),
            )
        ]
        return DeviceCounters.concat(parts)
