"""The window loop: the one implementation behind ``Simulation.run`` and the distributed runner.

``run_windows(plane, trace, state, hooks)``. Per window ``[t, t + report_interval)``: apply
the fleet events due at ``t`` (``hooks.events``), route the window's arrivals with the
routing plane (engine/routing.py: the reports of the previous boundary plus the routers' own
counts), advance the cells that hold work to the window's end (``hooks.advance``, which
returns their load reports), hand the reports to the plane (``plane.refresh``). Device
counters are sampled (``hooks.sample``) at every metrics boundary. A window runs on to the
start of the window of the next arrival (:meth:`WindowClock.next_window_end`): no routing
decision reads the reports in between, and cells give identical results for any cut of
time, so a sparse trace costs one advance per window with arrivals.

The loop is resumable: it stops before a window that would start at ``hooks.stop_ns`` and
continues from its :class:`LoopState` (a region-owning shard runs one epoch per call), and
:func:`finish` samples up to the run's end, which for a shard may be another shard's later
end (so every shard covers the same intervals). The engine runs it in one process; the
distributed runner (which the engine never imports) runs it in a coordinator or in shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.routing import RoutingPlane
from mtia_cluster.engine.shard import Reports

# advance(arrivals routed this window, their global cell ids, window end) -> the load
# reports of the cells it advanced (``LoadReports.arrays()``, one per shard)
Advance = Callable[[RequestBatch, np.ndarray, int], Iterable[Reports]]
Sample = Callable[[int], None]  # sample(t_ns): device counters at a metrics boundary
Span = Callable[[RequestBatch, "LoopState", "LoopHooks"], bool]  # see LoopHooks

_NO_ROWS = RequestBatch.empty()


def _no_cell(batch: RequestBatch) -> None:
    raise RuntimeError("a router found no cell, but the run has no fleet events")


@dataclass
class EventHooks:
    """Fleet events (failures, drains) seen by the loop (``events.fleet_event_hooks``).

    `next_boundary()`: time of the next event (a window never runs across it), or None;
    `apply_due(t_ns)`: apply the events due at `t_ns`, returning the requests to route again
    (ahead of the window's arrivals); `unroutable(batch)`: requests whose region has no
    available cell (they finish as rejected). The default: no events (and a router that
    finds no cell is a bug)."""

    next_boundary: Callable[[], int | None] = lambda: None
    apply_due: Callable[[int], RequestBatch] = lambda t_ns: _NO_ROWS
    unroutable: Callable[[RequestBatch], None] = _no_cell


@dataclass
class LoopHooks:
    """What the loop calls out to; each default does nothing.

    `advance`: see ``Advance``; `sample`: device counters at a metrics boundary; `events`:
    fleet events; `stop_ns`: stop before a window that would start at or after it (None:
    run to the end); `after_window()`: after each window that advanced cells (progress);
    `coalesce_idle=False` steps through every window (a check: results are the same);
    `quiet_until()`: a time before which no request in flight finishes, absent new
    submissions (``Shard.quiet_until``; None: not known), which lets the drain after the
    last arrival skip windows in which nothing can finish; `span(trace, state, hooks)`:
    runs windows from `state` the loop's way in one go when it can (the compiled LLM fleet,
    engine/llm/fleet.py: routing, advancing, emitting and sampling exactly as the loop
    would), returning whether it ran any; else the loop runs the next window."""

    advance: Advance = lambda arrivals, cell, until_ns: ()
    sample: Sample = lambda t_ns: None
    events: EventHooks = field(default_factory=EventHooks)
    stop_ns: int | None = None
    after_window: Callable[[], None] = lambda: None
    coalesce_idle: bool = True
    quiet_until: Callable[[], int | None] = lambda: None
    span: Span | None = None


@dataclass
class LoopState:
    """Where a window loop stands: next trace row, start of the next window, last sample."""

    lo: int = 0
    t: int = 0
    sampled_ns: int = 0  # last time device counters were sampled (0: the initial counters)

    def finished(self, plane: RoutingPlane, n: int) -> bool:
        """Every one of the trace's `n` rows routed and no request in flight."""
        return self.lo >= n and not plane.outstanding.any()


def run_windows(
    plane: RoutingPlane, trace: RequestBatch, state: LoopState, hooks: LoopHooks
) -> LoopState:
    """Run windows until the trace is drained and idle, or a window would start at
    ``hooks.stop_ns``."""
    clock = WindowClock.of(plane, trace, hooks)
    while not state.finished(plane, len(trace)) and not clock.stopped(state.t):
        if hooks.span is not None and hooks.span(trace, state, hooks):
            continue
        retry, event_ns = _due_events(hooks.events, state.t)
        until = clock.next_window_end(state, event_ns, retrying=len(retry) > 0)
        hi = int(np.searchsorted(trace.arrival_ns, until, side="left"))
        idle = hi == state.lo < len(trace) and not len(retry)
        if clock.coalesce and idle and not plane.outstanding.any():
            state.t = until  # nothing arrives and nothing is in flight: nothing to simulate
            _sample_at_boundary(state, clock.metrics_ns, hooks.sample)
            continue
        arrivals = trace.take(slice(state.lo, hi))
        if len(retry):  # requests of failed cells go ahead of the window's arrivals
            arrivals = RequestBatch.concat([retry, arrivals])
        arrivals = plane.place(arrivals)  # the serving region of each row (#16)
        arrivals, cell = _routable(arrivals, plane.route(arrivals), hooks.events)
        plane.refresh(hooks.advance(arrivals, cell, until))
        state.lo, state.t = hi, until
        _sample_at_boundary(state, clock.metrics_ns, hooks.sample)
        hooks.after_window()
    return state


