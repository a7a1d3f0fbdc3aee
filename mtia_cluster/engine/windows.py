"""The window loop: the one implementation behind ``Simulation.run`` and the distributed runner.

Per window ``[t, t + report_interval)``: route the window's arrivals with the routers (the
reports of the previous boundary plus their own counts), advance the cells that hold work to
the window's end (the caller's `advance`, which updates ``sim.outstanding``/``sim.capacity``
for the cells it advanced), refresh the routers. Device counters are sampled (the caller's
`sample`) at every metrics boundary. Runs of windows without arrivals are advanced in one
step, up to the next arrival's window or metrics boundary: no routing decision reads their
reports, and cells give identical results for any cut of time.

The loop is resumable: it stops before a window that would start at `stop_ns` and continues
from its :class:`LoopState` (a region-owning shard runs one epoch per call), and
:func:`finish` samples up to the run's end, which for a shard may be another shard's later
end (so every shard covers the same intervals). The engine runs it in one process; the
distributed runner (which the engine never imports) runs it in a coordinator or in shards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mtia_cluster.engine.cell import RequestBatch

if TYPE_CHECKING:
    from mtia_cluster.engine.simulation import Simulation

# advance(arrivals routed this window, their global cell ids, window end): advances the cells
# and writes their new reports into sim.outstanding / sim.capacity.
Advance = Callable[[RequestBatch, np.ndarray, int], None]
Sample = Callable[[int], None]  # sample(t_ns): device counters at a metrics boundary


@dataclass
class EventHooks:
    """Fleet events (failures, drains) seen by the loop; the engine's Simulation fills them.

    `next_boundary()`: time of the next event (a window never runs across it), or None;
    `apply_due(t_ns)`: apply the events due at `t_ns`, returning the requests to route again
    (ahead of the window's arrivals); `unroutable(batch)`: requests whose region has no
    available cell (they finish as rejected)."""

    next_boundary: Callable[[], int | None]
    apply_due: Callable[[int], RequestBatch]
    unroutable: Callable[[RequestBatch], None]


@dataclass
class LoopState:
    """Where a window loop stands: next trace row, start of the next window, last sample."""

    lo: int = 0
    t: int = 0
    sampled_ns: int = 0  # last time device counters were sampled (0: the initial counters)

    def finished(self, sim: Simulation, n: int) -> bool:
        """Every one of the trace's `n` rows routed and no request in flight."""
        return self.lo >= n and not sim.outstanding.any()


def run_windows(
    sim: Simulation,
    trace: RequestBatch,
    state: LoopState,
    advance: Advance,
    sample: Sample,
    stop_ns: int | None = None,
    coalesce_idle: bool = True,
    after_window: Callable[[], None] | None = None,
    events: EventHooks | None = None,
) -> LoopState:
    """Run windows until the trace is drained and idle, or a window would start at stop_ns.

    `coalesce_idle=False` steps through every window (a check: results are the same).
    `after_window()` is called after each window that advanced cells (progress reports).
    """
    step, metrics_ns = sim.scenario.report_interval_ns, sim.scenario.metrics_interval_ns
    n = len(trace)
    # Routers that never read load reports (round robin, random, weighted, or one candidate)
    # make the same choices whatever the window length, and cells give the same results for
    # any cut: windows then run from one metrics (or fleet-event, or epoch) boundary to the
    # next instead of one report interval at a time.
    # After the window of the last arrival the loop steps by the report interval again, so
    # the run ends at the same boundary as when stepping (the first idle one).
    blind = coalesce_idle and not any(r.needs_reports for r in sim.routers.values())
    blind = blind and sim.global_router is None  # global routing reads reports (#16)
    last_ns = (int(trace.arrival_ns[-1]) // step + 1) * step if n else 0
    while not state.finished(sim, n):
        if stop_ns is not None and state.t >= stop_ns:
            break
        retry, boundary = _due_events(events, state.t)
        until = state.t + step
        wide = blind and state.lo < n
        if wide:
            until = min(_blind_until(state.t, step, metrics_ns, boundary, stop_ns), last_ns)
        hi = int(np.searchsorted(trace.arrival_ns, until, side="left"))
        if wide and hi == state.lo and not len(retry) and not sim.outstanding.any():
            state.t = until  # nothing arrives and nothing is in flight
            _sample_at_boundary(state, metrics_ns, sample)
            continue
        if not wide and hi == state.lo and state.lo < n and coalesce_idle and not len(retry):
            # No arrival in this window, so no routing decision needs its reports: jump to the
            # window of the next arrival (or the next metrics boundary, or the next fleet
            # event) in one step.
            next_window = int(trace.arrival_ns[state.lo]) // step * step
            until = min(next_window, (state.t // metrics_ns + 1) * metrics_ns)
            if boundary is not None:  # boundary > t: events due at t were applied
                until = min(until, boundary)
            if not sim.outstanding.any():  # nothing in flight: nothing to simulate
                state.t = until
                _sample_at_boundary(state, metrics_ns, sample)
                continue
        arrivals = trace.take(slice(state.lo, hi))
        if len(retry):  # requests of failed cells go ahead of the window's arrivals
            arrivals = RequestBatch.concat([retry, arrivals])
        arrivals, cell = sim.route_window(arrivals)  # rows carry their serving region (#16)
        if np.any(cell < 0):  # no cell of the region available (fleet events)
            nowhere = cell < 0
            if events is None:
                raise RuntimeError("a router found no cell, but the run has no fleet events")
            events.unroutable(arrivals.take(nowhere))
            arrivals, cell = arrivals.take(~nowhere), cell[~nowhere]
        advance(arrivals, cell, until)
        for router in sim.routers.values():
            router.refresh(sim.outstanding[router.cells], sim.capacity[router.cells])
        state.lo, state.t = hi, until
        _sample_at_boundary(state, metrics_ns, sample)
        if after_window is not None:
            after_window()
    return state


def _blind_until(
    t_ns: int, step_ns: int, metrics_ns: int, event_ns: int | None, stop_ns: int | None
) -> int:
    """End of a window when routing reads no reports: the next metrics boundary, cut at the
    next fleet event and at the epoch bound (each a multiple of the report interval)."""
    until = (t_ns // metrics_ns + 1) * metrics_ns
    if event_ns is not None:
        until = min(until, event_ns)
    if stop_ns is not None:
        until = min(until, max(stop_ns, t_ns + step_ns))
    return until


def _due_events(events: EventHooks | None, t_ns: int) -> tuple[RequestBatch, int | None]:
    """Apply the fleet events due at `t_ns`: (requests to route again, next event time)."""
    if events is None:
        return _NO_ROWS, None
    boundary = events.next_boundary()
    if boundary is None or boundary > t_ns:
        return _NO_ROWS, boundary
    retry = events.apply_due(t_ns)
    return retry, events.next_boundary()


_NO_ROWS = RequestBatch.empty()


def _sample_at_boundary(state: LoopState, metrics_ns: int, sample: Sample) -> None:
    if state.t % metrics_ns == 0:
        sample(state.t)
        state.sampled_ns = state.t


def finish(state: LoopState, end_ns: int, metrics_ns: int, sample: Sample) -> None:
    """Sample every metrics boundary in (last sample, end_ns], then end_ns itself.

    For a run in one process `end_ns` is the loop's own end (``state.t``), every boundary
    before it has been sampled, and this adds the final partial interval. A shard pads up
    to the run's global end (other shards may have run longer)."""
    m = (state.sampled_ns // metrics_ns + 1) * metrics_ns
    while m <= end_ns:
        sample(m)
        state.sampled_ns = m
        m += metrics_ns
    if state.sampled_ns < end_ns:
        sample(end_ns)
        state.sampled_ns = end_ns
