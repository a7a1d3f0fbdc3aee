"""Fast, exact continuous-batching scheduler of one LLM replica.

Same semantics as the one-iteration-at-a-time reference (the test oracle
`tests/engine_llm/llm_reference.py`, whose docstring states them), but decoding requests are
not visited one by one: in every iteration each of them computes exactly one token, so a
decoder's computed tokens are ``I + offset`` where ``I`` counts iterations, it needs a new KV
block in the iterations where ``(I + offset) % block_size == 0``, and it finishes when ``I``
reaches a precomputed value (a heap). The scheduler keeps only aggregates over decoders (count,
offset sum, per-residue block counts), touches prefilling requests explicitly, and advances
runs of decode-only iterations between two events (an arrival that could be admitted, a
completion, a KV block shortage, the end of the window) in closed form
(:func:`~.stretch.decode_run`). Preemption falls back to an explicit walk of the running
requests, as in the reference.

One scheduler, two implementations of the same loop: :meth:`ReplicaScheduler.run_until`
runs the compiled loop (:mod:`.kernel`, state packed by :mod:`.jitglue`) when the replica
has no prefix cache and no scale-out network time and the window spans at least
``KERNEL_ITERATIONS`` of its shortest iterations (a whole trace, a long window); otherwise
the Python methods below (prefix caching with its hash chains and LRU, fabric network time,
the engine's millisecond windows where packing would cost more than it saves). Both give
bit-identical results and counters, window cuts included (``tests/engine_llm/
test_compiled.py`` checks compiled == Python == reference on random traces and limits).
"""

from __future__ import annotations

import heapq
from collections import deque

from mtia_cluster.engine.llm.costs import AS_PER_NS, IterationCost
from mtia_cluster.engine.llm.jitglue import kernel_tables, run_compiled
from mtia_cluster.engine.llm.kvcache import BlockPool
from mtia_cluster.engine.llm.kvcache import blocks_for as _blocks
from mtia_cluster.engine.llm.limits import NOT_SET, ReplicaLimits
from mtia_cluster.engine.llm.requests import DECODE as _DECODE
from mtia_cluster.engine.llm.requests import DONE as _DONE
from mtia_cluster.engine.llm.requests import PREFILL as _PREFILL
from mtia_cluster.engine.llm.requests import WAITING as _WAITING
from mtia_cluster.engine.llm.requests import RequestTable
from mtia_cluster.engine.llm.stretch import decode_run

# A window shorter than this many of the shortest iterations runs the Python loop: packing
# the state for the compiled loop costs ~50 us, a window of a few iterations less (see
# docs/engine.md, "LLM replica speed").
KERNEL_ITERATIONS = 64
# Blocks "needed" by a waiting request whose uncomputed tokens exceed the budget left when
# prefill is not chunked (ReplicaLimits.chunked_prefill): more than any cache has.
UNFIT = 1 << 62


