"""Requests per CPU-second of the LLM replica scheduler, this tree against a git ref.

What is timed: ``time.process_time`` of one ``ReplicaScheduler`` built, filled with
``add_many`` and run with ``run_until(None)`` over the whole Azure LLM inference trace 2023
(conversation, 19,366 requests, at its own timestamps), Llama-2-7B on one H100 (tp=1, fp16),
``max_num_seqs`` 256, block size 16, for token budgets 512 and 2048; best of N. CPU time,
not wall time, because the machine is shared (other processes steal wall time, not CPU time).
A third line times the engine's LLM cell (the same replica, budget 2048, built from a
scenario pool) driven in 10 ms windows as the engine drives it with a load-reading router
(``bench_engine_llm._drive``): the per-window cost, 350,418 windows over the trace.

Both trees must serve identically: each run reports a checksum (sums of start, first-token
and finish times and preemptions; clock, iterations, busy and memory-bound time, KV
integral and peaks; for the cell, finish and first-token sums) and the ratio line says
whether they agree. The scheduler's compiled loop (``engine/llm/kernel.py``) loads or
compiles its numba cache in a worker's first run, which the best of N leaves out.

Each tree is measured in a worker subprocess of its own (``PYTHONPATH`` = that tree), and the
workers take turns, one run at a time, so a slow phase of the machine hits both alike. With
``--baseline-ref REF`` a temporary ``git worktree`` of REF is created under a temporary
directory and removed at the end. Usage::

    .venv/bin/python benchmarks/bench_llm_cpu.py [--repeat N] [--baseline-ref 7d6f0f7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGETS = (512, 2048, "cell-10ms")
HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


class Worker:
    """One tree's measuring subprocess: reads a budget per line, answers CPU seconds."""

    def __init__(self, tree: Path, trace: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--worker", "--trace", str(trace)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, budget: int | str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{budget}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("benchmark worker died")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def worker(trace: Path) -> None:
    """Serve measurements (see module doc) for the tree on PYTHONPATH."""
    sys.path.insert(0, str(HERE.parent))
    from bench_engine_llm import read_azure

    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.engine.llm.costs import probe_iteration_cost
    from mtia_cluster.engine.llm.limits import ReplicaLimits
    from mtia_cluster.engine.llm.scheduler import ReplicaScheduler
    from mtia_cluster.perf import llm_iteration_model

    arrival, prompt, output = read_azure(trace)
    cat = load_catalog()
    model = llm_iteration_model(cat.chip("h100"), cat.model("llama-2-7b"), tp=1, pp=1, dtype="fp16")
    costs = {}
    for line in sys.stdin:
        if not line.strip().isdigit():
            print(json.dumps(windowed(cat, arrival, prompt, output)), flush=True)
            continue
        budget = int(line)
        if budget not in costs:
            costs[budget] = probe_iteration_cost(model, budget)
        limits = ReplicaLimits(budget, 256, 16, model.kv_capacity_tokens)
        t0 = time.process_time()
        sched = ReplicaScheduler(costs[budget], limits)
        sched.add_many(arrival, prompt, output)
        sched.run_until(None)
        cpu = time.process_time() - t0
        print(json.dumps({"cpu": cpu, "n": len(arrival), "check": checksum(sched)}), flush=True)


def checksum(sched) -> str:
    """What both trees must give identically: per-request times and preemptions (sums)
    and the replica's counters (clock, iterations, busy and memory-bound time, KV integral
    and peaks)."""
    per_request = (sched.start_ns, sched.first_ns, sched.finish_ns, sched.preemptions)
    counters = (sched.t_as, sched.iteration, sched.busy_as, sched.memory_as, sched.kv_token_as)
    peaks = (sched.max_kv_tokens, sched.max_used_blocks, sched.preempted, sched.tokens_done)
    return repr(([sum(col) for col in per_request], counters, peaks))


def windowed(cat, arrival, prompt, output) -> dict:
    """CPU seconds of the LLM cell over the trace in 10 ms windows (see module doc)."""
    from bench_engine_llm import _drive, _spec

    from mtia_cluster.engine.cell import Completed, make_requests
    from mtia_cluster.engine.llm.factory import build_llm_cell

    batch = make_requests(arrival, input_tokens=prompt, output_tokens=output, items=0)
    cell = build_llm_cell(_spec(cat, 1, {}))
    t0 = time.process_time()
    parts = _drive(cell, batch, True)
    cpu = time.process_time() - t0
    done = Completed.concat(parts)
    check = repr([int(done.finish_ns.sum()), int(done.first_token_ns.sum())])
    return {"cpu": cpu, "n": len(arrival), "check": check}


def measure(trees: dict[str, Path], trace: Path, repeat: int) -> dict[str, dict]:
    """Best CPU time per tree and budget, runs alternating between the trees."""
    workers = {name: Worker(tree, trace) for name, tree in trees.items()}
    best: dict[str, dict] = {name: {} for name in trees}
    try:
        for _ in range(repeat):
            for budget in BUDGETS:
                for name, w in workers.items():
                    got = w.run(budget)
                    old = best[name].get(budget)
                    if old is None or got["cpu"] < old["cpu"]:
                        best[name][budget] = got
    finally:
        for w in workers.values():
            w.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-ref", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trace is None:
        sys.path.insert(0, str(HERE.parent))
        from bench_engine_llm import DEFAULT_TRACE

        args.trace = DEFAULT_TRACE
    if args.worker:
        worker(args.trace)
        return
    with tempfile.TemporaryDirectory(prefix="bench_llm_cpu_") as tmp:
        trees = {"current": ROOT}
        if args.baseline_ref:
            base = Path(tmp) / "baseline"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "add",
                    "--detach",
                    "-q",
                    str(base),
                    args.baseline_ref,
                ],
                check=True,
            )
            trees[args.baseline_ref] = base
        try:
            best = measure(trees, args.trace, args.repeat)
        finally:
            if args.baseline_ref:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                    check=True,
                )
    report(best, args.repeat, args.baseline_ref)


def report(best: dict[str, dict], repeat: int, ref: str | None) -> None:
    """One line per tree and budget, and the ratio current / baseline."""
    for budget in BUDGETS:
        for name, per in best.items():
            got = per[budget]
            rate = got["n"] / got["cpu"]
            print(
                f"{label(budget)} {name:>10}: {rate:>10,.0f} requests per CPU-second "
                f"(best of {repeat}: {got['cpu']:.3f} s)"
            )
        if ref:
            cur, base = best["current"][budget], best[ref][budget]
            same = "identical" if cur["check"] == base["check"] else "DIFFERENT"
            print(
                f"{label(budget)}: current / {ref} = {base['cpu'] / cur['cpu']:.3f}x "
                f"(results {same})"
            )


def label(budget: int | str) -> str:
    """`budget  512` for the scheduler alone, the mode's name for the windowed cell."""
    return f"budget {budget:>4}" if isinstance(budget, int) else f"{budget:>11}"


if __name__ == "__main__":
    main()
