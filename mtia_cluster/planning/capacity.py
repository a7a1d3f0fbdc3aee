"""The highest offered rate that meets an SLO, by exact replay (MLPerf Server style).

For one chip and one service: a one-pool scenario of one platform unit (a rack or server of
that chip, e.g. an MTIA 2i rack, an MTIA 1 server, an HGX H100 node) serving the service's
model; Poisson traces at candidate rates that share their random streams (unit gaps scaled by
1/rate, the same request sizes); each candidate replayed through the engine, summarized by
`results.summarize` and judged by the one verdict (`results.verdict`) against the
`ServiceSLO` with the search options `SEARCH_RULES`: the SLO percentile of every bounded
metric (LoadGen's percentile), no minimum duration or LoadGen early stopping, every request
ok. A replay ends as soon as that verdict is certain to be INVALID (`planning/early_stop.py`:
a sound rule, not LoadGen's). The bracketing search (`planning/search.py`) starts at the cost
model's rate for an LLM (`_first_rate`) and bisects (one rate per round); an R&R search
evaluates two rates per round, as parallel Ray tasks when Ray is up. Each rate's verdict and
power are kept, so the answer's power needs no further replay (docs/capacity.md). Offline:
every request at t=0, throughput = requests / makespan.
Reported per accelerator, per host, per platform unit, with power (accelerators from the
replay's device energy, plus the hosts' non-accelerator power) and performance per watt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config.models import (
    Batching,
    Event,
    LLMPool,
    Region,
    RRPool,
    ScenarioFile,
    SLOTargets,
    SyntheticPool,
    pool_kinds,
)
from mtia_cluster.config.scenario import Scenario, scenario_from_model
from mtia_cluster.config.trace_spec import MLPerfSizes, TableLengths
from mtia_cluster.engine.cell import RequestBatch, make_requests
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import llm_offline_throughput, rr_best_throughput
from mtia_cluster.planning.early_stop import watched_run
from mtia_cluster.planning.search import SearchResult, find_max_rate
from mtia_cluster.results.devfold import DeviceFold
from mtia_cluster.results.run import run_folded, summarize
from mtia_cluster.results.verdict import SEARCH_RULES
from mtia_cluster.slo import ServiceSLO, parse_slo_text
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.workloads import LLMModel, RRModel

# The longest simulated span of one candidate's replay: the search never tries a rate whose
# trace would span more (its floor, `search_floor`), and reports `min_rate_rps` when even
# that rate fails. One day: a platform unit carrying less than requests / 86,400 s (0.07
# req/s for 6,000 requests) is no serving capacity, and a replay of millions of simulated
# seconds (a search bisecting toward 0 req/s) costs hours of CPU.
MAX_REPLAY_SPAN_S = 86_400.0
RR_SIZES = MLPerfSizes(dist="mlperf-dlrm-v2")
LLM_LENGTHS = TableLengths(dist="azure-2023-conv")


@dataclass
class CapacityResult:
    chip: str
    platform: str
    service_model: str
    scenario: str  # server | offline
    accelerators: int
    hosts: int
    requests_per_s: float  # per platform unit, at the SLO
    work_per_s: float  # items/s (R&R) or output tokens/s (LLM), per platform unit
    work_unit: str
    per_accelerator: float
    per_host: float
    accelerator_power_w: float
    host_power_w: float
    perf_per_w: float  # work per joule, accelerators + hosts
    bound: str  # the cost model's binding resource at the serving batch
    replays: int
    min_rate_rps: float = 0.0  # the lowest rate the search tries (MAX_REPLAY_SPAN_S)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def platform_for(cat: Catalog, chip: str) -> str:
    """The platform that deploys `chip` (rack or server) for capacity figures."""
    for name, p in sorted(cat.platforms.items()):
        if p.chip == chip:
            return name
    raise UserError("no platform in the catalog deploys this chip", field="--chips", value=chip)


def replica_tp(cat: Catalog, model: LLMModel, platform: str) -> int:
    """The smallest tensor-parallel degree whose replica of `model` fits `platform`'s chip
    (within its scale-up domain and the platform's accelerators)."""
    p = cat.platform(platform)
    chip = cat.chip(p.chip)
    for tp in (1, 2, 4, 8, 16, 32, 64, 72):
        if tp > min(chip.scale_up_domain, p.accelerators) or p.accelerators % tp:
            continue
        try:
            llm_iteration_model(chip, model, tp=tp)
        except UserError:
            continue
        return tp
    raise UserError(
        f"{model.name} fits no replica of one {platform}", field="--chips", value=p.chip
    )


def pool_model(
    cat: Catalog,
    model: RRModel | LLMModel,
    platform: str,
    hosts: int | None = None,
    *,
    service_time_multiplier: float = 1.0,
    error_rate: float = 0.0,
) -> RRPool | LLMPool:
    """The typed pool of `hosts` hosts (default: one platform unit) of `platform` serving
    `model` as service `svc`: R&R batches up to the model's max batch within 2 ms; an LLM
    replica takes the smallest TP that fits (`replica_tp`)."""
    n = hosts or cat.platform(platform).hosts
    if isinstance(model, RRModel):
        return RRPool(
            service="svc",
            model=model.name,
            platform=platform,
            hosts=n,
            batching=Batching(max_items=model.max_batch, max_wait_us=2000),
            service_time_multiplier=service_time_multiplier,
            error_rate=error_rate,
        )
    tp = replica_tp(cat, model, platform)
    return LLMPool(
        service="svc",
        model=model.name,
        platform=platform,
        hosts=n,
        tp=tp,
        accelerators_per_replica=tp,
        error_rate=error_rate,
    )


def one_region_scenario(
    cat: Catalog,
    name: str,
    seed: int,
    pools: Sequence[RRPool | LLMPool | SyntheticPool],
    *,
    events: tuple[Event, ...] = (),
    slo_p99_ms: float | None = None,
) -> Scenario:
    """A validated scenario of one region `r` holding `pools` (typed, no mapping to
    re-parse), with engine fleet `events` and an optional p99 SLO of service `svc`."""
    with pool_kinds(lambda m: cat.model(m).kind):
        doc = ScenarioFile(
            name=name,
            seed=seed,
            regions=[Region(name="r", pools=list(pools))],
            events=list(events),
            slo={} if slo_p99_ms is None else {"svc": SLOTargets(p99_ms=slo_p99_ms)},
        )
        raw = doc.model_dump(exclude_unset=True)  # for the record (manifests) only
    return scenario_from_model(doc, None, cat, raw)


def _workload(model: RRModel | LLMModel, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = entity_rng(seed, StreamKind.CAPACITY_WORKLOAD)
    gaps = rng.exponential(1.0, n)
    if isinstance(model, RRModel):
        return {"gaps": gaps, "items": sample_sizes(rng, RR_SIZES, n)}
    inp, out = sample_lengths(rng, LLM_LENGTHS, n)
    return {"gaps": gaps, "input_tokens": inp, "output_tokens": out}


def _requests(work: dict[str, np.ndarray], rate: float | None) -> RequestBatch:
    """The workload's requests arriving at `rate` (None: offline, all at t=0)."""
    n = len(work["gaps"])
    arrival = (
        np.zeros(n, np.int64)
        if rate is None
        else np.floor(np.cumsum(work["gaps"]) / rate * 1e9).astype(np.int64)
    )
    if "items" in work:
        return make_requests(arrival, items=work["items"])
    return make_requests(
        arrival, input_tokens=work["input_tokens"], output_tokens=work["output_tokens"]
    )


def search_floor(work: dict[str, np.ndarray]) -> float:
    """The lowest rate a search tries: the one whose trace (the workload's unit gaps scaled
    by 1/rate) spans `MAX_REPLAY_SPAN_S`."""
    return float(np.sum(work["gaps"])) / MAX_REPLAY_SPAN_S


def _replay(scenario: Any, work: dict[str, np.ndarray], rate: float | None) -> RunOutput:
    """Replay the workload at `rate` (None: offline, all at t=0)."""
    return run_folded(Simulation(scenario), _requests(work, rate))


def _judge(
    scenario: Any, work: dict[str, np.ndarray], rate: float, slo: ServiceSLO
) -> tuple[bool, float]:
    """The one verdict, with the search's options, of a replay at `rate`, and the
    accelerators' average power over it. The replay ends early, (False, nan), once the
    verdict is certain to be INVALID (`planning/early_stop.py`)."""
    sim = Simulation(scenario)
    run = watched_run(sim, _requests(work, rate), slo, DeviceFold.of(sim))
    if run is None:
        return False, math.nan
    judged = summarize(run, rules=SEARCH_RULES, slos={"svc": slo})
    ok = all(v == "VALID" for v in judged.verdicts.values())
    return ok, float(judged.summary["fleet"]["avg_power_w"] or 0.0)


def _meets(scenario: Any, work: dict[str, np.ndarray], rate: float, slo: ServiceSLO) -> bool:
    """The one verdict, with the search's options, of a replay at `rate`."""
    return _judge(scenario, work, rate, slo)[0]


class _Evaluator:
    """`evaluate(rates)` for the search: Ray tasks in parallel when Ray is up, else one by
    one. Remembers each rate's verdict and power: no rate is replayed twice, and the
    answer's power comes from its own search replay (no extra replay at the end)."""

    def __init__(self, scenario: Any, work: dict[str, np.ndarray], slo: ServiceSLO) -> None:
        from mtia_cluster.distributed.ray_env import parallel

        self.tasks = parallel(_judge, scenario, work, num_cpus=1)  # None without Ray
        self.scenario, self.work, self.slo = scenario, work, slo
        self.seen: dict[float, tuple[bool, float]] = {}
        # rates per round, the same with or without Ray (the answer must not depend on where
        # it runs): an LLM search bisects, so no replay below a rate that then passes is
        # spent (early stops make the failing ones cheap); R&R keeps two, as before
        self.parallel = 2 if "items" in work else 1

    def __call__(self, rates: Sequence[float]) -> list[bool]:
        todo = [r for r in dict.fromkeys(rates) if r not in self.seen]
        if self.tasks is not None:
            got = self.tasks([(r, self.slo) for r in todo])
        else:
            got = [_judge(self.scenario, self.work, r, self.slo) for r in todo]
        self.seen.update(zip(todo, got, strict=True))
        return [self.seen[r][0] for r in rates]

    def power_w(self, rate: float) -> float:
        """The accelerators' average power in the replay at `rate` (0 if none passed)."""
        return self.seen[rate][1] if rate in self.seen else 0.0


def capacity(
    model_name: str,
    chip: str,
    slo: ServiceSLO,
    *,
    offline: bool = False,
    requests: int = 6000,
    seed: int = 0,
    rel_tol: float = 0.03,
    min_span_s: float = 2.0,
    hosts: int | None = None,
    catalog: Catalog | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CapacityResult:
    """Capacity of one platform unit of `chip` serving `model_name` (see module doc).

    `progress(replays done, replays expected, note)` follows the search (plain callable)."""
    cat = catalog or load_catalog()
    model = cat.model(model_name)
    if not isinstance(model, (RRModel, LLMModel)):
        raise UserError("capacity needs an R&R or LLM model", field="model", value=model_name)
    platform = platform_for(cat, chip)
    scenario = _scenario(cat, model, chip, platform, hosts, seed)
    slo = _for_model(slo, model, offline)
    guess = _guess_rate(cat, model, chip, platform, _workload(model, requests, seed), hosts)
    if offline:
        # enough requests to keep every accelerator busy for min_span_s at the guessed rate
        work = _workload(model, max(requests, int(guess * min_span_s)), seed)
        done = _replay(scenario, work, None)
        rate = len(done.requests) / (done.requests.finish_ns.max() / 1e9)
        acc_w = summarize(done).summary["fleet"]["avg_power_w"] or 0.0
        return _result(cat, model, chip, platform, work, rate, acc_w, offline, 1, hosts)
    replays = 0
    start = _first_rate(cat, model, platform, guess, slo, hosts)
    step = FIRST_STEP if isinstance(model, LLMModel) else 2.0
    for _ in range(4):
        # The trace must span min_span_s at the rate it is judged at: a run too short never
        # shows the backlog an overloaded system builds, and would pass any rate.
        work = _workload(model, max(requests, int(2 * guess * min_span_s)), seed)
        cap = len(work["gaps"]) / min_span_s
        evaluate = _Evaluator(scenario, work, slo)
        search = find_max_rate(
            evaluate,
            min(start, cap),
            parallel=evaluate.parallel,
            rel_tol=rel_tol,
            max_rate=cap,
            min_rate=search_floor(work),
            on_round=_reporter(progress, replays),
            step=step,
        )
        replays += len(search.evaluations)
        rate = search.best_rate
        if rate < cap * 0.999:
            break
        guess = 2 * rate  # everything up to the cap passed: longer trace, higher rates
        start, step = guess, 2.0
    acc_w = evaluate.power_w(rate)
    return _result(cat, model, chip, platform, work, rate, acc_w, offline, replays, hosts)


def _reporter(
    progress: Callable[[int, int, str], None] | None, before: int
) -> Callable[[SearchResult, int], None] | None:
    """The search's per-round hook, as (replays done, expected, bracket) for `progress`."""
    if progress is None:
        return None

    def on_round(res: SearchResult, left: int) -> None:
        done = before + len(res.evaluations)
        hi = f"{res.lowest_failing:,.4g}" if math.isfinite(res.lowest_failing) else "?"
        progress(done, done + left + 1, f"bracket {res.best_rate:,.4g}-{hi} req/s")

    return on_round


def _guess_rate(
    cat: Catalog,
    model: RRModel | LLMModel,
    chip: str,
    platform: str,
    work: dict[str, np.ndarray],
    hosts: int | None = None,
) -> float:
    p = cat.platform(platform)
    accelerators = (hosts or p.hosts) * p.accelerators_per_host
    if isinstance(model, RRModel):
        best = rr_best_throughput(cat.chip(chip), model, cat.host(p.host))
        return 0.5 * best.items_per_s_per_chip * accelerators / float(work["items"].mean())
    return 1.0 * accelerators


FIRST_STEP = 1.25  # spacing of the first round's rates around the cost model's LLM estimate


def _first_rate(
    cat: Catalog,
    model: RRModel | LLMModel,
    platform: str,
    guess: float,
    slo: ServiceSLO,
    hosts: int | None = None,
) -> float:
    """Where the search starts. LLM: the cost model's offline token rate of the replicas
    (`llm_offline_throughput`, as the rollout's `fast` capacity, at the mean lengths of
    20,000 draws of the workload's length table) at the largest batch, up to the pool's
    limit, whose iteration fits the TPOT bound (a batch that decodes slower than the bound
    cannot be the serving one), in requests/s. Measured Llama knees sit at 0.51-1.18 x
    it (docs/capacity.md), so the first rounds bracket the knee. R&R: the old
    guess (`_guess_rate`), so its searches are unchanged. Only the rates tried depend on
    it, never the trace (which `_guess_rate` sizes)."""
    if isinstance(model, RRModel):
        return guess
    p = cat.platform(platform)
    pool = pool_model(cat, model, platform, hosts)
    assert isinstance(pool, LLMPool) and pool.tp is not None
    it = llm_iteration_model(cat.chip(p.chip), model, tp=pool.tp)
    inp, out = sample_lengths(entity_rng(0, StreamKind.CAPACITY_WORKLOAD), LLM_LENGTHS, 20000)
    mean_in, mean_out = float(np.mean(inp)), float(np.mean(out))

    def offline(batch: int) -> Any:
        return llm_offline_throughput(it, mean_in, mean_out, batch)

    lo, hi = 1, pool.max_num_seqs
    while lo < hi and slo.tpot_ns is not None:  # the iteration time grows with the batch
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if offline(mid).iteration_s * 1e9 <= slo.tpot_ns else (lo, mid - 1)
    replicas = (hosts or p.hosts) * p.accelerators_per_host // pool.tp
    return float(offline(hi).output_tokens_per_s) * max(replicas, 1) / mean_out


def _result(
    cat: Catalog,
    model: RRModel | LLMModel,
    chip: str,
    platform: str,
    work: dict[str, np.ndarray],
    rate: float,
    acc_w: float,
    offline: bool,
    replays: int,
    hosts: int | None = None,
) -> CapacityResult:
    p = cat.platform(platform)
    n_hosts = hosts or p.hosts
    n_acc = n_hosts * p.accelerators_per_host
    rr = isinstance(model, RRModel)
    per_req = float(work["items"].mean() if rr else work["output_tokens"].mean())
    work_per_s = rate * per_req
    host_w = n_hosts * cat.host(p.host).power_w
    if isinstance(model, RRModel):
        bound = rr_best_throughput(cat.chip(chip), model, cat.host(p.host)).bound
    else:
        tp = replica_tp(cat, model, platform)
        bound = llm_iteration_model(cat.chip(chip), model, tp=tp).bound(0, 64, 64000)
    total_w = acc_w + host_w
    return CapacityResult(
        chip=chip,
        platform=platform,
        service_model=model.name,
        scenario="offline" if offline else "server",
        accelerators=n_acc,
        hosts=n_hosts,
        requests_per_s=rate,
        work_per_s=work_per_s,
        work_unit="items/s" if rr else "tokens/s",
        per_accelerator=work_per_s / n_acc,
        per_host=work_per_s / n_hosts,
        accelerator_power_w=acc_w,
        host_power_w=host_w,
        perf_per_w=work_per_s / total_w if total_w > 0 else math.nan,
        bound=bound,
        replays=replays,
        min_rate_rps=0.0 if offline else search_floor(work),
    )


def _scenario(
    cat: Catalog,
    model: RRModel | LLMModel,
    chip: str,
    platform: str,
    hosts: int | None,
    seed: int,
) -> Scenario:
    """One region of one pool of `platform` serving `model` as service `svc` (the SLO is
    passed to the verdict, not written into the scenario)."""
    pool = pool_model(cat, model, platform, hosts)
    return one_region_scenario(cat, f"capacity-{model.name}-{chip}", seed, [pool])


def _for_model(slo: ServiceSLO, model: RRModel | LLMModel, offline: bool) -> ServiceSLO:
    """`slo` with the model's kind; a server search needs at least one bound."""
    if not offline and not slo.bounded:
        raise UserError("a server capacity search needs a latency bound", field="--slo")
    return slo.with_kind("llm" if isinstance(model, LLMModel) else "rr")


def parse_slo(text: str | None) -> ServiceSLO:
    """`p99=100ms` or `ttft_p99=2s,tpot_p99=200ms` (units ns, us, ms, s); empty: unbounded."""
    return parse_slo_text(text) if text else ServiceSLO()


def capacity_over_span(
    model_name: str,
    chip: str,
    slo: ServiceSLO,
    *,
    span_s: float,
    guess_rps: float,
    rel_tol: float = 0.05,
    hosts: int | None = None,
    seed: int = 0,
    catalog: Catalog | None = None,
) -> tuple[CapacityResult, SearchResult]:
    """Server-mode capacity judged on traces spanning at least `span_s` at every rate tried.

    The same search as `capacity` (same scenario, workload streams and SLO judgement), but
    the trace length follows the judged time instead of a request count: an SLO of seconds
    (LLM end-to-end p99) needs a window of many SLOs to show the backlog of an overloaded
    replica, and a fixed count of requests would span too little at high rates. Starts from
    `guess_rps` (per platform unit, or per `hosts` hosts); rates up to 2 x guess are tried
    on one trace, longer traces if all of them pass. Returns the result and the search
    (its bracket [best_rate, lowest_failing] is the figure's uncertainty).
    """
    if not (span_s > 0 and guess_rps > 0 and 0 < rel_tol < 1):
        raise UserError(
            "span_s, guess_rps and rel_tol must be > 0 (rel_tol < 1)",
            field="capacity_search",
            value=(span_s, guess_rps, rel_tol),
        )
    cat = catalog or load_catalog()
    model = cat.model(model_name)
    if not isinstance(model, (RRModel, LLMModel)):
        raise UserError("capacity needs an R&R or LLM model", field="model", value=model_name)
    platform = platform_for(cat, chip)
    scenario = _scenario(cat, model, chip, platform, hosts, seed)
    slo = _for_model(slo, model, False)
    replays, guess = 0, guess_rps
    for _ in range(4):
        work = _workload(model, max(1, math.ceil(2 * guess * span_s)), seed)
        cap = len(work["gaps"]) / span_s  # every rate tried spans >= span_s
        evaluate = _Evaluator(scenario, work, slo)
        floor = search_floor(work)
        search = find_max_rate(
            evaluate, guess, parallel=2, rel_tol=rel_tol, max_rate=cap, min_rate=floor
        )
        replays += len(search.evaluations)
        if search.best_rate < cap * 0.999:
            break
        guess = 2 * search.best_rate
    rate = search.best_rate
    acc_w = evaluate.power_w(rate)
    out = _result(cat, model, chip, platform, work, rate, acc_w, False, replays, hosts)
    return out, search
