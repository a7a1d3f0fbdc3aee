"""The distributed replay: a coordinator drives windows over shard workers in Ray actors.

Per window ``[t, t + report_interval)`` the coordinator routes the window's arrivals with
the region routers (the engine's own :class:`~mtia_cluster.engine.routing.RoutingPlane`
routing, reports from the previous boundary plus own counts), sends each shard with work
one call carrying its requests as numpy arrays, and gets back only load reports; shards
write finished requests and device intervals to their own Parquet parts. This is the same
loop as ``Simulation.run``, so results are identical to the single-process engine for every
placement. A shard with nothing routed and nothing outstanding is not called (its cells are
idle and its counters unchanged).

Resilience: every ``checkpoint_windows`` windows each shard saves its state and commits its
parts; the coordinator keeps the calls made since. A shard actor that dies is restarted by
Ray, reloads its checkpoint and is sent those calls again, so no request is lost or written
twice; a death during that recovery starts another one. After MAX_RESTARTS recoveries of one
shard the run fails with one line (RunFailed) and its directory stays marked incomplete.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtia_cluster.config.scenario import Scenario
from mtia_cluster.distributed.prepare import (
    Prepared,
    ReplayOptions,
    checked,
    plan,
    prepare,
    region_groups,
)
from mtia_cluster.distributed.region_worker import RegionWorker
from mtia_cluster.distributed.timing import Timeline
from mtia_cluster.distributed.trace_scan import served_chunks
from mtia_cluster.distributed.worker import CHECKPOINTS_DIR, Reports, ShardWorker, StaleShard
from mtia_cluster.engine.cell import RequestBatch, rejected_at_arrival
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.windows import LoopHooks, LoopState, finish, run_windows
from mtia_cluster.errors import RunFailed, UserError
from mtia_cluster.results import ResultsWriter

# prepare.py's names that callers import from here
__all__ = ["Prepared", "ReplayOptions", "plan", "prepare", "region_groups", "replay"]
RESTART_TIMEOUT_S = 120.0
MAX_RESTARTS = 3  # per shard actor and run (also Ray's max_restarts for the actor)


@dataclass
class _Shard:
    """The coordinator's handle on one shard: the worker, its cells, calls since checkpoint.

    Calls are numbered; the worker refuses a call whose number is not the next one it expects
    (StaleShard), which is how a shard that Ray restarted from its checkpoint between two
    calls is caught even though no call failed."""

    handle: Any
    cells: np.ndarray
    log: list[tuple[int, str, tuple[Any, ...]]] = field(default_factory=list)
    busy: bool = False
    start: tuple[Any, ...] | None = None  # hosted in a launched fleet: ShardHost.start args
    next_seq: int = 0
    name: str = "shard"
    restarts: int = 0  # recoveries so far (budget: MAX_RESTARTS)

    def submit(self, method: str, args: tuple[Any, ...]) -> Any:
        """Log and send the next call (a Ray ObjectRef)."""
        seq = self.next_seq
        self.next_seq += 1
        self.log.append((seq, method, args))
        return self.send(seq, method, args)

    def send(self, seq: int, method: str, args: tuple[Any, ...]) -> Any:
        if self.start is not None:
            return self.handle.call.remote("guarded", seq, method, args)
        return self.handle.guarded.remote(seq, method, args)


class _Calls:
    """Run the same method on several shards: Ray actors in parallel, or in-process."""

    def __init__(
        self, use_ray: bool, timeline: Timeline | None = None, kill_in_recovery: int = 0
    ) -> None:
        self.use_ray = use_ray
        self.recoveries = 0  # shard actors restarted from a checkpoint
        self.timeline = timeline or Timeline()
        self.kill_in_recovery = kill_in_recovery  # test hook (ReplayOptions)

    def __call__(self, shards: list[_Shard], method: str, args: list[tuple[Any, ...]]) -> list[Any]:
        with self.timeline.span(f"calls.{method}"):
            return self._call(shards, method, args)

    def _call(self, shards: list[_Shard], method: str, args: list[tuple[Any, ...]]) -> list[Any]:
        if not self.use_ray:
            return [getattr(s.handle, method)(*a) for s, a in zip(shards, args, strict=True)]
        import ray

        refs = [s.submit(method, a) for s, a in zip(shards, args, strict=True)]
        out = []
        for s, ref in zip(shards, refs, strict=True):
            try:
                out.append(ray.get(ref))
            except Exception as exc:
                if not _lost(exc):
                    raise
                out.append(self._recover(s, exc))
        return out

    def _recover(self, s: _Shard, exc: BaseException) -> Any:
        """The shard's actor died: once Ray has restarted it from its checkpoint, resend the
        calls logged since. A failure during this (the actor dying again) starts another
        recovery; each counts against the shard's budget (MAX_RESTARTS). Once it is spent,
        the run fails with one line (RunFailed, exit 1; the directory stays incomplete)."""
        while True:
            s.restarts += 1
            self.recoveries += 1
            if s.restarts > MAX_RESTARTS:
                raise RunFailed(
                    f"shard {s.name} failed {s.restarts} times, more than its "
                    f"{MAX_RESTARTS} restarts: {_first_line(exc)}"
                ) from None
            try:
                return self._resume(s)
            except Exception as again:
                if not _lost(again):
                    raise
                exc = again

    def _resume(self, s: _Shard) -> Any:
        import ray

        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:  # wait until the restarted actor answers (it reloads its checkpoint)
            try:
                ray.get(s.handle.ping.remote() if s.start else s.handle.windows_done.remote())
                break
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise RunFailed(
                        f"shard {s.name} did not come back within {RESTART_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.2)
        if self.kill_in_recovery > 0:  # test hook: the actor dies again during recovery
            self.kill_in_recovery -= 1
            ray.kill(s.handle, no_restart=False)
        if s.start is not None:  # a restarted host lost its worker: rebuild it from checkpoint
            ray.get(s.handle.start.remote(*s.start))
        # Resend what the restored state has not done. Calls before its checkpoint are done
        # (a checkpoint whose reply was lost with the node is the only such call in the log).
        ask = s.handle.call.remote("next_call") if s.start else s.handle.next_call.remote()
        done = ray.get(ask)
        result = None
        for seq, method, a in s.log:
            if seq >= done:
                result = ray.get(s.send(seq, method, a))
        return result


def _lost(exc: BaseException) -> bool:
    """An error that means the shard's actor process died or restarted (a recoverable
    state): the actor died or is unavailable, or it refused a call it had lost (StaleShard)."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
        return True
    return isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, StaleShard)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def replay(
    scenario_path: str | Path,
    trace_path: str | Path,
    out_dir: str | Path,
    options: ReplayOptions | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    prepared: Prepared | None = None,
) -> Path:
    """Replay `trace_path` on the fleet of `scenario_path`; write the results directory."""
    opt = options or ReplayOptions()
    if opt.timeline is None:
        opt = replace(opt, timeline=Timeline())
    tl = opt.timeline or Timeline()
    p = prepared or prepare(scenario_path, trace_path, opt, with_trace=False)
    scenario, sim, regions, cells, record = p.scenario, p.sim, p.regions, p.cells, p.record
    use_ray = opt.address != "inprocess"
    manifest = {
        "scenario": scenario.name,
        "config": scenario.raw,
        "seed": scenario.seed,
        "placement": (record or {}).get("placement")
        or (opt.placement if opt.shards is None else f"shards={opt.shards}"),
        "fleet": opt.fleet,
        "shards": len(cells),
        "mode": "region-epochs" if regions else "windows",
        **opt.extra_manifest,
    }
    started = time.monotonic()
    t_dir = time.time()
    with ResultsWriter(
        out_dir,
        manifest=manifest,
        services=sim.services,
        regions=sim.regions,
        slos=scenario.slo,
        interval_ns=scenario.metrics_interval_ns,
        trace_path=trace_path,
        overwrite=opt.overwrite,
    ) as run:
        tl.mark("results_dir", t_dir)
        calls = _Calls(use_ray, tl, opt.kill_in_recovery)
        hosts = _fleet_hosts(opt.fleet, len(cells)) if opt.fleet else None
        path = str(Path(trace_path).absolute())
        extra = None if regions is None else [(path, g) for g in regions]
        shards: list[_Shard] | None = None
        if not p.checked and use_ray and hosts is None and regions is not None:
            # Region shards read the trace themselves: start their processes (imports, cells,
            # their slice) while the coordinator checks the trace; bad input kills them.
            shards = _start_shards(scenario, cells, run, use_ray, opt, extra=extra)
        if not p.checked:
            p = checked(p, trace_path, tl, [s.handle for s in shards or []])
        with tl.span("write_rejected"):
            _write_rejected(run, p.rejected)
        if shards is None:
            shards = _start_shards(scenario, cells, run, use_ray, opt, extra=extra, hosts=hosts)
        if regions is not None:
            end_ns = _drive_regions(shards, calls, scenario, p.served_rows, opt, progress)
        else:
            step_ns, size = scenario.report_interval_ns, opt.trace_chunk_rows
            chunks: Iterable[tuple[RequestBatch, int | None]] = (
                [(p.trace, None)]
                if p.trace is not None
                else served_chunks(sim.plane, trace_path, step_ns, size)
            )
            end_ns = _drive_windows(sim, chunks, p.served_rows, shards, calls, opt, progress)
        shard_nodes = calls(shards, "node", [()] * len(shards))
        events = _fleet_events(shards, calls) if regions is not None else []
        scaled = _shard_logs(shards, calls, "autoscale_log") if scenario.autoscaling else []
        stats = calls(shards, "close", [()] * len(shards))
        for spans in calls(shards, "timings", [()] * len(shards)):
            tl.extend(spans)
        if not opt.keep_checkpoints:  # shard states only matter while the run can fail
            shutil.rmtree(Path(run.tmp) / CHECKPOINTS_DIR, ignore_errors=True)
        with tl.span("finalize (summary, regions/, manifest)"):
            run.finalize(
                wall_time_s=time.monotonic() - started,
                simulated_span_ns=end_ns,
                shard_stats={f"shard-{i:04d}": st for i, st in enumerate(stats)},
                expected_requests=p.served_rows + len(p.rejected),
                extra={
                    "nodes": _nodes(use_ray),
                    "shard_nodes": len(set(shard_nodes)),
                    "shard_restarts": calls.recoveries,
                    **({"fleet_events": events} if events else {}),
                    **({"autoscale": scaled} if scaled else {}),
                },
            )
    return Path(out_dir)


