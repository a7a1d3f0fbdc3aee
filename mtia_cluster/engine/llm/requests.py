"""Per-request state of a replica scheduler, stored as parallel Python lists.

Python lists (not numpy arrays) because the scheduler reads and writes single elements in
its inner loop, where list indexing is several times faster. Positions are the order in which
requests were added; :meth:`RequestTable.outcome` converts the results to arrays.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from mtia_cluster.engine.llm.costs import AS_PER_NS
from mtia_cluster.engine.llm.limits import NOT_SET, Outcome, ReplicaLimits

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3
FEW = 32  # batches up to this size are added with Python lists (numpy's per-call cost dominates)

Keys = list[list[tuple[int, int]] | None]


class RequestTable:
    """Inputs, progress and results of every request added so far."""

    def __init__(self, limits: ReplicaLimits) -> None:
        self.limits = limits
        self.prompt: list[int] = []
        self.outputs: list[int] = []
        self.session: list[int] = []
        self.keys: list[list[tuple[int, int]] | None] = []  # prefix block keys (kvcache)
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
        self.cached_tokens: list[int] = []
        # scale-out network time of the iterations run while admitted (attoseconds): minus
        # the replica's network clock at each admission, plus it at each preemption / finish
        self.net_as: list[int] = []
        self.finished: list[int] = []  # positions in finishing order (rejected at arrival)
        self._stream: list[int] = []  # admissible requests, arrival order
        self._stream_as: list[int] = []  # their arrival times, attoseconds

    def add_many(
        self,
        arrival_ns: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        session_id: np.ndarray | None = None,
        prefilled: np.ndarray | None = None,
        keys: Keys | None = None,
    ) -> None:
        """Queue requests (arrivals non-decreasing, and not before earlier ones).

        Requests that can never fit (see ``ReplicaLimits.fits``) are rejected at arrival.
        `prefilled` marks requests whose prompt KV was computed elsewhere (prefill/decode
        disaggregation): they arrive with the prompt computed and the first token sampled.
        `keys`: per request, its prompt's block keys (``kvcache.block_keys``) or None; with
        prefix caching a request with keys uses the block-key rule, else the session rule.
        """
        arrival = np.asarray(arrival_ns, dtype=np.int64)
        n = len(arrival)
        if n == 0:
            return
        if n <= FEW:  # the engine's windows: a few requests at a time
            sessions = None if session_id is None else np.asarray(session_id).tolist()
            done_list = None if prefilled is None else np.asarray(prefilled, dtype=bool).tolist()
            self._add_few(
                arrival.tolist(),
                np.asarray(input_tokens, dtype=np.int64).tolist(),
                np.asarray(output_tokens, dtype=np.int64).tolist(),
                sessions,
                done_list,
                keys,
            )
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
        ok &= lim.whole_prefill(prompt, outputs) <= lim.max_num_batched_tokens
        done = np.zeros(n, bool) if prefilled is None else np.asarray(prefilled, dtype=bool)
        if np.any(done & (outputs < 2)):  # checked before any state changes
            raise ValueError("a prefilled request must have at least 2 output tokens")
        first = len(self.prompt)
        self.prompt += prompt.tolist()
        self.outputs += outputs.tolist()
        sessions = [-1] * n if session_id is None else np.asarray(session_id).tolist()
        self.session += sessions
        if keys is None or not lim.prefix_caching:
            self.keys += [None] * n
        else:  # a prefilled request's prompt is computed: nothing to look up
            self.keys += [None if d else k for k, d in zip(keys, done.tolist(), strict=True)]
        self._append_progress(ok, done, prompt, arrival)
        positions = np.arange(first, first + n)
        self._stream += positions[ok].tolist()
        self._stream_as += [a * AS_PER_NS for a in arrival[ok].tolist()]  # no int64 overflow
        self.finished += positions[~ok].tolist()

    def _add_few(
        self,
        arrival: list[int],
        prompt: list[int],
        outputs: list[int],
        sessions: list[int] | None,
        done: list[bool] | None,
        keys: Keys | None,
    ) -> None:
        """``add_many`` on Python lists, row by row: the same checks (all before any state
        changes), the same columns (tests compare the two paths)."""
        n, lim = len(arrival), self.limits
        if any(a > b for a, b in pairwise(arrival)) or (
            self._stream_as and arrival[0] * AS_PER_NS < self._stream_as[-1]
        ):
            raise ValueError("arrivals must be added in non-decreasing order")
        done = [False] * n if done is None else done
        if any(d and o < 2 for d, o in zip(done, outputs, strict=True)):
            raise ValueError("a prefilled request must have at least 2 output tokens")
        first, bs, cap = len(self.prompt), lim.block_size, lim.num_blocks
        self.prompt += prompt
        self.outputs += outputs
        self.session += [-1] * n if sessions is None else sessions
        if keys is None or not lim.prefix_caching:
            self.keys += [None] * n
        else:
            self.keys += [None if d else k for k, d in zip(keys, done, strict=True)]
        self._zero_counters(n)
        for i in range(n):
            p, o, d, a = prompt[i], outputs[i], done[i], arrival[i]
            ok = p >= 1 and o >= 1 and -(-(p + o - 1) // bs) <= cap
            ok = ok and lim.whole_prefill(p, o) <= lim.max_num_batched_tokens
            self.computed.append(p if d else 0)
            self.generated.append(1 if d else 0)
            self.state.append(WAITING if ok else DONE)
            stamp = NOT_SET if ok else a
            self.start_ns.append(stamp)
            self.first_ns.append(stamp)
            self.finish_ns.append(stamp)
            self.rejected.append(not ok)
            if ok:
                self._stream.append(first + i)
                self._stream_as.append(a * AS_PER_NS)
            else:
                self.finished.append(first + i)

    def _zero_counters(self, n: int) -> None:
        """Per-request counters of `n` new requests, all zero."""
        for lst in (
            self.offset,
            self.finish_iter,
            self.batch_size,
            self.preemptions,
            self.cached_tokens,
            self.net_as,
        ):
            lst += [0] * n

    def _append_progress(
        self, ok: np.ndarray, done: np.ndarray, prompt: np.ndarray, arrival: np.ndarray
    ) -> None:
        """Progress columns of newly added requests: a prefilled one (`done`) starts with its
        prompt computed and one token generated; one that can never fit (not `ok`) is
        finished and rejected at its arrival, the others wait with no timestamps yet."""
        n = len(ok)
        self.computed += np.where(done, prompt, 0).tolist()
        self.generated += done.astype(np.int64).tolist()
        self._zero_counters(n)
        self.state += np.where(ok, WAITING, DONE).tolist()
        stamps = np.where(ok, NOT_SET, arrival).tolist()
        self.start_ns += stamps
        self.first_ns += stamps
        self.finish_ns += stamps
        self.rejected += (~ok).tolist()

    def outcome(self) -> Outcome:
        """Per-request results so far, as arrays."""
        return Outcome(
            start_ns=np.array(self.start_ns, np.int64),
            first_token_ns=np.array(self.first_ns, np.int64),
            finish_ns=np.array(self.finish_ns, np.int64),
            rejected=np.array(self.rejected, bool),
            batch_size=np.array(self.batch_size, np.int32),
            preemptions=np.array(self.preemptions, np.int32),
            cached_tokens=np.array(self.cached_tokens, np.int64),
        )

    @property
    def outstanding(self) -> int:
        """Requests added and not finished."""
        return len(self.prompt) - len(self.finished)

    def _drop_rows(self, cut: int) -> None:
        """Forget the first `cut` positions (all finished): later ones shift down by `cut`."""
        if any(s != DONE for s in self.state[:cut]):
            raise ValueError("only finished requests can be dropped")
        for lst in (
            self.prompt,
            self.outputs,
            self.session,
            self.keys,
            self.computed,
            self.generated,
            self.offset,
            self.finish_iter,
            self.state,
            self.start_ns,
            self.first_ns,
            self.finish_ns,
            self.rejected,
            self.batch_size,
            self.preemptions,
            self.cached_tokens,
            self.net_as,
        ):
            del lst[:cut]
        self.finished = [r - cut for r in self.finished if r >= cut]
