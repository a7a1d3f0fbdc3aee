"""One-iteration-at-a-time reference of the LLM replica scheduler (slow, obviously right).

It exists to check :class:`mtia_cluster.engine.llm.scheduler.ReplicaScheduler`, which skips
over runs of identical iterations in closed form: both must give identical
:class:`~mtia_cluster.engine.llm.limits.Outcome` arrays. The semantics (docs/llm-serving.md):

Every iteration starts at clock ``t`` (attoseconds). Requests that arrived at or before ``t``
join the waiting queue's tail. The batch is then planned:

1. Decodes (running requests whose only uncomputed token is the last sampled one), oldest
   admission first, one token each. A decode whose KV needs a new block when none is free
   evicts the newest running request (its KV freed, progress reset, back to the waiting
   queue's front: preemption by recompute) until the block fits or it evicted itself.
2. Running requests still prefilling (or recomputing), oldest first, get chunks of
   ``min(remaining, budget left, room in their blocks + free blocks)`` tokens.
3. Unless a request was evicted in this iteration (and something still runs), waiting
   requests are admitted FCFS while fewer than ``max_num_seqs`` run and budget is left,
   each with a chunk of ``min(its tokens, budget left)``; the head stops admission if its
   chunk's blocks are not free.
4. If nothing could be scheduled, the newest running request is evicted and the plan redone.

The iteration lasts ``IterationCost.duration_as(tokens, context, pairs)`` with context the
KV tokens already held by the scheduled requests and pairs the causal attention pairs. At its
end each scheduled request's computed tokens grow by its chunk; a request whose tokens are
all computed samples one token (the first one sets first_token_ns); the last one finishes it
and frees its blocks.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from mtia_cluster.engine.llm.costs import AS_PER_NS, IterationCost
from mtia_cluster.engine.llm.limits import NOT_SET, Outcome, ReplicaLimits


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class ReferenceScheduler:
    """Plain per-iteration simulation of one replica (see module doc)."""

    def __init__(self, cost: IterationCost, limits: ReplicaLimits) -> None:
        self.cost = cost
        self.limits = limits
        self.free_blocks = limits.num_blocks
        self.max_used_blocks = 0

    def run(
        self, arrival_ns: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray
    ) -> Outcome:
        """Simulate all requests (arrivals sorted) to completion."""
        lim = self.limits
        n = len(arrival_ns)
        out = Outcome.empty(n)
        prompt = [int(x) for x in input_tokens]
        outputs = [int(x) for x in output_tokens]
        arrivals = [int(a) * AS_PER_NS for a in arrival_ns]
        computed = [0] * n
        generated = [0] * n
        order = []
        for i in range(n):
            if lim.fits(prompt[i], outputs[i]):
                order.append(i)
            else:
                out.rejected[i] = True
                out.start_ns[i] = out.first_token_ns[i] = out.finish_ns[i] = arrival_ns[i]
        running: list[int] = []
        waiting: deque[int] = deque()
        nxt = 0
        t = 0
        bs = lim.block_size

        def preempt(victim: int) -> None:
            running.remove(victim)
            self.free_blocks += _blocks(computed[victim], bs)
            computed[victim] = 0
            waiting.appendleft(victim)
            out.preemptions[victim] += 1

        while nxt < len(order) or running or waiting:
            if not running and not waiting:
                t = max(t, arrivals[order[nxt]])
            while nxt < len(order) and arrivals[order[nxt]] <= t:
                waiting.append(order[nxt])
                nxt += 1
            plan = self._plan(running, waiting, prompt, computed, generated, preempt)
            for r, _ in plan:
                if out.start_ns[r] == NOT_SET:
                    out.start_ns[r] = t // AS_PER_NS
            t = self._finish_iteration(t, plan, prompt, outputs, computed, generated, running, out)
        return out

    def _plan(self, running, waiting, prompt, computed, generated, preempt):
        """Choose (request, tokens) pairs for the next iteration (steps 1-4 of module doc)."""
        lim, bs = self.limits, self.limits.block_size
        evicted = False
        while True:
            plan: list[tuple[int, int]] = []
            budget = lim.max_num_batched_tokens
            decodes = [
                r
                for r in running
                if generated[r] >= 1 and prompt[r] + generated[r] - computed[r] == 1
            ]
            for r in decodes:
                if r not in running:
                    continue
                need = 1 if computed[r] % bs == 0 else 0
                while need > self.free_blocks and r in running:
                    preempt(running[-1])
                    evicted = True
                if r not in running:
                    break
                self.free_blocks -= need
                plan.append((r, 1))
                budget -= 1
            scheduled = {r for r, _ in plan}
            for r in list(running):
                if r in scheduled or budget == 0:
                    continue
                have = _blocks(computed[r], bs)
                room = (have + self.free_blocks) * bs - computed[r]
                chunk = min(prompt[r] + generated[r] - computed[r], budget, room)
                if chunk <= 0:
                    continue
                self.free_blocks -= _blocks(computed[r] + chunk, bs) - have
                plan.append((r, chunk))
                budget -= chunk
            if not evicted or not running:
                while waiting and len(running) < lim.max_num_seqs and budget > 0:
                    r = waiting[0]
                    chunk = min(prompt[r] + generated[r], budget)
                    if _blocks(chunk, bs) > self.free_blocks:
                        break
                    waiting.popleft()
                    running.append(r)
                    self.free_blocks -= _blocks(chunk, bs)
                    plan.append((r, chunk))
                    budget -= chunk
            if plan:
                used = lim.num_blocks - self.free_blocks
                self.max_used_blocks = max(self.max_used_blocks, used)
                return plan
            preempt(running[-1])
            evicted = True

    def _finish_iteration(self, t, plan, prompt, outputs, computed, generated, running, out):
        """Advance the clock by the iteration's duration and apply its effects."""
        bs = self.limits.block_size
        tokens = sum(n for _, n in plan)
        context = sum(computed[r] for r, _ in plan)
        pairs = sum(n * computed[r] + n * (n + 1) // 2 for r, n in plan)
        t_end = t + self.cost.duration_as(tokens, context, pairs)
        end_ns = t_end // AS_PER_NS
        for r, n in plan:
            computed[r] += n
            if computed[r] == prompt[r] + generated[r]:
                generated[r] += 1
                if out.first_token_ns[r] == NOT_SET:
                    out.first_token_ns[r] = end_ns
                    out.batch_size[r] = len(plan)
                if generated[r] == outputs[r]:
                    out.finish_ns[r] = end_ns
                    running.remove(r)
                    self.free_blocks += _blocks(computed[r], bs)
        return t_end