def _fleet_events(shards: list[_Shard], calls: _Calls) -> list[dict[str, Any]]:
    """Every region shard's applied fleet events, in time order (the manifest's list)."""
    return _shard_logs(shards, calls, "fleet_events")


def _shard_logs(shards: list[_Shard], calls: _Calls, method: str) -> list[dict[str, Any]]:
    """Every region shard's log rows (`method`), in time order, then region (stable)."""
    logs = calls(shards, method, [()] * len(shards))
    return sorted((e for log in logs for e in log), key=lambda e: (e["at_ns"], e["region"]))


def _fleet_hosts(fleet: str, n: int) -> list[Any]:
    """The ShardHost actors of a launched fleet (refuses a fleet whose actors are gone)."""
    import ray

    from mtia_cluster.distributed.ray_env import fleet_namespace

    try:
        return [ray.get_actor(f"shard-{i:04d}", namespace=fleet_namespace(fleet)) for i in range(n)]
    except ValueError:
        raise UserError(
            "the fleet's actors are gone (Ray restarted?); run `down` and `launch` again",
            field="--fleet",
            value=fleet,
        ) from None


def _start_shards(
    scenario: Scenario,
    cells: list[list[int]],
    run: ResultsWriter,
    use_ray: bool,
    opt: ReplayOptions,
    extra: list[tuple[Any, ...]] | None = None,
    hosts: list[Any] | None = None,
) -> list[_Shard]:
    (opt.timeline or Timeline()).mark("start_shards", time.time())
    cls: type[ShardWorker] = ShardWorker if extra is None else RegionWorker
    args = [
        (scenario.raw, scenario.file, c, run.target, f"shard-{i:04d}", *(extra[i] if extra else ()))
        for i, c in enumerate(cells)
    ]
    if hosts is not None:
        import ray

        kind = "shard" if extra is None else "region"
        ray.get([h.start.remote(kind, *a) for h, a in zip(hosts, args, strict=True)])
        return [
            _Shard(h, np.asarray(c), start=(kind, *a), name=a[4])
            for h, a, c in zip(hosts, args, cells, strict=True)
        ]
    if not use_ray:
        return [_Shard(cls(*a), np.asarray(c), name=a[4]) for a, c in zip(args, cells, strict=True)]
    import ray

    actor = ray.remote(cls).options(
        num_cpus=0, max_restarts=MAX_RESTARTS, scheduling_strategy="SPREAD"
    )
    return [
        _Shard(actor.remote(*a), np.asarray(c), name=a[4]) for a, c in zip(args, cells, strict=True)
    ]