class ReplicaScheduler(RequestTable):
    """One replica's scheduler: queue requests with ``add_many``, run with :meth:`run_until`."""

    def __init__(self, cost: IterationCost, limits: ReplicaLimits) -> None:
        if cost.max_tokens < limits.max_num_batched_tokens:
            raise ValueError("cost table shorter than the token budget")
        super().__init__(limits)
        self.cost = cost
        self.kv = BlockPool(limits.num_blocks, limits.block_size, limits.prefix_caching)
        self.t_as = 0  # clock: start of the next iteration (attoseconds)
        self.iteration = 0  # I: iterations run so far
        self.max_used_blocks = 0
        self.reserved_blocks = 0  # KV blocks the running requests hold at their completion
        self.no_evict = limits.no_evict  # read once: the hot paths test it per request
        self.busy_as = 0  # busy time of all iterations run so far
        self.memory_as = 0  # the part of busy_as in memory-bound iterations (power model)
        self.last_memory = False  # whether the latest iteration was memory-bound
        self.last_end_as = 0  # when the latest iteration ends (the clock may idle past it)
        self.tokens_done = 0  # tokens computed by all iterations run so far
        self.net_clock_as = 0  # scale-out network time of all iterations (cost.network_as)
        self.queried_tokens = 0  # tokens looked up in the prefix cache, over all admissions
        # replica statistics (kvstats): cumulative, carried over a restart
        self.preempted = 0  # preemptions so far
        self.reused_tokens = 0  # tokens reused from the prefix cache so far
        self.kv_token_as = 0  # integral of KV tokens held, token-attoseconds
        self.kv_held_tokens = 0  # KV tokens held by the last iteration run
        self.max_kv_tokens = 0
        self._released: list[int] = []  # finished in the current step, blocks not yet returned
        self._next = 0
        self.running: dict[int, None] = {}  # admission order
        self.prefilling: dict[int, None] = {}  # running and not decoding, admission order
        self.waiting: deque[int] = deque()
        # decoder aggregates
        self.n_dec = 0
        self.offset_sum = 0
        self.residue_count = [0] * limits.block_size
        self._heap: list[tuple[int, int]] = []
        # (iteration, iterations left) where a window bound cut a decode run: the next run
        # starting there, with no request waiting, has the same limit less what ran
        self._resume = (-1, 0)

    @property
    def cost(self) -> IterationCost:
        """The iteration cost; setting it (the fabric re-prices a replica when its links
        change, engine/fabric/cells.py) also rebuilds the compiled loop's tables from it."""
        return self._cost

    @cost.setter
    def cost(self, cost: IterationCost) -> None:
        self._cost = cost
        # the compiled loop's tables (None: this replica runs the Python path, see run_until)
        self.kernel = kernel_tables(cost, self.limits)
        # shortest window worth the compiled loop's packing (KERNEL_ITERATIONS iterations)
        self.kernel_window_as = KERNEL_ITERATIONS * cost.duration_as(1, 0, 1)

    def drop_prefix(self, cut: int) -> None:
        """Forget requests at positions < cut, all finished (memory stays bounded by the
        requests in flight); every later position, here and in the caller, shifts by -cut."""
        if cut <= 0:
            return
        self._drop_rows(cut)
        self._stream = [r - cut for r in self._stream[self._next :]]
        self._stream_as = self._stream_as[self._next :]
        self._next = 0
        self.running = {r - cut: None for r in self.running}
        self.prefilling = {r - cut: None for r in self.prefilling}
        self.waiting = deque(r - cut for r in self.waiting)
        self._heap = [(f, r - cut) for f, r in self._heap if r >= cut]
        heapq.heapify(self._heap)

    def restarted(self, at_ns: int) -> ReplicaScheduler:
        """An empty scheduler idle from `at_ns`, with this one's cost, limits and cumulative
        counters: the replica failed at `at_ns` (its requests, KV blocks and prefix-cache
        entries are gone). The iteration running at `at_ns` is cut short there, so busy time
        stops at `at_ns`; its iteration and tokens stay counted (they were counted when it
        started, and counters never go back). Later requests start no earlier than `at_ns`.

        Results do not depend on the carried iteration count (decoders' block needs depend
        on their computed tokens only), so the restarted replica serves like a fresh one.
        """
        new = type(self)(self.cost, self.limits)
        at_as = at_ns * AS_PER_NS
        new.t_as = at_as
        new.busy_as = self.busy_as - self.busy_tail_as(at_as)
        new.memory_as = self.memory_as - self.memory_tail_as(at_as)
        new.iteration = self.iteration
        new.tokens_done = self.tokens_done
        new.queried_tokens = self.queried_tokens
        new.max_used_blocks = self.max_used_blocks
        new.preempted, new.reused_tokens = self.preempted, self.reused_tokens
        new.max_kv_tokens = self.max_kv_tokens
        # the iteration running at `at_ns` holds its tokens up to `at_ns` only
        new.kv_token_as = self.kv_token_as - self.kv_held_tokens * max(0, self.t_as - at_as)
        return new

    def busy_tail_as(self, at_as: int) -> int:
        """The part of the running iteration after `at_as` (0 if none). The latest
        iteration's end, not the clock: an idle replica's clock jumps to its next arrival,
        which may lie past `at_as`."""
        return max(0, self.last_end_as - at_as)

    def memory_tail_as(self, at_as: int) -> int:
        """The memory-bound part of the running iteration after `at_as` (0 if none)."""
        return self.busy_tail_as(at_as) if self.last_memory else 0

    @property
    def free_blocks(self) -> int:
        """Blocks available to allocations (free + evictable cached)."""
        return self.kv.available

    @property
    def used_blocks(self) -> int:
        return self.kv.used

    # ----------------------------------------------------------------- main loop
    def run_until(self, until_ns: int | None = None) -> None:
        """Run every iteration that starts before `until_ns` (None: until all are done)."""
        if self.kernel is not None and (
            until_ns is None or until_ns * AS_PER_NS - self.t_as >= self.kernel_window_as
        ):
            run_compiled(self, self.kernel, until_ns)
            return
        until_as = None if until_ns is None else until_ns * AS_PER_NS
        stream, stream_as, waiting = self._stream, self._stream_as, self.waiting
        end = len(stream)
        while True:
            nxt, t_as = self._next, self.t_as
            if not self.running and not waiting:
                if nxt >= end:
                    return
                if stream_as[nxt] > t_as:
                    self.t_as = t_as = stream_as[nxt]
            if until_as is not None and t_as >= until_as:
                return
            if nxt < end and stream_as[nxt] <= t_as:
                while nxt < end and stream_as[nxt] <= t_as:
                    waiting.append(stream[nxt])
                    nxt += 1
                self._next = nxt
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
        if self.no_evict and self._over_reservation(self.waiting[0]):
            return True  # the reservation only shrinks at a completion, which ends a run
        _, need = self._admission(self.waiting[0], lim.max_num_batched_tokens - self.n_dec)
        # available blocks only shrink during the run (the hit's survival is checked apart)
        return need > self.kv.available

    def _final_blocks(self, r: int) -> int:
        """KV blocks reserved for request `r` to completion (limits.reserved_kv_tokens)."""
        lim = self.limits
        return _blocks(lim.reserved_kv_tokens(self.prompt[r], self.outputs[r]), lim.block_size)

    def _over_reservation(self, r: int) -> bool:
        """guaranteed_no_evict: whether admitting `r` could make a running request short of
        a block before it completes (limits.CAPACITY_POLICIES)."""
        lim = self.limits
        return self.no_evict and self.reserved_blocks + self._final_blocks(r) > lim.num_blocks

    def _admission(self, r: int, budget: int) -> tuple[int, int]:
        """(reused blocks, blocks needed from the available ones) to admit waiting `r` with
        a chunk of at most `budget` tokens: the chunk's blocks, reused ones included unless
        running requests hold them (as vLLM counts evictable hit blocks)."""
        bs = self.limits.block_size
        tokens = self.prompt[r] + self.generated[r]
        base = self.computed[r]  # 0, or the prompt for a prefilled (disaggregated) request
        if not base and not self.kv.enabled:
            if tokens > budget and not self.limits.chunked_prefill:
                return 0, UNFIT  # prefilled whole or not at all
            return 0, -(-min(tokens, budget) // bs)  # blocks_for
        hit = shared = 0
        if not base:
            keys = self.keys[r]
            if keys is None:
                hit = self.kv.hit_blocks(self.session[r], tokens)
            else:
                hit, shared = self.kv.chain_hit(keys, tokens)
            base = hit * bs
        if tokens - base > budget and not self.limits.chunked_prefill:
            return hit, UNFIT
        return hit, _blocks(base + min(tokens - base, budget), bs) - shared

    def _hit_at_risk(self, r: int) -> int | None:
        """Cached blocks evicted before waiting `r`'s reusable ones (None: it has none)."""
        if self.computed[r]:
            return None
        keys = self.keys[r]
        if keys is None:
            if not self.kv.hit_blocks(self.session[r], 2**62):
                return None
            return self.kv.older_than(self.session[r])
        hit, shared = self.kv.chain_hit(keys, 2**62)
        if hit == shared:
            return None
        return self.kv.older_than_any(set(keys[shared:hit]))

    def _kv_limit(self, want: int, free: int) -> int:
        """Most decode-only iterations (<= want) whose new blocks number at most `free`."""
        n, bs = self.n_dec, self.limits.block_size
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
        end = base + part
        if end <= bs:
            return full * self.n_dec + sum(counts[base:end])
        return full * self.n_dec + sum(counts[base:]) + sum(counts[: end - bs])

    def _try_decode_run(self, until_as: int | None) -> bool:
        """Advance k >= 1 decode-only iterations at once if the next one is decode-only."""
        waiting, kv = self.waiting, self.kv
        if waiting:
            if not self._admission_blocked():
                return False
            deadline = None  # admission stays blocked until a completion
        elif len(self.running) < self.limits.max_num_seqs and self._next < len(self._stream):
            deadline = self._stream_as[self._next]
        else:
            deadline = None
        it = self.iteration
        resume, left = self._resume
        limit = left if resume == it and not waiting else self._run_limit()
        if limit <= 0:
            return False
        n, bs = self.n_dec, self.limits.block_size
        context0 = self.offset_sum + n * it
        held0 = context0 - kv.shared * bs
        if until_as is not None and (deadline is None or until_as < deadline):
            deadline = until_as  # the earlier of the two
        k, span, token_as, memory_as, self.last_memory = decode_run(
            self._cost,
            n,
            context0,
            held0,
            limit,
            None if deadline is None else deadline - self.t_as,
        )
        if k < limit and not waiting:
            self._resume = (it + k, limit - k)
        kv.alloc(self._blocks_in(k))
        used = kv.num_blocks - kv.free - kv.cached
        if used > self.max_used_blocks:
            self.max_used_blocks = used
        self.kv_token_as += token_as
        self.kv_held_tokens = held = held0 + n * k
        if held > self.max_kv_tokens:
            self.max_kv_tokens = held
        self.t_as += span
        self.busy_as += span
        self.memory_as += memory_as
        self.last_end_as = self.t_as
        self.tokens_done += n * k
        if self._cost.network_as:
            self.net_clock_as += k * self._cost.network_as[n]
        self.iteration += k
        if self._heap[0][0] <= self.iteration:  # else the run stopped at its deadline
            self._pop_finished()
        if self._released:
            self._release_finished()
        return True

    def _run_limit(self) -> int:
        """Most decode-only iterations before a completion or a KV block shortage (or the
        eviction of a cached block the blocked waiting head would reuse)."""
        heap, state, finish_iter, kv = self._heap, self.state, self.finish_iter, self.kv
        while heap:  # drop stale entries (preempted or re-registered decoders)
            f, r = heap[0]
            if state[r] == _DECODE and finish_iter[r] == f:
                break
            heapq.heappop(heap)
        want, avail = heap[0][0] - self.iteration, kv.free + kv.cached
        bs = self.limits.block_size
        k = want if self.n_dec * -(-want // bs) <= avail else self._kv_limit(want, avail)
        if self.waiting and kv.enabled:
            older = self._hit_at_risk(self.waiting[0])
            if older is not None:  # stop before one of its reusable blocks would be evicted
                k = self._kv_limit(k, kv.free + older)
        return k

    # ----------------------------------------------------------------- decoder bookkeeping
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
        self.net_as[r] += self.net_clock_as
        self.state[r] = _DONE
        del self.running[r]
        if self.no_evict:
            self.reserved_blocks -= self._final_blocks(r)
        self._released.append(r)
        self.finished.append(r)

    def _release_finished(self) -> None:
        """Return the blocks of requests finished together, in request order (prefix cache)."""
        released, kv = self._released, self.kv
        if not kv.enabled:  # no prefix cache (and no keys): blocks freed, order immaterial
            bs, prompt, outputs = self.limits.block_size, self.prompt, self.outputs
            for r in released:
                kv.free += -(-(prompt[r] + outputs[r] - 1) // bs)  # blocks_for
            released.clear()
            return
        if len(released) > 1:
            released.sort()
        for r in released:
            keys = self.keys[r]
            if keys is None:
                self.kv.release(self.session[r], self.prompt[r] + self.outputs[r] - 1)
            else:
                self.kv.release_chain(keys, self.prompt[r] + self.outputs[r] - 1)
        released.clear()

    def _pop_finished(self) -> None:
        """Finish the decoders whose last token was sampled by the iteration just ended."""
        heap, end_ns, it = self._heap, self.t_as // AS_PER_NS, self.iteration
        state, finish_iter = self.state, self.finish_iter
        while heap and heap[0][0] <= it:
            f, r = heapq.heappop(heap)
            if state[r] == _DECODE and finish_iter[r] == f:  # a live entry (not stale)
                self._from_decode(r)
                self._finish(r, end_ns)

    def _preempt(self, victim: int) -> None:
        """Evict `victim` (recompute later): free its KV, reset it, waiting queue front."""
        if self.state[victim] == _DECODE:
            self._from_decode(victim)
        else:
            del self.prefilling[victim]
        del self.running[victim]
        if self.no_evict:
            self.reserved_blocks -= self._final_blocks(victim)
        keys = self.keys[victim]
        if keys is None:
            self.kv.free += _blocks(self.computed[victim], self.limits.block_size)
        else:  # its keyed blocks stay reusable (cached once no one holds them), as in vLLM
            self.kv.release_chain(keys, self.computed[victim])
        self.computed[victim] = 0
        self.net_as[victim] += self.net_clock_as
        self.state[victim] = _WAITING
        self.waiting.appendleft(victim)
        self.preemptions[victim] += 1
        self.preempted += 1

    # ----------------------------------------------------------------- general iteration
    def _evict_for_decodes(self) -> bool:
        """Pass 1 under a block shortage, as the decoders' one-by-one allocation does it.

        Decoders needing a block take them in admission order while any is available (free
        first, then cached entries, oldest first); the first one left without a block evicts
        the newest running request (its blocks become free) and allocation goes on. The
        order matters with a prefix cache: blocks taken before an eviction consume cached
        entries that blocks freed by the eviction would have spared. A victim is always at
        least as new as the decoder waiting for a block, so decoders already served are never
        evicted; the victim's own need leaves ``residue_count`` when it is preempted.
        """
        slot = self.iteration % self.limits.block_size
        served = 0  # decoders (oldest first) that already have their block
        evicted = False
        while True:
            waiting = self.residue_count[slot] - served
            take = min(waiting, self.kv.available)
            self.kv.alloc(take)
            served += take
            if take == waiting:
                return evicted
            self._preempt(next(reversed(self.running)))
            evicted = True

    def _plan_chunks(self, budget: int, evicted: bool) -> list[tuple[int, int]]:
        """Passes 2 and 3: chunks for prefilling requests, then FCFS admissions."""
        lim, bs = self.limits, self.limits.block_size
        prompt, gen, comp = self.prompt, self.generated, self.computed
        chunks: list[tuple[int, int]] = []
        kv = self.kv
        for r in self.prefilling:
            if budget == 0:
                break
            done = comp[r]
            have = -(-done // bs)  # blocks_for
            room = (have + kv.free + kv.cached) * bs - done
            chunk = min(prompt[r] + gen[r] - done, budget, room)
            if chunk > 0:
                kv.alloc(-(-(done + chunk) // bs) - have)
                chunks.append((r, chunk))
                budget -= chunk
        if evicted and self.running:
            return chunks
        waiting = self.waiting
        while waiting and len(self.running) < lim.max_num_seqs and budget > 0:
            r = waiting[0]
            if self.no_evict and self._over_reservation(r):
                break
            hit, need = self._admission(r, budget)
            if need > kv.free + kv.cached:
                break
            waiting.popleft()
            if self.no_evict:
                self.reserved_blocks += self._final_blocks(r)
            base = comp[r]
            if not base:
                self.queried_tokens += prompt[r] + gen[r]
                base = hit * bs
            chunk = min(prompt[r] + gen[r] - base, budget)
            if hit:
                keys = self.keys[r]
                if keys is None:
                    kv.take(self.session[r], hit)
                else:
                    kv.acquire(keys, hit)
                comp[r] = base
                self.cached_tokens[r] += base
                self.reused_tokens += base
            self.running[r] = None
            self.prefilling[r] = None
            self.state[r] = _PREFILL
            self.net_as[r] -= self.net_clock_as
            kv.alloc(-(-(base + chunk) // bs) - hit)
            chunks.append((r, chunk))
            budget -= chunk
            if self.start_ns[r] == NOT_SET:
                self.start_ns[r] = self.t_as // AS_PER_NS
        return chunks

    def _plan(self) -> list[tuple[int, int]]:
        """Plan the next iteration (decoders implicit); evicts until something can run."""
        evicted, kv = False, self.kv
        while True:
            need = self.residue_count[self.iteration % self.limits.block_size]
            if need > kv.free + kv.cached:
                evicted = self._evict_for_decodes() or evicted
            elif need:
                kv.alloc(need)
            chunks = self._plan_chunks(self.limits.max_num_batched_tokens - self.n_dec, evicted)
            if chunks or self.n_dec:
                return chunks
            self._preempt(next(reversed(self.running)))
            evicted = True

    def _one_iteration(self) -> None:
        """Plan, time and apply one iteration."""
        chunks = self._plan()
        kv = self.kv
        used = kv.num_blocks - kv.free - kv.cached
        if used > self.max_used_blocks:
            self.max_used_blocks = used
        comp = self.computed
        n = self.n_dec
        dec_context = self.offset_sum + n * self.iteration
        tokens, context, pairs = n, dec_context, dec_context + n
        for r, c in chunks:
            tokens += c
            context += comp[r]
            pairs += c * comp[r] + c * (c + 1) // 2
        span, self.last_memory = self._cost.timing_as(tokens, context, pairs)
        # KV held: every running request's context plus this iteration's tokens; a shared
        # prefix block counts once. Chunks cover distinct prefilling requests, so when they
        # cover all of them their contexts are already summed in `context`.
        held = tokens - kv.shared * self.limits.block_size
        if len(chunks) == len(self.prefilling):
            held += context
        else:
            held += dec_context + sum(comp[r] for r in self.prefilling)
        self.kv_token_as += held * span
        self.kv_held_tokens = held
        if held > self.max_kv_tokens:
            self.max_kv_tokens = held
        self.t_as += span
        self.busy_as += span
        if self.last_memory:
            self.memory_as += span
        self.last_end_as = self.t_as
        self.tokens_done += tokens
        if self._cost.network_as:
            self.net_clock_as += self._cost.network_as[tokens]
        self.iteration += 1
        heap = self._heap
        if heap and heap[0][0] <= self.iteration:
            self._pop_finished()
        self._apply_chunks(chunks, n + len(chunks))
        if self._released:
            self._release_finished()

    def _apply_chunks(self, chunks: list[tuple[int, int]], batch: int) -> None:
        """End of iteration for explicitly scheduled requests."""
        end_ns = self.t_as // AS_PER_NS
        prompt, gen, comp, all_keys = self.prompt, self.generated, self.computed, self.keys
        bs = self.limits.block_size
        for r, c in chunks:
            keys = all_keys[r]
            if keys is not None and comp[r] // bs < len(keys):  # newly full keyed blocks
                self.kv.register(keys, comp[r] // bs, min((comp[r] + c) // bs, len(keys)))
            comp[r] += c
            total = prompt[r] + gen[r]
            if comp[r] == total:
                gen[r] += 1
                if gen[r] == 1:
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
