"""Which timeline moments get an exact replay, and running them.

- `gate`: when a wave's gate is judged, the highest-load row (demand / capacity) of its
  regions within the gate window where new racks serve; the gate uses its replayed
  new-cohort p99 and error rate (hook passed to `run_timeline`).
- `wave_peak`: per wave, its peak-load row: the highest demand / capacity among its regions
  while it is swapping, baking or rolling back (for a region whose capacity does not change,
  its peak-demand hour; during a swap, the hour when racks out and demand together bite).
- `worst_headroom`: the row of least headroom of the whole run.
Rows of a region that is down (a whole-region outage) are never picked; a region receiving
failover demand is replayed at its offered demand (own + received).
A row replayed once is not replayed again: a second kind reuses its figures. With
`replay.drill`, each moment also gets an N-1 drill replay (drill.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog
from mtia_cluster.rollout.drill import run_drill
from mtia_cluster.rollout.moment_replay import moment_at, replay_moment
from mtia_cluster.rollout.plan import Plan
from mtia_cluster.rollout.slice import EngineCohort
from mtia_cluster.rollout.timeline import GateHook, TimelineResult

ACTIVE = ("swapping", "baking", "rolling_back")


class MomentReplayer:
    """Replays moments of one run (and their N-1 drills), caching rows by timeline row."""

    def __init__(self, plan: Plan, cat: Catalog, ecs: dict[str, EngineCohort]) -> None:
        self.plan, self.cat, self.ecs = plan, cat, ecs
        self.region_index = {r.name: i for i, r in enumerate(plan.regions)}
        self._done: dict[int, dict[str, Any]] = {}

    def replay(self, res: TimelineResult, kind: str, wave: int, row: int) -> dict[str, Any]:
        """The `replays/` row of timeline row `row` picked as `kind` for `wave`."""
        if row not in self._done:
            m = moment_at(res, kind, wave, row)
            index = self.region_index[m.region]
            self._done[row] = replay_moment(self.plan, self.cat, self.ecs, m, index).to_row()
            if self.plan.replay.drill is not None:  # N-1: a second replay with racks failing
                drill, _, _ = run_drill(self.plan, self.cat, self.ecs, m, index)
                self._done[row].update(drill.to_row())
        return {**self._done[row], "kind": kind, "wave": wave}

    def gate_hook(self) -> GateHook:
        """The timeline's gate hook: a gate judged on its moment's replayed row."""
        return lambda res, row, wave: self.replay(res, "gate", wave, row)


def pick_moments(res: TimelineResult) -> list[tuple[str, int, int]]:
    """(kind, wave, timeline row) of every wave's peak and the run's worst-headroom row."""
    tl = res.timeline
    wave = np.asarray(tl["wave"])
    state = np.asarray(tl["rollout_state"])
    offered = np.asarray(tl["offered_rps"], dtype=np.float64)
    capacity = np.asarray(tl["capacity_rps"], dtype=np.float64)
    up = np.asarray(tl["region_up"], dtype=bool)
    load = np.divide(offered, capacity, out=np.full(len(offered), np.inf), where=capacity > 0)
    out: list[tuple[str, int, int]] = []
    for i in range(len(res.waves)):
        rows = np.flatnonzero((wave == i) & np.isin(state, ACTIVE) & up)
        if len(rows):
            out.append(("wave_peak", i, int(rows[np.argmax(load[rows])])))
    head = np.where(up, np.asarray(tl["headroom"], dtype=np.float64), np.inf)
    if up.any():
        j = int(np.argmin(head))
        out.append(("worst_headroom", int(wave[j]), j))
    return out


def replay_moments(
    replayer: MomentReplayer,
    res: TimelineResult,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Gate replays made during the timeline, then the picked moments, in that order.
    `progress(moments done, moments)` is called before each moment and at the end."""
    rows = list(res.replays)
    moments = pick_moments(res)
    for i, (kind, w, j) in enumerate(moments):
        if progress is not None:
            progress(i, len(moments))
        rows.append(replayer.replay(res, kind, w, j))
    if progress is not None:
        progress(len(moments), len(moments))
    return rows
