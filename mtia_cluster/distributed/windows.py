"""The window loop shared by the coordinator and region-owning shard workers.

It is ``Simulation.run``'s loop (route the window's arrivals with the stale-report routers,
advance the shards, refresh the routers; windows without arrivals coalesced up to the next
arrival or metrics boundary) made resumable: it stops at an epoch bound and continues, and
:func:`finish` pads device samples to the run's global end, so shards that own different
regions (and finish at different times) still cover the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.simulation import Simulation

# advance(arrivals routed this window, their global cell ids, window end) -> updates the
# Simulation's outstanding/capacity arrays for the cells it advanced.
Advance = Callable[[RequestBatch, np.ndarray, int], None]
Sample = Callable[[int], None]


@dataclass
class LoopState:
    """Where a window loop stands: next trace row and the start of the next window."""

    lo: int = 0
    t: int = 0
    sampled_ns: int = 0  # last time device counters were sampled

    def finished(self, sim: Simulation, n: int) -> bool:
        return self.lo >= n and not sim.outstanding.any()


def run_windows(
    sim: Simulation,
    trace: RequestBatch,
    state: LoopState,
    advance: Advance,
    sample: Sample,
    stop_ns: int | None = None,
) -> LoopState:
    """Run windows until the trace is drained and idle, or a window would start at stop_ns."""
    step, metrics_ns = sim.scenario.report_interval_ns, sim.scenario.metrics_interval_ns
    n = len(trace)
    while not state.finished(sim, n):
        if stop_ns is not None and state.t >= stop_ns:
            break
        until = state.t + step
        hi = int(np.searchsorted(trace.arrival_ns, until, side="left"))
        if hi == state.lo and state.lo < n:
            # No arrival in this window, so no routing decision needs its reports: advance to
            # the next arrival's window or the next metrics boundary in one step (cells give
            # the same results for any cut), as Simulation.run does.
            next_window = int(trace.arrival_ns[state.lo]) // step * step
            until = min(next_window, (state.t // metrics_ns + 1) * metrics_ns)
            if not sim.outstanding.any():  # nothing in flight: nothing to simulate
                state.t = until
                if until % metrics_ns == 0:
                    sample(until)
                    state.sampled_ns = until
                continue
        arrivals = trace.take(slice(state.lo, hi))
        advance(arrivals, sim._route(arrivals), until)
        for router in sim.routers.values():
            router.refresh(sim.outstanding[router.cells], sim.capacity[router.cells])
        state.lo, state.t = hi, until
        if until % metrics_ns == 0:
            sample(until)
            state.sampled_ns = until
    return state


def sample_through(state: LoopState, end_ns: int, metrics_ns: int, sample: Sample) -> None:
    """Sample at every metrics boundary in (last sample, end_ns]."""
    m = (state.sampled_ns // metrics_ns + 1) * metrics_ns
    while m <= end_ns:
        sample(m)
        state.sampled_ns = m
        m += metrics_ns


def finish(state: LoopState, end_ns: int, metrics_ns: int, sample: Sample) -> None:
    """Pad samples up to the run's global end (other shards may have run longer)."""
    sample_through(state, end_ns, metrics_ns, sample)
    if state.sampled_ns < end_ns:
        sample(end_ns)
        state.sampled_ns = end_ns
