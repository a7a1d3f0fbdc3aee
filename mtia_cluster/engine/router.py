"""Region routers: small policy functions over stale load reports plus own counts.

A router serves one (region, service): its candidates are the cells of the pools serving
that service in that region. At each window boundary it receives fresh reports (outstanding
requests, capacity weight); inside the window it only adds what it sent itself. Each policy
maps the window's arrivals (in order) to candidate indices, vectorized, with the same result
as choosing request by request:

* ``round_robin``: candidates in turn, continuing across windows;
* ``random``: uniform, from the router's own stream;
* ``weighted``: random with probability proportional to capacity (routing capacity,
  engine/capacity.py: items/s of an R&R host, requests/s of a synthetic cell, tokens/s of
  an LLM replica);
* ``least_outstanding``: each request to the candidate with the fewest outstanding + sent
  (ties: lowest index), request by request on a heap of the candidates that can receive
  one (compiled, engine/least_loaded.py);
* ``p2c``: power of two choices: two distinct random candidates, the less loaded one
  (outstanding + sent; ties: the first drawn), request by request (compiled);
* ``prefix_affinity`` / ``session_affinity``: KV-aware, request by request
  (:mod:`.kv_router`): cached prefix blocks or the session's last candidate, weighed against
  load (these read the requests, not only their number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from mtia_cluster.config.models import AFFINITY_WEIGHT, LOAD_WEIGHT, POLICIES
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.kv_router import AFFINITY_POLICIES, AffinityRouting
from mtia_cluster.engine.least_loaded import least_loaded


@dataclass
class RouterState:
    """What one router knows: last reports and its own position and stream."""

    rng: np.random.Generator
    outstanding: np.ndarray  # int64 per candidate, from the last reports
    capacity: np.ndarray  # float64 per candidate, from the last reports
    next_rr: int = 0
    sent: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # float64 per candidate: routing capacity (engine/capacity.py), fixed at build; empty:
    # the reported capacity
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


Policy = Callable[[RouterState, int], np.ndarray]


def round_robin(state: RouterState, n: int) -> np.ndarray:
    k = len(state.outstanding)
    out = (state.next_rr + np.arange(n)) % k
    state.next_rr = int((state.next_rr + n) % k)
    return out


def uniform_random(state: RouterState, n: int) -> np.ndarray:
    # one float per request: the stream does not depend on how requests are grouped into
    # calls (Generator.integers buffers 32-bit halves within a call)
    k = len(state.outstanding)
    return np.minimum((state.rng.random(n) * k).astype(np.int64), k - 1)


def weighted(state: RouterState, n: int) -> np.ndarray:
    """Random with probability proportional to capacity (the routing capacity when given,
    engine/capacity.py: an LLM replica's token rate, not its accelerator count)."""
    cum = np.cumsum(state.weight if len(state.weight) else state.capacity)
    u = state.rng.random(n) * cum[-1]
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def least_outstanding(state: RouterState, n: int) -> np.ndarray:
    """Each request to the candidate with the fewest outstanding + sent (ties: lowest index;
    engine/least_loaded.py: a partial heap, not a sort of every candidate)."""
    return least_loaded(state.outstanding + state.sent, n)


def p2c(state: RouterState, n: int) -> np.ndarray:
    k = len(state.outstanding)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    first = state.rng.integers(0, k, size=n)
    second = (first + state.rng.integers(1, k, size=n)) % k  # distinct from first
    return _two_choices(state.outstanding + state.sent, first, second)


@njit(cache=True)
def _two_choices(load: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The less loaded of each pair (ties: the first drawn), counting each choice."""
    load = load.copy()
    out = np.empty(first.shape[0], dtype=np.int64)
    for i in range(first.shape[0]):
        a, b = first[i], second[i]
        c = b if load[b] < load[a] else a
        load[c] += 1
        out[i] = c
    return out


POLICY_FUNCTIONS: dict[str, Policy] = {
    "round_robin": round_robin,
    "random": uniform_random,
    "weighted": weighted,
    "least_outstanding": least_outstanding,
    "p2c": p2c,
}
assert set(POLICY_FUNCTIONS) | set(AFFINITY_POLICIES) == set(POLICIES)


class Router:
    """One (region, service) router over `cells` (global cell ids)."""

    def __init__(
        self,
        policy: str,
        cells: np.ndarray,
        capacity: np.ndarray,
        rng: np.random.Generator,
        weights: tuple[float, float] = (AFFINITY_WEIGHT, LOAD_WEIGHT),
        routing_capacity: np.ndarray | None = None,
    ) -> None:
        self.cells = np.asarray(cells, dtype=np.int64)
        k = len(self.cells)
        self.affinity = AffinityRouting(policy, k, weights) if policy in AFFINITY_POLICIES else None
        # affinity policies route in route() (they read the requests), never through this
        self.policy = POLICY_FUNCTIONS.get(policy, least_outstanding)
        self.state = RouterState(
            rng=rng,
            outstanding=np.zeros(k, dtype=np.int64),
            capacity=np.array(capacity, dtype=np.float64),  # a copy: refresh writes into it
            sent=np.zeros(k, dtype=np.int64),
            weight=np.zeros(0) if routing_capacity is None else np.asarray(routing_capacity, float),
        )
        self.available = np.ones(k, dtype=bool)  # fleet events: failed or drained cells
        self.all_up = True  # every candidate available
        # policies reading load reports depend on the window cuts; the others do not
        self.needs_reports = policy in ("least_outstanding", "p2c", *AFFINITY_POLICIES) and k > 1
        self.needs_requests = self.affinity is not None  # route() needs the requests
        self._local = {int(c): i for i, c in enumerate(self.cells)}

    def set_available(self, cells: np.ndarray, available: bool) -> None:
        """Take cells (global ids; others ignored) out of routing or put them back."""
        self.available[np.isin(self.cells, cells)] = available
        self.all_up = bool(self.available.all())

    def share(self, outstanding: np.ndarray, capacity: np.ndarray, sent: np.ndarray) -> None:
        """Read reports from, and count own sends into, these arrays (one entry per
        candidate): views of a routing plane's arrays, which the plane updates in place, so
        that a window's reports cost nothing per router (engine/routing.py)."""
        k = len(self.cells)
        if not (len(outstanding) == len(capacity) == len(sent) == k):
            raise ValueError(f"shared report arrays must have {k} entries (one per candidate)")
        self.state.outstanding, self.state.capacity, self.state.sent = outstanding, capacity, sent

    def refresh(self, outstanding: np.ndarray, capacity: np.ndarray) -> None:
        """New reports (one per candidate, in `cells` order); own counts restart. Written
        into the router's arrays (shared ones included)."""
        self.state.outstanding[:] = outstanding
        self.state.capacity[:] = capacity
        self.state.sent[:] = 0

    def apply_prefix_events(self, cells: np.ndarray, hashes: np.ndarray, signs: np.ndarray) -> None:
        """Prefix-cache events reported by this router's cells (global ids), in order."""
        if self.affinity is not None:
            local = np.array([self._local[c] for c in cells.tolist()], dtype=np.int64)
            self.affinity.apply_events(local, hashes, signs)

    def route(self, n: int, requests: RequestBatch | None = None) -> np.ndarray:
        """Global cell ids for the next `n` requests, in arrival order (-1 for every request
        when no cell is available: the caller rejects them). `requests` (those n rows) is
        needed when ``needs_requests``."""
        if self.affinity is not None:
            up = np.flatnonzero(self.available)
            if len(up) == 0:
                return np.full(n, -1, dtype=np.int64)
            if requests is None or len(requests) != n:
                raise ValueError("affinity routing needs the requests")
            s = self.state
            local = self.affinity.route((s.outstanding + s.sent)[up], up, requests)
        elif self.all_up:
            local = self.policy(self.state, n)
        else:
            up = np.flatnonzero(self.available)
            if len(up) == 0:
                return np.full(n, -1, dtype=np.int64)
            s = self.state  # the policy sees only the available candidates
            weight = s.weight[up] if len(s.weight) else s.weight
            sub = RouterState(
                s.rng, s.outstanding[up], s.capacity[up], s.next_rr, s.sent[up], weight
            )
            local = up[self.policy(sub, n)]
            s.next_rr = sub.next_rr
        self.state.sent += np.bincount(local, minlength=len(self.cells))
        return self.cells[local]