def _drive_windows(
    sim: Simulation,
    chunks: Iterable[tuple[RequestBatch, int | None]],
    rows: int,
    shards: list[_Shard],
    calls: _Calls,
    opt: ReplayOptions,
    progress: Callable[[int, int, int], None] | None,
) -> int:
    """Coordinator-driven windows: one parallel call per window to the shards with work.

    The served rows come in chunks that end at window boundaries: the loop runs up to each
    chunk's end, then continues on the next chunk from the same state (cells give the same
    results for any cut of time, so this equals one pass over the whole trace)."""
    shard_of_cell = np.zeros(sim.topology.cells, dtype=np.int64)
    for i, s in enumerate(shards):
        shard_of_cell[s.cells] = i
    state, window, before = LoopState(), 0, 0  # before: rows of the chunks already done

    def advance(arrivals: RequestBatch, cell: np.ndarray, until: int) -> list[Reports]:
        nonlocal window
        owner = shard_of_cell[cell]
        active, args = [], []
        for i, s in enumerate(shards):
            mine = np.flatnonzero(owner == i)
            if len(mine) or s.busy:
                active.append(s)
                args.append(
                    (arrivals.take(mine).columns() if len(mine) else None, cell[mine], until)
                )
        _maybe_fail(opt, shards, window)
        replies = calls(active, "advance", args)
        for s, reports in zip(active, replies, strict=True):
            s.busy = bool(np.any(reports[1]))  # outstanding
        window += 1
        if window % opt.checkpoint_windows == 0:
            _checkpoint(shards, calls)
        if progress is not None:
            progress(before + state.lo, rows, until)
        return list(replies)

    def sample(t_ns: int) -> None:
        calls(shards, "sample", [(t_ns,)] * len(shards))

    for chunk, end_ns in chunks:
        state.lo = 0
        run_windows(sim.plane, chunk, state, LoopHooks(advance, sample, stop_ns=end_ns))
        before += len(chunk)
    finish(state, state.t, sim.scenario.metrics_interval_ns, sample)
    return state.t


