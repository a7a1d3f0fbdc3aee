"""One region's racks during a rollout: counts by version and state, swaps in flight, failures.

Versions are roles: "old" (what is swapped away from) and "new" (the target). A rack is in one
of the STATES at every step; a swap moves it draining (old, out of service) -> installing
(new) -> burn-in (new) -> serving (new); a rollback runs the same pipeline new -> old. Failed
racks keep their version and return to serving after their repair time. Racks appear only
through `add_racks` (installing -> burn-in -> serving) and disappear only through
`remove_racks` (draining -> gone), each logged as an event, which the tests check at every
step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.units import NS_PER_H

STATES = ("serving", "draining", "installing", "burnin", "failed")
VERSIONS = ("old", "new")
REMOVED = "removed"  # a Swap's dst for a rack being decommissioned


@dataclass
class Swap:
    """One rack moving between versions: its current phase and when that phase ends."""

    phase: str  # draining | installing | burnin
    end_ns: int
    src: str
    dst: str  # a version, or REMOVED
    install_ns: int | None = None  # phase lengths of this rack (None: the region's)
    burnin_ns: int | None = None


@dataclass
class RegionState:
    """Mutable state of one region; events are appended as (time_ns, kind, version, racks)."""

    name: str
    counts: dict[tuple[str, str], int]
    drain_ns: int
    install_ns: int
    burnin_ns: int
    swaps: list[Swap] = field(default_factory=list)
    repairs: list[tuple[int, str]] = field(default_factory=list)  # (repair_ns, version)
    tokens: float = 0.0
    arriving: int = 0  # added racks not yet serving (not "out of service": never served)
    events: list[tuple[int, str, str, int]] = field(default_factory=list)

    @classmethod
    def new(cls, name: str, old: int, new: int, drain_h: float, install_h: float, burnin_h: float):
        counts = {(v, s): 0 for v in VERSIONS for s in STATES}
        counts[("old", "serving")] = old
        counts[("new", "serving")] = new
        h = NS_PER_H
        return cls(name, counts, round(drain_h * h), round(install_h * h), round(burnin_h * h))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def in_service_base(self) -> int:
        """Racks the drain budget is a fraction of: all but those still arriving."""
        return self.total - self.arriving

    def out_of_service(self) -> int:
        """Racks taken out of service: swapping, being removed or failed (what the drain
        budget limits); added racks still installing never served and do not count."""
        serving = self.counts[("old", "serving")] + self.counts[("new", "serving")]
        return self.total - serving - self.arriving

    def _move(self, version: str, src: str, dst_version: str, dst: str, n: int = 1) -> None:
        self.counts[(version, src)] -= n
        self.counts[(dst_version, dst)] += n

    def advance(self, now_ns: int) -> None:
        """Move every swap whose phase has ended on to its next phase (zero-length phases
        pass through at once)."""
        still: list[Swap] = []
        for s in self.swaps:
            install_ns = self.install_ns if s.install_ns is None else s.install_ns
            burnin_ns = self.burnin_ns if s.burnin_ns is None else s.burnin_ns
            while s.end_ns <= now_ns:
                if s.phase == "draining" and s.dst == REMOVED:
                    self.counts[(s.src, "draining")] -= 1
                    self.events.append((s.end_ns, "rack_gone", s.src, 1))
                    break
                if s.phase == "draining":
                    self._move(s.src, "draining", s.dst, "installing")
                    s.phase, s.end_ns = "installing", s.end_ns + install_ns
                    self.events.append((s.end_ns - install_ns, "install_start", s.dst, 1))
                elif s.phase == "installing":
                    self._move(s.dst, "installing", s.dst, "burnin")
                    s.phase, s.end_ns = "burnin", s.end_ns + burnin_ns
                    self.events.append((s.end_ns - burnin_ns, "burnin_start", s.dst, 1))
                else:
                    self._move(s.dst, "burnin", s.dst, "serving")
                    self.events.append((s.end_ns, "serve", s.dst, 1))
                    self.arriving -= s.src == s.dst  # an added rack (swaps change version)
                    break
            else:
                still.append(s)
        self.swaps = still

    def start_swaps(self, now_ns: int, src: str, dst: str, n: int) -> int:
        """Start draining up to `n` serving `src` racks towards `dst`; returns how many."""
        n = min(n, self.counts[(src, "serving")])
        for _ in range(n):
            self._move(src, "serving", src, "draining")
            self.swaps.append(Swap("draining", now_ns + self.drain_ns, src, dst))
        if n:
            self.events.append((now_ns, "drain_start", src, n))
        return n

    def add_racks(
        self, now_ns: int, version: str, n: int, install_ns: int | None, burnin_ns: int | None
    ) -> None:
        """`n` new racks of `version` arrive and start installing (greenfield)."""
        self.counts[(version, "installing")] += n
        self.arriving += n
        end = now_ns + (self.install_ns if install_ns is None else install_ns)
        for _ in range(n):
            self.swaps.append(Swap("installing", end, version, version, install_ns, burnin_ns))
        self.events.append((now_ns, "rack_add", version, n))

    def remove_racks(self, now_ns: int, version: str, n: int, drain_ns: int | None) -> int:
        """Take up to `n` serving racks of `version` out to be removed; returns how many."""
        n = max(0, min(n, self.counts[(version, "serving")]))
        self.events.append((now_ns, "rack_remove", version, n))  # logged even when 0
        if n == 0:
            return 0
        self._move(version, "serving", version, "draining", n)
        end = now_ns + (self.drain_ns if drain_ns is None else drain_ns)
        self.swaps.extend(Swap("draining", end, version, REMOVED) for _ in range(n))
        return n

    def repair(self, now_ns: int) -> None:
        """Return failed racks whose repair time has come to serving."""
        keep: list[tuple[int, str]] = []
        for due_ns, version in self.repairs:
            if due_ns <= now_ns:
                self._move(version, "failed", version, "serving")
                self.events.append((now_ns, "repair", version, 1))
            else:
                keep.append((due_ns, version))
        self.repairs = keep

    def fail(
        self, now_ns: int, rng: np.random.Generator, p_fail: float, mttr_h: float, extra: int
    ) -> None:
        """Fail serving racks: each independently with probability `p_fail`, plus `extra`
        more at once (a correlated event); repair times are exponential with mean mttr_h."""
        serving_old = self.counts[("old", "serving")]
        serving_new = self.counts[("new", "serving")]
        n_old = int(rng.binomial(serving_old, p_fail))
        n_new = int(rng.binomial(serving_new, p_fail))
        k = min(extra, serving_old - n_old)
        n_old += k
        n_new += min(extra - k, serving_new - n_new)
        self._fail(now_ns, rng, "old", n_old, mttr_h)
        self._fail(now_ns, rng, "new", n_new, mttr_h)

    def _fail(self, now_ns: int, rng: np.random.Generator, version: str, n: int, mttr_h: float):
        if n <= 0:
            return
        self._move(version, "serving", version, "failed", n)
        for d_h in rng.exponential(mttr_h, n):
            self.repairs.append((now_ns + max(1, round(float(d_h) * NS_PER_H)), version))
        self.events.append((now_ns, "failure", version, n))

    def racks_in(self, version: str) -> int:
        """Racks of `version` in any state, counting swaps towards it as that version."""
        return sum(self.counts[(version, s)] for s in STATES)

    def settled(self, version: str) -> bool:
        """True when no swap is in flight and every rack (failed ones too) is `version`."""
        other = "old" if version == "new" else "new"
        return not self.swaps and self.racks_in(other) == 0
