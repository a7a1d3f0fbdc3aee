"""Fast, exact continuous-batching scheduler of one LLM replica.

Same semantics as the one-iteration-at-a-time reference (:mod:`._reference`, whose docstring
states them), but decoding requests are not visited one by one: in every iteration each of
them computes exactly one token, so a decoder's computed tokens are ``I + offset`` where ``I``
counts iterations, it needs a new KV block in the iterations where ``(I + offset) %
block_size == 0``, and it finishes when ``I`` reaches a precomputed value (a heap). The
scheduler keeps only aggregates over decoders (count, offset sum, per-residue block counts),
touches prefilling requests explicitly, and advances runs of decode-only iterations between
two events (an arrival that could be admitted, a completion, a KV block shortage, the end of
the window) in closed form (:class:`~.stretch.DecodeRun`). Preemption falls back to an
explicit walk of the running requests, as in the reference.
"""

from __future__ import annotations

import heapq
from collections import deque

import numpy as np

from mtia_cluster.engine.llm.costs import AS_PER_NS, IterationCost
from mtia_cluster.engine.llm.limits import NOT_SET, Outcome, ReplicaLimits
from mtia_cluster.engine.llm.stretch import DecodeRun

_PREFILL, _DECODE, _WAITING, _DONE = 0, 1, 2, 3


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class ReplicaScheduler:
    """One replica's scheduler state; feed requests with :meth:`add`, run with :meth:`run_until`."""

    def __init__(self, cost: IterationCost, limits: ReplicaLimits) -> None:
        if cost.max_tokens < limits.max_num_batched_tokens:
            raise ValueError("cost table shorter than the token budget")
        self.cost, self.limits = cost, limits
        self.t_as = 0  # clock: start of the next iteration (attoseconds)
        self.iteration = 0  # I: iterations run so far
        self.free_blocks = limits.num_blocks
        self.max_used_blocks = 0
        self.busy_as = 0  # busy time of all iterations run so far
        self.tokens_done = 0  # tokens computed by all iterations run so far
        # per request (position = order of add)
        self.prompt: list[int] = []
        self.outputs: list[int] = []
        self.arrival_ns: list[int] = []
        self.computed: list[int] = []  # valid unless decoding (then iteration + offset)
        self.generated: list[int] = []  # valid unless decoding
        self.offset: list[int] = []  # decoding: computed - iteration
        self.finish_iter: list[int] = []  # decoding: iteration count when it finishes
        self.state: list[int] = []
        self.start_ns: list[int] = []
        self.first_ns: list[int] = []
        self.finish_ns: list[int] = []
        self.rejected: list[bool] = []
        self.batch_size: list[int] = []
        self.preemptions: list[int] = []
        self.finished: list[int] = []  # positions in finishing order (incl. rejected)
        # queues
        self._stream: list[int] = []  # admissible requests in arrival order
        self._stream_as: list[int] = []
        self._next = 0
        self.running: dict[int, None] = {}  # admission order
        self.prefilling: dict[int, None] = {}  # running and not decoding, admission order
        self.waiting: deque[int] = deque()
        # decoder aggregates
        self.n_dec = 0
        self.offset_sum = 0
        self.residue_count = [0] * limits.block_size
        self._heap: list[tuple[int, int]] = []

    # ----------------------------------------------------------------- input / output
    def add(self, arrival_ns: int, input_tokens: int, output_tokens: int) -> int:
        """Queue one request (arrivals non-decreasing); returns its position."""
        i = len(self.prompt)
        if self._stream_as and arrival_ns * AS_PER_NS < self._stream_as[-1]:
            raise ValueError("arrivals must be added in non-decreasing order")
        ok = self.limits.fits(input_tokens, output_tokens)
        for lst, v in (
            (self.prompt, input_tokens),
            (self.outputs, output_tokens),
            (self.arrival_ns, arrival_ns),
            (self.computed, 0),
            (self.generated, 0),
            (self.offset, 0),
            (self.finish_iter, 0),
            (self.state, _WAITING if ok else _DONE),
            (self.batch_size, 0),
            (self.preemptions, 0),
        ):
            lst.append(v)
        stamp = NOT_SET if ok else arrival_ns
        self.start_ns.append(stamp)
        self.first_ns.append(stamp)
        self.finish_ns.append(stamp)
        self.rejected.append(not ok)
        if ok:
            self._stream.append(i)
            self._stream_as.append(arrival_ns * AS_PER_NS)
        else:
            self.finished.append(i)
        return i

    def add_many(
        self, arrival_ns: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray
    ) -> None:
        """Queue many requests at once (same effect as :meth:`add` for each, in order)."""
        arrival = np.asarray(arrival_ns, dtype=np.int64)
        n = len(arrival)
        if n == 0:
            return
        if np.any(np.diff(arrival) < 0) or (
            self._stream_as and int(arrival[0]) * AS_PER_NS < self._stream_as[-1]
        ):
            raise ValueError("arrivals must be added in non-decreasing order")
        prompt = np.asarray(input_tokens, dtype=np.int64)
        outputs = np.asarray(output_tokens, dtype=np.int64)
        lim = self.limits
        kv_blocks = -(-(prompt + outputs - 1) // lim.block_size)
        ok = (prompt >= 1) & (outputs >= 1) & (kv_blocks <= lim.num_blocks)
        first = len(self.prompt)
        arrivals = arrival.tolist()
        self.prompt += prompt.tolist()
        self.outputs += outputs.tolist()
        self.arrival_ns += arrivals
        for lst in (
            self.computed,
            self.generated,
            self.offset,
            self.finish_iter,
            self.batch_size,
            self.preemptions,
        ):
            lst += [0] * n
        self.state += np.where(ok, _WAITING, _DONE).tolist()
        stamps = np.where(ok, NOT_SET, arrival).tolist()
        self.start_ns += stamps
        self.first_ns += stamps
        self.finish_ns += stamps
        self.rejected += (~ok).tolist()
        positions = np.arange(first, first + n)
        self._stream += positions[ok].tolist()
        self._stream_as += [a * AS_PER_NS for a in arrival[ok].tolist()]  # no int64 overflow
        self.finished += positions[~ok].tolist()

    def outcome(self) -> Outcome:
        """Per-request results so far, as arrays."""
        return Outcome(
            start_ns=np.array(self.start_ns, np.int64),
            first_token_ns=np.array(self.first_ns, np.int64),
            finish_ns=np.array(self.finish_ns, np.int64),
            rejected=np.array(self.rejected, bool),
            batch_size=np.array(self.batch_size, np.int32),
            preemptions=np.array(self.preemptions, np.int32),
        )

    @property
    def outstanding(self) -> int:
        """Requests added and not finished."""
        return len(self.prompt) - len(self.finished)

    @property
    def used_blocks(self) -> int:
        return self.limits.num_blocks - self.free_blocks

    # ----------------------------------------------------------------- main loop
    def run_until(self, until_ns: int | None = None) -> None:
        """Run every iteration that starts before `until_ns` (None: until all are done)."""
        until_as = None if until_ns is None else until_ns * AS_PER_NS
        stream, stream_as, waiting = self._stream, self._stream_as, self.waiting
        while True:
            if not self.running and not waiting:
                if self._next >= len(stream):
                    return
                self.t_as = max(self.t_as, stream_as[self._next])
            if until_as is not None and self.t_as >= until_as:
                return
            while self._next < len(stream) and stream_as[self._next] <= self.t_as:
                waiting.append(stream[self._next])
                self._next += 1
            if not self.prefilling and self.n_dec and self._try_decode_run(until_as):
                continue
            self._one_iteration()

    # ----------------------------------------------------------------- decode runs
    def _admission_blocked(self) -> bool:
        """Whether no waiting request can be admitted in the next decode-only iterations."""
        lim = self.limits
        if len(self.running) >= lim.max_num_seqs:
            return True
        if not self.waiting:
            return False
        h = self.waiting[0]
        chunk = min(
            self.prompt[h] + self.generated[h] - self.computed[h],
            lim.max_num_batched_tokens - self.n_dec,
        )
        return _blocks(chunk, lim.block_size) > self.free_blocks  # free only shrinks meanwhile

    def _kv_limit(self, want: int) -> int:
        """Most decode-only iterations (<= want) whose new blocks fit in the free ones."""
        n, bs, free = self.n_dec, self.limits.block_size, self.free_blocks
        if n * -(-want // bs) <= free:
            return want
        counts, base = self.residue_count, self.iteration % bs
        cycles, rem = divmod(free, n)
        acc, x = 0, 0
        while x < bs - 1:
            acc += counts[(base + x) % bs]
            if acc > rem:
                break
            x += 1
        return min(want, cycles * bs + x)

    def _blocks_in(self, k: int) -> int:
        """New blocks the decoders take over the next k iterations."""
        bs = self.limits.block_size
        counts, base = self.residue_count, self.iteration % bs
        full, part = divmod(k, bs)
        return full * self.n_dec + sum(counts[(base + x) % bs] for x in range(part))

    def _try_decode_run(self, until_as: int | None) -> bool:
        """Advance k >= 1 decode-only iterations at once if the next one is decode-only."""
        if self.waiting and not self._admission_blocked():
            return False
        if not self.waiting and len(self.running) < self.limits.max_num_seqs:
            arrival = self._stream_as[self._next] if self._next < len(self._stream) else None
        else:
            arrival = None  # admission stays blocked until a completion
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        k = heap[0][0] - self.iteration
        k = self._kv_limit(k)
        if k <= 0:
            return False
        n = self.n_dec
        run = DecodeRun(self.cost, n, self.offset_sum + n * self.iteration)
        deadline = (
            arrival
            if until_as is None
            else (until_as if arrival is None else min(arrival, until_as))
        )
        if deadline is not None:
            k = run.starts_before(k, deadline - self.t_as)
        self.free_blocks -= self._blocks_in(k)
        self.max_used_blocks = max(self.max_used_blocks, self.used_blocks)
        span = run.total(k)
        self.t_as += span
        self.busy_as += span
        self.tokens_done += n * k
        self.iteration += k
        self._pop_finished()
        return True

    # ----------------------------------------------------------------- decoder bookkeeping
    def _live(self, entry: tuple[int, int]) -> bool:
        r = entry[1]
        return self.state[r] == _DECODE and self.finish_iter[r] == entry[0]

    def _to_decode(self, r: int) -> None:
        """Register r (all but its last sampled token computed) as an implicit decoder."""
        off = self.computed[r] - self.iteration
        self.offset[r] = off
        self.finish_iter[r] = self.iteration + self.outputs[r] - self.generated[r]
        self.state[r] = _DECODE
        self.n_dec += 1
        self.offset_sum += off
        self.residue_count[-off % self.limits.block_size] += 1
        heapq.heappush(self._heap, (self.finish_iter[r], r))

    def _from_decode(self, r: int) -> None:
        """Make r explicit again (its computed/generated materialized)."""
        off = self.offset[r]
        self.computed[r] = self.iteration + off
        self.generated[r] = self.computed[r] - self.prompt[r] + 1
        self.n_dec -= 1
        self.offset_sum -= off
        self.residue_count[-off % self.limits.block_size] -= 1

    def _finish(self, r: int, end_ns: int) -> None:
        self.finish_ns[r] = end_ns
        self.state[r] = _DONE
        del self.running[r]
        self.free_blocks += _blocks(self.prompt[r] + self.outputs[r] - 1, self.limits.block_size)
        self.finished.append(r)

    def _pop_finished(self) -> None:
        """Finish the decoders whose last token was sampled by the iteration just ended."""
        heap, end_ns = self._heap, self.t_as // AS_PER_NS
        while heap and heap[0][0] <= self.iteration:
            entry = heapq.heappop(heap)
            if self._live(entry):
                r = entry[1]
                self._from_decode(r)
                self._finish(r, end_ns)

    def _preempt(self, victim: int) -> None:
        """Evict `victim` (recompute later): free its KV, reset it, waiting queue front."""
        if self.state[victim] == _DECODE:
            self._from_decode(victim)
        else:
            del self.prefilling[victim]
        del self.running[victim]
        self.free_blocks += _blocks(self.computed[victim], self.limits.block_size)
        self.computed[victim] = 0
        self.state[victim] = _WAITING
        self.waiting.appendleft(victim)
        self.preemptions[victim] += 1

    # ----------------------------------------------------------------- general iteration
    def _evict_for_decodes(self) -> bool:
        """Pass 1 under a block shortage: evict newest running requests until it fits."""
        bs = self.limits.block_size
        need = self.residue_count[self.iteration % bs]
        evicted = False
        while need > self.free_blocks:
            victim = next(reversed(self.running))
            if self.state[victim] == _DECODE and (self.iteration + self.offset[victim]) % bs == 0:
                need -= 1
            self._preempt(victim)
            evicted = True
        self.free_blocks -= need
        return evicted

    def _plan_chunks(self, budget: int, evicted: bool) -> list[tuple[int, int]]:
        """Passes 2 and 3: chunks for prefilling requests, then FCFS admissions."""
        lim, bs = self.limits, self.limits.block_size
        prompt, gen, comp = self.prompt, self.generated, self.computed
        chunks: list[tuple[int, int]] = []
        for r in self.prefilling:
            if budget == 0:
                break
            have = _blocks(comp[r], bs)
            room = (have + self.free_blocks) * bs - comp[r]
            chunk = min(prompt[r] + gen[r] - comp[r], budget, room)
            if chunk > 0:
                self.free_blocks -= _blocks(comp[r] + chunk, bs) - have
                chunks.append((r, chunk))
                budget -= chunk
        if evicted and self.running:
            return chunks
        waiting = self.waiting
        while waiting and len(self.running) < lim.max_num_seqs and budget > 0:
            r = waiting[0]
            chunk = min(prompt[r] + gen[r], budget)
            need = _blocks(chunk, bs)
            if need > self.free_blocks:
                break
            waiting.popleft()
            self.running[r] = None
            self.prefilling[r] = None
            self.state[r] = _PREFILL
            self.free_blocks -= need
            chunks.append((r, chunk))
            budget -= chunk
            if self.start_ns[r] == NOT_SET:
                self.start_ns[r] = self.t_as // AS_PER_NS
        return chunks

    def _plan(self) -> list[tuple[int, int]]:
        """Plan the next iteration (decoders implicit); evicts until something can run."""
        evicted = False
        while True:
            if self.residue_count[self.iteration % self.limits.block_size] > self.free_blocks:
                evicted = self._evict_for_decodes() or evicted
            else:
                self.free_blocks -= self.residue_count[self.iteration % self.limits.block_size]
            chunks = self._plan_chunks(self.limits.max_num_batched_tokens - self.n_dec, evicted)
            if chunks or self.n_dec:
                return chunks
            self._preempt(next(reversed(self.running)))
            evicted = True

    def _one_iteration(self) -> None:
        """Plan, time and apply one iteration."""
        chunks = self._plan()
        self.max_used_blocks = max(self.max_used_blocks, self.used_blocks)
        comp = self.computed
        n = self.n_dec
        dec_context = self.offset_sum + n * self.iteration
        tokens, context, pairs = n, dec_context, dec_context + n
        for r, c in chunks:
            tokens += c
            context += comp[r]
            pairs += c * comp[r] + c * (c + 1) // 2
        span = self.cost.duration_as(tokens, context, pairs)
        self.t_as += span
        self.busy_as += span
        self.tokens_done += tokens
        self.iteration += 1
        self._pop_finished()
        self._apply_chunks(chunks, n + len(chunks))

    def _apply_chunks(self, chunks: list[tuple[int, int]], batch: int) -> None:
        """End of iteration for explicitly scheduled requests."""
        end_ns = self.t_as // AS_PER_NS
        prompt, gen, comp = self.prompt, self.generated, self.computed
        for r, c in chunks:
            comp[r] += c
            total = prompt[r] + gen[r]
            if comp[r] == total:
                gen[r] += 1
                if self.first_ns[r] == NOT_SET:
                    self.first_ns[r] = end_ns
                    self.batch_size[r] = batch
                if gen[r] == self.outputs[r]:
                    del self.prefilling[r]
                    self._finish(r, end_ns)
                    continue
            elif gen[r] == 0 or total - comp[r] > 1:
                continue
            del self.prefilling[r]
            self._to_decode(r)
