"""Scheduler limits of one LLM replica, and the per-request outcome arrays.

Shared by the fast scheduler (:mod:`.scheduler`) and the one-iteration-at-a-time reference
(the test oracle `tests/engine_llm/llm_reference.py`), which must produce identical
:class:`Outcome` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, get_args

import numpy as np

from mtia_cluster.config.models import CapacityPolicy
from mtia_cluster.errors import UserError

NOT_SET = -1  # timestamp of an event that has not happened (yet)
# KV admission policies (ReplicaLimits.capacity_policy), named after TensorRT-LLM's
# CapacitySchedulerPolicy (https://nvidia.github.io/TensorRT-LLM/performance/
# performance-tuning-guide/useful-runtime-flags.html#capacity-scheduler-policy):
# * max_utilization: admit while the first chunk's KV blocks are free and evict (preempt by
#   recompute) the newest running request when a decode finds no block -- vLLM's scheduler
#   and TRT-LLM's MAX_UTILIZATION (which pauses instead of recomputing);
# * guaranteed_no_evict: admit only while the KV blocks every running request needs to its
#   completion, plus the candidate's own, fit in the cache -- TRT-LLM's default, "a started
#   request is never paused". The completion length reserved is the request's output length
#   (the trace's), or ``max_tokens`` when that is set and longer (a real engine reserves the
#   request's max_tokens, which is at least its output).
CAPACITY_POLICIES: tuple[str, ...] = get_args(CapacityPolicy)
T = TypeVar("T", int, np.ndarray)


@dataclass(frozen=True)
class ReplicaLimits:
    """vLLM-style scheduler limits.

    max_num_batched_tokens: token budget of one iteration (decodes + prefill chunks).
    max_num_seqs: most requests running (holding KV) at once.
    block_size: KV-cache allocation unit, in tokens.
    kv_capacity_tokens: KV tokens the replica can hold (from the cost model); the cache has
        ``kv_capacity_tokens // block_size`` blocks.
    prefix_caching: reuse full KV blocks across requests: by the requests' hash-chain block
        keys when they have them (shared blocks, LRU eviction), else per ``session_id``
        (finished requests' blocks reused by the session's later requests, LRU eviction).
    capacity_policy: KV admission policy, one of ``CAPACITY_POLICIES`` (see there).
    max_tokens: guaranteed_no_evict reserves ``max(output, max_tokens)`` output tokens per
        request (None: the request's own output length).
    chunked_prefill: a prompt may be split over iterations (vLLM's chunked prefill: the
        admitted request's chunk is cut to the budget left). False: TensorRT-LLM without
        context chunking (its GptManager default in 2024, ``enableChunkedContext`` false): a
        request is admitted only when all its uncomputed tokens fit in the budget left, and
        is prefilled whole in that iteration; admission stops at a head that does not fit.
    """

    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    block_size: int = 16
    kv_capacity_tokens: int = 100_000
    prefix_caching: bool = False
    capacity_policy: str = "max_utilization"
    max_tokens: int | None = None
    chunked_prefill: bool = True

    @property
    def num_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size

    def validate(self, file: str | None = None, prefix: str = "") -> None:
        """Raise UserError for limits no request could be served under."""

        def bad(name: str, message: str, value: object) -> UserError:
            field = f"{prefix}.{name}" if prefix else name
            return UserError(message, file=file, field=field, value=value)

        if self.capacity_policy not in CAPACITY_POLICIES:
            message = f"must be one of {', '.join(CAPACITY_POLICIES)}"
            raise bad("capacity_policy", message, self.capacity_policy)
        if self.max_tokens is not None and self.max_tokens < 1:
            raise bad("max_tokens", "must be >= 1", self.max_tokens)
        if self.max_num_seqs < 1:
            raise bad("max_num_seqs", "must be >= 1", self.max_num_seqs)
        if self.block_size < 1:
            raise bad("block_size", "must be >= 1", self.block_size)
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise bad(
                "max_num_batched_tokens",
                f"must be >= max_num_seqs ({self.max_num_seqs}) so that every running "
                "request can decode in each iteration",
                self.max_num_batched_tokens,
            )
        if self.num_blocks < 1:
            raise bad(
                "kv_capacity_tokens",
                f"KV cache holds less than one block of {self.block_size} tokens",
                self.kv_capacity_tokens,
            )

    @property
    def no_evict(self) -> bool:
        return self.capacity_policy == "guaranteed_no_evict"

    def reserved_kv_tokens(self, input_tokens: int, output_tokens: int) -> int:
        """KV tokens guaranteed_no_evict holds for a request until it completes, at most the
        whole cache (a request that fits is never refused for its max_tokens alone)."""
        want = input_tokens + max(output_tokens, self.max_tokens or 0) - 1
        return min(want, self.num_blocks * self.block_size)

    def fits(self, input_tokens: int, output_tokens: int) -> bool:
        """Whether a request can ever be served: valid lengths, KV for all its tokens, and
        without chunked prefill every context it may have to prefill whole within the token
        budget (its prompt; after a preemption its prompt and all but its last output token)."""
        if input_tokens < 1 or output_tokens < 1:
            return False
        kv_tokens = input_tokens + output_tokens - 1  # the last token's KV is never written
        if self.whole_prefill(input_tokens, output_tokens) > self.max_num_batched_tokens:
            return False
        return -(-kv_tokens // self.block_size) <= self.num_blocks

    def whole_prefill(self, input_tokens: T, output_tokens: T) -> T:
        """The longest context a request may have to prefill in one iteration: 0 with
        chunked prefill; else its prompt, or, when it can be preempted (recomputed), its
        prompt and all but its last output token. Scalars or arrays."""
        if self.chunked_prefill:
            return 0 * input_tokens
        return input_tokens if self.no_evict else input_tokens + output_tokens - 1


@dataclass
class Outcome:
    """Per-request results, indexed by request position (int64 ns, NOT_SET if not yet)."""

    start_ns: np.ndarray  # first scheduled in an iteration
    first_token_ns: np.ndarray  # end of the iteration that sampled the first output token
    finish_ns: np.ndarray  # end of the iteration that sampled the last output token
    rejected: np.ndarray  # bool: can never fit (see ReplicaLimits.fits); times = arrival
    batch_size: np.ndarray  # int32: requests in the iteration that sampled the first token
    preemptions: np.ndarray  # int32: times evicted and recomputed
    cached_tokens: np.ndarray  # int64: prompt tokens reused from the prefix cache (all admissions)

    @classmethod
    def empty(cls, n: int) -> Outcome:
        return cls(
            start_ns=np.full(n, NOT_SET, np.int64),
            first_token_ns=np.full(n, NOT_SET, np.int64),
            finish_ns=np.full(n, NOT_SET, np.int64),
            rejected=np.zeros(n, bool),
            batch_size=np.zeros(n, np.int32),
            preemptions=np.zeros(n, np.int32),
            cached_tokens=np.zeros(n, np.int64),
        )


def tpot_ns(outcome: Outcome, output_tokens: np.ndarray) -> np.ndarray:
    """Time per output token after the first: (finish - first_token) / (output - 1).

    NaN for requests with one output token, rejected or unfinished ones.
    """
    out = np.asarray(output_tokens, dtype=np.float64)
    done = (outcome.finish_ns != NOT_SET) & ~outcome.rejected & (out > 1)
    result = np.full(len(out), np.nan)
    span = (outcome.finish_ns - outcome.first_token_ns).astype(np.float64)
    result[done] = span[done] / (out[done] - 1)
    return result
