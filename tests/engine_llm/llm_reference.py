"""One-iteration-at-a-time reference of the LLM replica scheduler (slow, obviously right).

It exists to check :class:`mtia_cluster.engine.llm.scheduler.ReplicaScheduler`, which skips
over runs of identical iterations in closed form: both must give identical
:class:`~mtia_cluster.engine.llm.limits.Outcome` arrays. The semantics (docs/llm-serving.md):

Every iteration starts at clock ``t`` (attoseconds). Requests that arrived at or before ``t``
join the waiting queue's tail. The batch is then planned:

1. Decodes (running requests whose only uncomputed token is the last sampled one), oldest
   admission first, one token each. A decode whose KV needs a new block takes one if any is
   available (free, else a cached entry's); when none is, it evicts the newest running
   request (its KV freed, progress reset, back to the waiting queue's front: preemption by
   recompute) until the block fits or it evicted itself. So earlier decodes take their
   blocks, cached entries included, before a later one evicts anything.
2. Running requests still prefilling (or recomputing), oldest first, get chunks of
   ``min(remaining, budget left, room in their blocks + free blocks)`` tokens.
3. Unless a request was evicted in this iteration (and something still runs), waiting
   requests are admitted FCFS while fewer than ``max_num_seqs`` run and budget is left,
   each with a chunk of ``min(its tokens, budget left)``; the head stops admission if its
   chunk's blocks are not free, or (``chunked_prefill`` False) if its tokens exceed the
   budget left: it is then prefilled whole in a later iteration.
4. If nothing could be scheduled, the newest running request is evicted and the plan redone.

With ``capacity_policy: guaranteed_no_evict`` admission also stops at a head whose KV blocks
at completion (``ceil((prompt + max(output, max_tokens) - 1) / block_size)``, max_tokens
0 when unset) plus those of every running request exceed the cache's blocks.

The iteration lasts ``IterationCost.duration_as(tokens, context, pairs)`` with context the
KV tokens already held by the scheduled requests and pairs the causal attention pairs. At its
end each scheduled request's computed tokens grow by its chunk; a request whose tokens are
all computed samples one token (the first one sets first_token_ns); the last one finishes it
and frees its blocks.

With prefix caching (``ReplicaLimits.prefix_caching``), a finished request of a session
leaves its full KV blocks cached under its ``session_id`` (replacing that session's older
entry); cached blocks count as free for every allocation but are evicted least recently
cached first when truly free blocks run out (requests finishing together are cached in
request order). A waiting request of the same session admitted later reuses
``min(cached tokens, whole blocks of its tokens but the last)`` tokens as already computed
and takes the entry's blocks; admission then needs its chunk's new blocks plus the reused
ones to be free or cached.

With prefix caching, a request given block keys (``kvcache.block_keys`` of its trace's hash
chain) uses them instead of its session. Each full block of its prompt that a key covers is
*registered* when an iteration completes it: shared from then on under its key (held by this
request; if the key is already registered, or cached, the request holds that block instead
and frees its own). At admission it reuses the longest run of leading keys registered or
cached (at most ``(tokens - 1) // block_size`` blocks), holding them: cached ones leave the
cache; admission needs the chunk's blocks minus the reused blocks other requests hold. When
it finishes or is preempted, it frees its unkeyed blocks and lets go of its keyed ones,
deepest first; a keyed block nobody holds any more is cached (one-block entry, most recent).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mtia_cluster.engine.llm.costs import AS_PER_NS, IterationCost
from mtia_cluster.engine.llm.limits import NOT_SET, Outcome, ReplicaLimits


class Snapshot(NamedTuple):
    """Scheduler state between iterations (compared with the fast scheduler's)."""

    t_as: int
    iterations: int
    free_blocks: int
    cached_blocks: int
    cache: tuple[tuple[object, int], ...]  # (session or key, blocks), least recent first


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class ReferenceScheduler:
    """Plain per-iteration simulation of one replica (see module doc)."""

    def __init__(self, cost: IterationCost, limits: ReplicaLimits) -> None:
        self.cost = cost
        self.limits = limits
        self.bs = limits.block_size
        self.free_blocks = limits.num_blocks
        self.cached_blocks = 0
        self.cache: OrderedDict[object, int] = OrderedDict()  # session/key -> blocks, LRU first
        self.holders: dict[object, int] = {}  # registered block key -> requests holding it
        self.max_used_blocks = 0
        self.running: list[int] = []
        self.waiting: deque[int] = deque()

    # ------------------------------------------------------------------ KV blocks
    def _available(self) -> int:
        return self.free_blocks + self.cached_blocks

    def _alloc(self, need: int) -> None:
        """Take `need` blocks, evicting least recently cached sessions if needed."""
        while self.free_blocks < need:
            _, size = self.cache.popitem(last=False)
            self.cached_blocks -= size
            self.free_blocks += size
        self.free_blocks -= need

    def _hit_tokens(self, r: int) -> int:
        """Tokens of waiting request r found in its session's cache entry or, with block
        keys, in its longest run of registered or cached leading keys."""
        keys = self.keys[r]
        if keys is not None:
            usable = min(len(keys), (self.prompt[r] + self.generated[r] - 1) // self.bs)
            n = 0
            while n < usable and (keys[n] in self.holders or keys[n] in self.cache):
                n += 1
            return n * self.bs
        session = self.session[r]
        if not self.limits.prefix_caching or session < 0 or session not in self.cache:
            return 0
        usable = (self.prompt[r] + self.generated[r] - 1) // self.bs
        return min(self.cache[session], usable) * self.bs

    def _hold(self, key: object) -> bool:
        """Hold registered or cached block `key` (True), or nothing if it is neither."""
        if key in self.holders:
            self.holders[key] += 1
        elif key in self.cache:
            del self.cache[key]
            self.cached_blocks -= 1
            self.holders[key] = 1
        else:
            return False
        return True

    def _register(self, r: int) -> None:
        """Register request r's newly computed full keyed blocks (or hold the existing ones)."""
        keys = self.keys[r]
        assert keys is not None
        full = min(len(keys), self.computed[r] // self.bs)
        for j in range(self.registered[r], full):
            if self._hold(keys[j]):
                self.free_blocks += 1  # its own copy
            else:
                self.holders[keys[j]] = 1
        self.registered[r] = max(self.registered[r], full)

    def _let_go(self, r: int) -> None:
        """Request r (finished or preempted) frees its blocks; keyed ones it held go back
        to the cache, deepest first, when no other request holds them."""
        keys = self.keys[r]
        assert keys is not None
        held = self.registered[r]
        self.free_blocks += _blocks(self.computed[r], self.bs) - held
        for j in reversed(range(held)):
            self.holders[keys[j]] -= 1
            if self.holders[keys[j]] == 0:
                del self.holders[keys[j]]
                self.cache[keys[j]] = 1
                self.cached_blocks += 1
        self.registered[r] = 0

    def _release(self, r: int) -> None:
        """A finished request's blocks: cached under its session (or keys), or freed."""
        if self.keys[r] is not None:
            self._let_go(r)
            return
        held = _blocks(self.computed[r], self.bs)
        session = self.session[r]
        if not self.limits.prefix_caching or session < 0:
            self.free_blocks += held
            return
        full = self.computed[r] // self.bs
        old = self.cache.pop(session, 0)
        self.cached_blocks += full - old
        self.free_blocks += old + held - full
        if full:
            self.cache[session] = full

    # ------------------------------------------------------------------ run
    def run(
        self,
        arrival_ns: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        session_id: np.ndarray | None = None,
        prefilled: np.ndarray | None = None,
        snapshot_ns: Sequence[int] = (),
        keys: Sequence[list[tuple[int, int]] | None] | None = None,
    ) -> Outcome:
        """Simulate all requests (arrivals sorted) to completion.

        `snapshot_ns` (sorted): for each bound, record in ``self.snapshots`` the state
        (:meth:`snapshot`) left by running every iteration that starts before it, as the
        fast scheduler's ``run_until(bound)`` does, so that the two can be compared between
        events and not only by their final results.
        """
        n = len(arrival_ns)
        bounds = deque(int(b) * AS_PER_NS for b in snapshot_ns)
        self.snapshots: list[Snapshot] = []
        self.iterations = 0
        self.out = out = Outcome.empty(n)
        self.prompt = [int(x) for x in input_tokens]
        self.outputs = [int(x) for x in output_tokens]
        self.session = [-1] * n if session_id is None else [int(x) for x in session_id]
        done = [False] * n if prefilled is None else [bool(x) for x in prefilled]
        given = [None] * n if keys is None or not self.limits.prefix_caching else list(keys)
        self.keys = [None if d else k for k, d in zip(given, done, strict=True)]
        self.registered = [0] * n
        self.computed = [p if d else 0 for p, d in zip(self.prompt, done, strict=True)]
        self.generated = [1 if d else 0 for d in done]
        arrivals = [int(a) * AS_PER_NS for a in arrival_ns]
        order = []
        for i in range(n):
            if self.limits.fits(self.prompt[i], self.outputs[i]):
                order.append(i)
            else:
                out.rejected[i] = True
                out.start_ns[i] = out.first_token_ns[i] = out.finish_ns[i] = arrival_ns[i]
        nxt, t = 0, 0
        while nxt < len(order) or self.running or self.waiting:
            if not self.running and not self.waiting:
                t = max(t, arrivals[order[nxt]])
            while bounds and t >= bounds[0]:
                bounds.popleft()
                self.snapshots.append(self.snapshot(t))
            while nxt < len(order) and arrivals[order[nxt]] <= t:
                self.waiting.append(order[nxt])
                nxt += 1
            plan = self._plan()
            for r, _ in plan:
                if out.start_ns[r] == NOT_SET:
                    out.start_ns[r] = t // AS_PER_NS
            t = self._finish_iteration(t, plan)
            self.iterations += 1
        self.snapshots += [self.snapshot(t) for _ in bounds]
        return out

    def snapshot(self, t: int) -> Snapshot:
        """Clock (attoseconds), iterations run, free and cached blocks, cache entries."""
        entries = tuple(self.cache.items())
        return Snapshot(t, self.iterations, self.free_blocks, self.cached_blocks, entries)

    def _preempt(self, victim: int) -> None:
        self.running.remove(victim)
        if self.keys[victim] is not None:
            self._let_go(victim)
        else:
            self.free_blocks += _blocks(self.computed[victim], self.bs)
        self.computed[victim] = 0
        self.waiting.appendleft(victim)
        self.out.preemptions[victim] += 1

    def _plan(self) -> list[tuple[int, int]]:
        """Choose (request, tokens) pairs for the next iteration (steps 1-4 of module doc)."""
        evicted = False
        while True:
            plan: list[tuple[int, int]] = []
            evicted = self._plan_decodes(plan) or evicted
            budget = self.limits.max_num_batched_tokens - len(plan)
            budget = self._plan_prefills(plan, budget)
            if not evicted or not self.running:
                self._plan_admissions(plan, budget)
            if plan:
                used = self.limits.num_blocks - self._available()
                self.max_used_blocks = max(self.max_used_blocks, used)
                return plan
            self._preempt(self.running[-1])
            evicted = True

    def _plan_decodes(self, plan: list[tuple[int, int]]) -> bool:
        prompt, gen, comp, running = self.prompt, self.generated, self.computed, self.running
        decodes = [r for r in running if gen[r] >= 1 and prompt[r] + gen[r] - comp[r] == 1]
        evicted = False
        for r in decodes:
            if r not in running:
                continue
            need = 1 if comp[r] % self.bs == 0 else 0
            while need > self._available() and r in running:
                self._preempt(running[-1])
                evicted = True
            if r not in running:
                break
            self._alloc(need)
            plan.append((r, 1))
        return evicted

    def _plan_prefills(self, plan: list[tuple[int, int]], budget: int) -> int:
        scheduled = {r for r, _ in plan}
        comp = self.computed
        for r in list(self.running):
            if r in scheduled or budget == 0:
                continue
            have = _blocks(comp[r], self.bs)
            room = (have + self._available()) * self.bs - comp[r]
            chunk = min(self.prompt[r] + self.generated[r] - comp[r], budget, room)
            if chunk <= 0:
                continue
            self._alloc(_blocks(comp[r] + chunk, self.bs) - have)
            plan.append((r, chunk))
            budget -= chunk
        return budget

    def _final_blocks(self, r: int) -> int:
        return _blocks(self.limits.reserved_kv_tokens(self.prompt[r], self.outputs[r]), self.bs)

    def _plan_admissions(self, plan: list[tuple[int, int]], budget: int) -> None:
        while self.waiting and len(self.running) < self.limits.max_num_seqs and budget > 0:
            r = self.waiting[0]
            if self.limits.no_evict:
                reserved = sum(self._final_blocks(x) for x in (*self.running, r))
                if reserved > self.limits.num_blocks:
                    break
            prefilled = self.computed[r]  # > 0 only for a request prefilled elsewhere
            hit = 0 if prefilled else self._hit_tokens(r)
            left = self.prompt[r] + self.generated[r] - prefilled - hit
            if left > budget and not self.limits.chunked_prefill:
                break  # no chunked prefill: the head is prefilled whole or waits
            chunk = min(left, budget)
            total = _blocks(prefilled + hit + chunk, self.bs)
            keys = self.keys[r]
            held_by_others = 0
            if keys is not None:
                held_by_others = sum(1 for k in keys[: hit // self.bs] if k in self.holders)
            if total - held_by_others > self._available():
                break
            self.waiting.popleft()
            self.running.append(r)
            if hit and keys is not None:
                for key in keys[: hit // self.bs]:
                    self._hold(key)
                self.registered[r] = hit // self.bs
            elif hit:
                size = self.cache.pop(self.session[r])
                self.cached_blocks -= size
                self.free_blocks += size - hit // self.bs
            self.computed[r] = prefilled + hit
            self.out.cached_tokens[r] += hit
            self._alloc(total - hit // self.bs)
            plan.append((r, chunk))
            budget -= chunk

    def _finish_iteration(self, t: int, plan: list[tuple[int, int]]) -> int:
        """Advance the clock by the iteration's duration and apply its effects."""
        prompt, comp, gen, out = self.prompt, self.computed, self.generated, self.out
        tokens = sum(n for _, n in plan)
        context = sum(comp[r] for r, _ in plan)
        pairs = sum(n * comp[r] + n * (n + 1) // 2 for r, n in plan)
        t_end = t + self.cost.duration_as(tokens, context, pairs)
        end_ns = t_end // AS_PER_NS
        finished = []
        for r, n in plan:
            comp[r] += n
            if self.keys[r] is not None:
                self._register(r)
            if comp[r] == prompt[r] + gen[r]:
                gen[r] += 1
                if gen[r] == 1:
                    out.first_token_ns[r] = end_ns
                    out.batch_size[r] = len(plan)
                if gen[r] == self.outputs[r]:
                    out.finish_ns[r] = end_ns
                    self.running.remove(r)
                    finished.append(r)
        for r in sorted(finished):
            self._release(r)
        return t_end