@dataclass(frozen=True)
class WindowClock:
    """Where windows end: one report interval, or longer when no routing decision needs the
    reports of the windows skipped (see `next_window_end`)."""

    step_ns: int
    metrics_ns: int
    arrival_ns: np.ndarray  # the trace's, sorted
    blind: bool  # routing reads no load reports (and idle windows are coalesced)
    coalesce: bool
    stop_ns: int | None
    quiet_until: Callable[[], int | None]

    @classmethod
    def of(cls, plane: RoutingPlane, trace: RequestBatch, hooks: LoopHooks) -> WindowClock:
        sc, coalesce = plane.scenario, hooks.coalesce_idle
        blind = coalesce and not plane.reads_reports
        return cls(
            sc.report_interval_ns, sc.metrics_interval_ns, trace.arrival_ns, blind, coalesce,
            hooks.stop_ns, hooks.quiet_until,
        )  # fmt: skip

    def stopped(self, t_ns: int) -> bool:
        """A window starting at `t_ns` belongs to the next call (the epoch bound)."""
        return self.stop_ns is not None and t_ns >= self.stop_ns

    def next_window_end(self, state: LoopState, event_ns: int | None, retrying: bool) -> int:
        """End of the window starting at ``state.t``, given the next fleet event's time.

        One report interval when stepping (``coalesce_idle=False``). Otherwise the window
        runs on, cut at the next metrics boundary, the next fleet event and the epoch
        bound (each a multiple of the report interval):

        * the trace's rows are all routed (the drain): to the first boundary at which a
          request may have finished (``quiet_until``; one interval when it is not known or
          when requests are routed again in this window), so the run ends at the same
          boundary as when stepping: the first idle one;

        * routing reads no reports (round robin, random, weighted, or one candidate): the
          routers make the same choices whatever the window length, so the window runs
          until the window of the last arrival;
        * routing reads reports: the next routing decision is at the start of the window
          of the next arrival after this window's own (retried requests are this
          window's), and no decision reads the reports in between, so the window runs to
          that start (a window without arrivals as well as the window of an arrival).
        """
        t, lo, step = state.t, state.lo, self.step_ns
        arrival = self.arrival_ns
        if not self.coalesce:
            return t + step
        until = (t // self.metrics_ns + 1) * self.metrics_ns
        if event_ns is not None:  # event_ns > t: the events due at t were applied
            until = min(until, event_ns)
        if self.stop_ns is not None:
            until = min(until, max(self.stop_ns, t + step))
        if lo >= len(arrival):
            return min(until, self._drain_end(t, retrying))
        if not self.blind:
            own = retrying or int(arrival[lo]) < t + step  # rows routed at t
            nxt = int(np.searchsorted(arrival, t + step, side="left")) if own else lo
            if nxt >= len(arrival):
                return t + step
            return min(until, int(arrival[nxt]) // step * step)
        last_ns = (int(arrival[-1]) // step + 1) * step
        return min(until, last_ns)

    def _drain_end(self, t: int, retrying: bool) -> int:
        """After the last arrival: the first boundary after `t` by which a request may have
        finished (one whose finish is at or after ``quiet_until()`` is returned by the
        window ending at the boundary after it); `t` + one interval when the cells' bound
        is not known or this window routes requests again."""
        step = self.step_ns
        quiet = None if retrying else self.quiet_until()
        if quiet is None:
            return t + step
        return max(t + step, (quiet // step + 1) * step)


def _routable(
    arrivals: RequestBatch, cell: np.ndarray, events: EventHooks
) -> tuple[RequestBatch, np.ndarray]:
    """The routed requests; those with no available cell (-1) go to ``events.unroutable``."""
    nowhere = cell < 0
    if not nowhere.any():
        return arrivals, cell
    events.unroutable(arrivals.take(nowhere))
    return arrivals.take(~nowhere), cell[~nowhere]


def _due_events(events: EventHooks, t_ns: int) -> tuple[RequestBatch, int | None]:
    """Apply the fleet events due at `t_ns`: (requests to route again, next event time)."""
    boundary = events.next_boundary()
    if boundary is None or boundary > t_ns:
        return _NO_ROWS, boundary
    retry = events.apply_due(t_ns)
    return retry, events.next_boundary()


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
