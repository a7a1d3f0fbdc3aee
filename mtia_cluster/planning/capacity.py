"""The highest offered rate that meets an SLO, by exact replay (MLPerf Server style).

For one chip and one service: a one-pool scenario of one platform unit (a rack or server of
that chip, e.g. an MTIA 2i rack, an MTIA 1 server, an HGX H100 node) serving the service's
model; Poisson traces at candidate rates that share their random streams (unit gaps scaled by
1/rate, the same request sizes); each candidate replayed through the engine and judged by the
SLO percentile (p99 latency for R&R; p99 TTFT and TPOT for LLM; any rejected request fails).
The bracketing search (`planning/search.py`) evaluates several rates per round, as parallel
Ray tasks when Ray is up. Offline mode: every request at t=0, throughput = requests / makespan.
Reported per accelerator, per host, per platform unit, with power (accelerators from the
replay's device energy, plus the hosts' non-accelerator power) and performance per watt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.estimators import rr_best_throughput
from mtia_cluster.planning.search import SearchResult, find_max_rate
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.workloads import LLMModel, RRModel

KIND_CAPACITY_WORKLOAD = 902  # spawn-key namespace of the capacity traces
RR_SIZES = {"dist": "mlperf-dlrm-v2"}
LLM_LENGTHS = {"dist": "azure-2023-conv"}


@dataclass(frozen=True)
class SLO:
    """p99 bounds in seconds (None: not bounded)."""

    p99_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def platform_for(cat: Catalog, chip: str) -> str:
    """The platform that deploys `chip` (rack or server) for capacity figures."""
    for name, p in sorted(cat.platforms.items()):
        if p.chip == chip:
            return name
    raise UserError("no platform in the catalog deploys this chip", field="--chips", value=chip)


def _pool(
    cat: Catalog, model: RRModel | LLMModel, platform: str, hosts: int | None = None
) -> dict[str, Any]:
    p = cat.platform(platform)
    pool: dict[str, Any] = {
        "service": "svc",
        "model": model.name,
        "platform": platform,
        "hosts": hosts or p.hosts,
    }
    if isinstance(model, RRModel):
        pool["batching"] = {"max_items": model.max_batch, "max_wait_us": 2000}
        return pool
    chip = cat.chip(p.chip)
    for tp in (1, 2, 4, 8, 16, 32, 64, 72):  # smallest TP whose replica fits
        if tp > min(chip.scale_up_domain, p.accelerators) or p.accelerators % tp:
            continue
        try:
            llm_iteration_model(chip, model, tp=tp)
        except UserError:
            continue
        pool.update(tp=tp, accelerators_per_replica=tp)
        return pool
    raise UserError(
        f"{model.name} fits no replica of one {platform}", field="--chips", value=p.chip
    )


def _workload(model: RRModel | LLMModel, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = entity_rng(seed, KIND_CAPACITY_WORKLOAD)
    gaps = rng.exponential(1.0, n)
    if isinstance(model, RRModel):
        return {"gaps": gaps, "items": sample_sizes(rng, RR_SIZES, n)}
    inp, out = sample_lengths(rng, LLM_LENGTHS, n)
    return {"gaps": gaps, "input_tokens": inp, "output_tokens": out}


def _replay(scenario: Any, work: dict[str, np.ndarray], rate: float | None) -> Any:
    """Replay the workload at `rate` (None: offline, all at t=0)."""
    n = len(work["gaps"])
    arrival = (
        np.zeros(n, np.int64)
        if rate is None
        else np.floor(np.cumsum(work["gaps"]) / rate * 1e9).astype(np.int64)
    )
    if "items" in work:
        requests = make_requests(arrival, items=work["items"])
    else:
        requests = make_requests(
            arrival, input_tokens=work["input_tokens"], output_tokens=work["output_tokens"]
        )
    return Simulation(scenario).run(requests)


def _meets(scenario: Any, work: dict[str, np.ndarray], rate: float, slo: SLO) -> bool:
    res = _replay(scenario, work, rate)
    r = res.requests
    if np.any(r.status != STATUS_OK):
        return False
    if slo.p99_s is not None:
        lat = (r.finish_ns - r.arrival_ns) / 1e9
        if np.percentile(lat, 99) > slo.p99_s:
            return False
    ttft = (r.first_token_ns - r.arrival_ns) / 1e9
    if slo.ttft_p99_s is not None and np.percentile(ttft, 99) > slo.ttft_p99_s:
        return False
    if slo.tpot_p99_s is not None:
        many = r.output_tokens > 1
        tpot = (r.finish_ns - r.first_token_ns)[many] / (r.output_tokens[many] - 1) / 1e9
        if len(tpot) and np.percentile(tpot, 99) > slo.tpot_p99_s:
            return False
    return True


def _evaluate(scenario: Any, work: dict[str, np.ndarray], slo: SLO) -> Any:
    """`evaluate(rates)` for the search: Ray tasks in parallel when Ray is up."""
    try:
        import ray

        if ray.is_initialized():
            task = ray.remote(_meets).options(num_cpus=1)
            sc, wk = ray.put(scenario), ray.put(work)
            return lambda rates: ray.get([task.remote(sc, wk, r, slo) for r in rates])
    except ImportError:
        pass
    return lambda rates: [_meets(scenario, work, r, slo) for r in rates]


def capacity(
    model_name: str,
    chip: str,
    slo: SLO,
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
    pool = _pool(cat, model, platform, hosts)
    slo_cfg = {}
    if slo.p99_s is not None:
        slo_cfg["p99_ms"] = slo.p99_s * 1e3
    scenario = parse_scenario(
        {
            "name": f"capacity-{model_name}-{chip}",
            "seed": seed,
            "regions": [{"name": "r", "pools": [pool]}],
            "slo": {"svc": slo_cfg} if slo_cfg else {},
        },
        None,
        cat,
    )
    guess = _guess_rate(cat, model, chip, platform, _workload(model, requests, seed), hosts)
    if offline:
        # enough requests to keep every accelerator busy for min_span_s at the guessed rate
        work = _workload(model, max(requests, int(guess * min_span_s)), seed)
        res = _replay(scenario, work, None)
        rate = len(res.requests) / (res.requests.finish_ns.max() / 1e9)
        return _result(cat, model, chip, platform, work, rate, res, offline, 1, hosts)
    replays = 0
    for _ in range(4):
        # The trace must span min_span_s at the rate it is judged at: a run too short never
        # shows the backlog an overloaded system builds, and would pass any rate.
        work = _workload(model, max(requests, int(2 * guess * min_span_s)), seed)
        cap = len(work["gaps"]) / min_span_s
        search = find_max_rate(
            _evaluate(scenario, work, slo),
            guess,
            parallel=2,
            rel_tol=rel_tol,
            max_rate=cap,
            on_round=_reporter(progress, replays),
        )
        replays += len(search.evaluations)
        rate = search.best_rate
        if rate < cap * 0.999:
            break
        guess = 2 * rate  # everything up to the cap passed: longer trace, higher rates
    res = _replay(scenario, work, rate) if rate > 0 else None
    return _result(cat, model, chip, platform, work, rate, res, offline, replays, hosts)


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


def _result(
    cat: Catalog,
    model: RRModel | LLMModel,
    chip: str,
    platform: str,
    work: dict[str, np.ndarray],
    rate: float,
    res: Any,
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
    acc_w = 0.0
    if res is not None and len(res.devices.energy_j):
        span_s = (res.devices.interval_end_ns.max() - res.devices.interval_start_ns.min()) / 1e9
        acc_w = float(res.devices.energy_j.sum()) / span_s if span_s > 0 else 0.0
    host_w = n_hosts * cat.host(p.host).power_w
    if isinstance(model, RRModel):
        bound = rr_best_throughput(cat.chip(chip), model, cat.host(p.host)).bound
    else:
        tp = _pool(cat, model, platform)["tp"]
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
    )


def parse_slo(text: str | None) -> SLO:
    """`p99=100ms` or `ttft_p99=2s,tpot_p99=200ms` (units ns, us, ms, s)."""
    if not text:
        return SLO()
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    out: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ns|us|ms|s)", value.strip())
        if not sep or key not in ("p99", "ttft_p99", "tpot_p99") or m is None:
            raise UserError(
                "expected p99=100ms or ttft_p99=2s,tpot_p99=200ms", field="--slo", value=text
            )
        out[f"{key}_s"] = float(m.group(1)) * units[m.group(2)]
    return SLO(**out)


def slo_from_scenario(entry: Sequence[Any] | dict[str, float]) -> SLO:
    """A scenario `slo:` entry ({p99_ms} or {ttft_p99_ms, tpot_p99_ms}) as an SLO."""
    e = dict(entry)
    return SLO(
        p99_s=e["p99_ms"] / 1e3 if "p99_ms" in e else None,
        ttft_p99_s=e["ttft_p99_ms"] / 1e3 if "ttft_p99_ms" in e else None,
        tpot_p99_s=e["tpot_p99_ms"] / 1e3 if "tpot_p99_ms" in e else None,
    )


def capacity_over_span(
    model_name: str,
    chip: str,
    slo: SLO,
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
    slo_cfg = {} if slo.p99_s is None else {"p99_ms": slo.p99_s * 1e3}
    scenario = parse_scenario(
        {
            "name": f"capacity-{model_name}-{chip}",
            "seed": seed,
            "regions": [{"name": "r", "pools": [_pool(cat, model, platform, hosts)]}],
            "slo": {"svc": slo_cfg} if slo_cfg else {},
        },
        None,
        cat,
    )
    replays, guess = 0, guess_rps
    for _ in range(4):
        work = _workload(model, max(1, math.ceil(2 * guess * span_s)), seed)
        cap = len(work["gaps"]) / span_s  # every rate tried spans >= span_s
        search = find_max_rate(
            _evaluate(scenario, work, slo), guess, parallel=2, rel_tol=rel_tol, max_rate=cap
        )
        replays += len(search.evaluations)
        if search.best_rate < cap * 0.999:
            break
        guess = 2 * search.best_rate
    rate = search.best_rate
    res = _replay(scenario, work, rate) if rate > 0 else None
    out = _result(cat, model, chip, platform, work, rate, res, False, replays, hosts)
    return out, search
