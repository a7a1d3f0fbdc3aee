"""End a capacity replay as soon as its verdict is certain to be INVALID (a sound early stop).

The search judges a replay of `n` requests with the one verdict (`results.verdict`) under
`SEARCH_RULES` (every request must finish ok; no minimum duration; no LoadGen early
stopping): it is INVALID when any request does not finish ok, or when, for some bounded
metric, at least ``n - floor(n * p)`` requests are over the bound (LoadGen's percentile
index; `verdict.percentile_index`). A replay above the knee builds a backlog that grows for
the rest of the trace, and the old search paid for every second of it; this module watches
the rows as the engine emits them and stops the replay once that verdict is settled.

After the window ending at ``T`` (the engine's shard returns exactly the requests that
finished before ``T``; an LLM cell holds back the rest, `engine/llm/cell.py`):

* an emitted row is final: its status, latency, TTFT and TPOT are exact;
* a request that arrived before ``T`` and was not emitted finishes at or after ``T``, so its
  latency exceeds ``T - arrival``. With a latency bound ``L`` it is over ``L`` once
  ``arrival + L < T``. With TTFT and TPOT bounds and ``o >= 2`` output tokens, once
  ``arrival + ttft + (o - 1) * tpot < T`` it is over at least one of the two (its TTFT plus
  its decode time exceeds their sum), though we may not know which.

The replay stops (INVALID) when an emitted row is not ok, or a metric's count of requests
certainly over its bound reaches the threshold, or the unemitted requests certainly over
TTFT-or-TPOT outnumber what the two metrics can still absorb below the threshold
(``(thr - 1 - over_ttft) + (thr - 1 - over_tpot)``): however they split, one metric reaches
it. Every count is a lower bound on the final one, so a stopped replay is one the full
replay judges INVALID; a replay that is not stopped runs to the end and is judged by the
verdict itself. `tests/planning/test_early_stop.py` compares both on random small cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtia_cluster.engine.cell import STATUS_OK, Completed, RequestBatch
from mtia_cluster.engine.output import RunOutput, SampleSink
from mtia_cluster.engine.shard import Inbox, LoadReports, Shard
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results.verdict import percentile_index
from mtia_cluster.slo import ServiceSLO


class Doomed(Exception):
    """The replay's verdict is certain to be INVALID (raised from inside the window loop)."""


@dataclass
class Watch:
    """Counts of requests certainly over each bound, updated as rows are emitted."""

    slo: ServiceSLO
    arrival_ns: np.ndarray  # by request id (ids 0..n-1)
    output_tokens: np.ndarray
    threshold: int  # over-bound requests that make the verdict INVALID
    emitted: np.ndarray = field(init=False)
    over: dict[str, int] = field(init=False)
    next_check_ns: int = 0

    def __post_init__(self) -> None:
        self.emitted = np.zeros(len(self.arrival_ns), dtype=bool)
        self.over = {m: 0 for m, b in self._bounds().items() if b is not None}

    @classmethod
    def of(cls, slo: ServiceSLO, requests: RequestBatch) -> Watch:
        n = len(requests)
        if not np.array_equal(requests.request_id, np.arange(n)):
            raise ValueError("watched replays need request ids 0..n-1")
        p = slo.percentile / 100.0
        out_tokens = np.asarray(requests.output_tokens, dtype=np.int64)
        return cls(slo, requests.arrival_ns, out_tokens, n - percentile_index(n, p))

    def _bounds(self) -> dict[str, int | None]:
        s = self.slo
        return {"latency": s.latency_ns, "ttft": s.ttft_ns, "tpot": s.tpot_ns}

    def see(self, until_ns: int, rows: Completed) -> None:
        """Count `rows` (every request that finished before `until_ns` and was not yet
        seen); raise `Doomed` when the verdict is settled (see module doc)."""
        if len(rows):
            self._count(rows)
        if until_ns >= self.next_check_ns:  # the unemitted ones, a few times per bound
            self.next_check_ns = until_ns + self._check_step_ns()
            self._check_unemitted(until_ns)

    def _count(self, rows: Completed) -> None:
        if np.any(rows.status != STATUS_OK):
            raise Doomed("a request did not finish ok")
        self.emitted[rows.request_id] = True
        b = self._bounds()
        values = {
            "latency": rows.finish_ns - rows.arrival_ns,
            "ttft": rows.first_token_ns - rows.arrival_ns,
        }
        for m in ("latency", "ttft"):
            if m in self.over:
                self.over[m] += int(np.count_nonzero(values[m] > b[m]))
        if "tpot" in self.over:
            assert b["tpot"] is not None
            steps = rows.output_tokens.astype(np.int64) - 1
            late = (steps > 0) & (rows.finish_ns - rows.first_token_ns > b["tpot"] * steps)
            self.over["tpot"] += int(np.count_nonzero(late))
        self._settled(0)

    def _check_step_ns(self) -> int:
        known = [v for v in self._bounds().values() if v is not None]
        return max(1, min(known) // 4)

    def _check_unemitted(self, t_ns: int) -> None:
        """Requests not emitted by `t_ns` finish at or after it (module doc)."""
        waiting = ~self.emitted
        late_latency = np.zeros(len(waiting), dtype=bool)
        if self.slo.latency_ns is not None:
            late_latency = waiting & (self.arrival_ns + self.slo.latency_ns < t_ns)
            if self.over["latency"] + int(np.count_nonzero(late_latency)) >= self.threshold:
                raise Doomed("requests waiting longer than the latency bound")
        if self.slo.ttft_ns is None or self.slo.tpot_ns is None:
            return
        steps = self.output_tokens - 1
        due = self.arrival_ns + self.slo.ttft_ns + steps * self.slo.tpot_ns
        either = waiting & ~late_latency & (steps > 0) & (due < t_ns)
        self._settled(int(np.count_nonzero(either)))

    def _settled(self, over_ttft_or_tpot: int) -> None:
        """Raise when some metric is certainly at the threshold, given `over_ttft_or_tpot`
        more requests each over TTFT or TPOT (not known which)."""
        if any(v >= self.threshold for v in self.over.values()):
            raise Doomed("a metric's over-bound count reached the threshold")
        if over_ttft_or_tpot and {"ttft", "tpot"} <= self.over.keys():
            room = sum(self.threshold - 1 - self.over[m] for m in ("ttft", "tpot"))
            if over_ttft_or_tpot > room:
                raise Doomed("requests waiting longer than TTFT + TPOT bounds allow")


class WatchedShard(Shard):
    """A shard that shows every window's emitted rows to a `Watch` (results unchanged)."""

    def __init__(self, shard: Shard, watch: Watch) -> None:
        super().__init__(shard.groups)
        self.watch = watch

    def advance(self, inbox: Inbox | None, until_ns: int) -> tuple[Completed, LoadReports]:
        done, reports = super().advance(inbox, until_ns)
        self.watch.see(until_ns, done)
        return done, reports


def watched_run(
    sim: Simulation, requests: RequestBatch, slo: ServiceSLO, devices: SampleSink | None = None
) -> RunOutput | None:
    """`sim.run(requests, devices=devices)`, or None as soon as the search's verdict is
    certain to be INVALID.

    `sim` must be fresh and in one shard (the watch needs every row of a window at once)."""
    if len(sim.shards) != 1:
        raise ValueError("a watched replay runs in one shard")
    sim.shards = [WatchedShard(sim.shards[0], Watch.of(slo, requests))]
    try:
        return sim.run(requests, devices=devices)
    except Doomed:
        return None