def _drive_regions(
    shards: list[_Shard],
    calls: _Calls,
    scenario: Scenario,
    rows: int,
    opt: ReplayOptions,
    progress: Callable[[int, int, int], None] | None,
) -> int:
    """Region-owning shards run whole epochs; the coordinator only paces and checkpoints."""
    epoch_ns = opt.epoch_ns
    stop, epoch = epoch_ns, 0
    while True:
        _maybe_fail(opt, shards, epoch)
        states = calls(shards, "run_epoch", [(stop,)] * len(shards))
        epoch += 1
        if progress is not None:
            progress(sum(st[1] for st in states), rows, stop)
        if all(st[3] for st in states):
            break  # no checkpoint after the last epoch: close() commits everything next
        _checkpoint(shards, calls)
        stop += epoch_ns
    end_ns = max(st[0] for st in states)
    calls(shards, "finish_run", [(end_ns,)] * len(shards))
    return end_ns


def _checkpoint(shards: list[_Shard], calls: _Calls) -> None:
    calls(shards, "checkpoint", [()] * len(shards))
    for s in shards:
        s.log.clear()


def _write_rejected(run: ResultsWriter, rejected: RequestBatch) -> None:
    """Requests whose region has no pool for their service: status rejected, by the driver."""
    with run.shard("coordinator") as writer:
        if len(rejected):
            writer.write_completed(rejected_at_arrival(rejected))


def _maybe_fail(opt: ReplayOptions, shards: list[_Shard], step: int) -> None:
    """Test hook: kill one shard's actor process at a given window/epoch (resilience)."""
    if opt.fail_shard_at_window is None or opt.fail_shard_at_window[1] != step:
        return
    import ray

    ray.kill(shards[opt.fail_shard_at_window[0]].handle, no_restart=False)


def _nodes(use_ray: bool) -> int:
    if not use_ray:
        return 1
    import ray

    return len({n["NodeID"] for n in ray.nodes() if n.get("Alive")})
