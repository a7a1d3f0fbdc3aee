"""Per-group request statistics that merge: compute per (region, service), combine per service.

A :class:`Partial` holds what a group's figures need: additive counts (by status, within SLO,
over each bound, items, tokens) and the ok requests' latency (and TTFT/TPOT) values for exact
quantiles. Fleet-wide per-service figures are the merge of the regions' partials, so each
region's requests are read once. Memory: 4 bytes per ok request per kept metric (int32 when
the values fit, else 8); a bounded Partial (a shard writer's) holds a histogram per metric
instead, its quantiles resolved from the written rows (results/exact.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.results.hist import ValueHist
from mtia_cluster.results.verdict import VerdictRules, metric_verdict, verdict
from mtia_cluster.slo import ServiceSLO
from mtia_cluster.units import NS_PER_S

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99_9": 0.999}
TOKEN_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
STATUSES = ("ok", "dropped", "rejected", "failed")
REJECTED = STATUSES.index("rejected")
COLUMNS = [
    "status",
    "arrival_ns",
    "first_token_ns",
    "finish_ns",
    "latency_ns",
    "slo_ok",
    "items",
    "output_tokens",
    "input_tokens",
    "accelerator_id",
    "preemptions",
    "cached_tokens",
]


@dataclass
class Partial:
    """Mergeable statistics of one set of requests of one service."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(STATUSES), dtype=np.int64))
    good: int = 0
    items: int = 0
    output_tokens: int = 0
    has_tokens: bool = False
    last_arrival_ns: int = 0
    input_tokens: int = 0  # ok requests' prompt tokens
    cached_tokens: int = 0  # ok requests' prompt tokens reused from the prefix cache
    preemptions: int = 0  # over all requests
    kv_failures: int = 0  # requests a replica rejected (their KV can never fit)
    over: dict[str, int] = field(default_factory=dict)  # metric -> requests over its bound
    latency: list[np.ndarray] = field(default_factory=list)  # ok requests
    ttft: list[np.ndarray] = field(default_factory=list)
    tpot: list[np.ndarray] = field(default_factory=list)
    spilled_from: dict[str, int] = field(default_factory=dict)  # home region -> requests
    network: list[np.ndarray] = field(default_factory=list)  # ok requests' network_ns > 0
    # bounded statistics (a shard writer's): per kept metric (latency, ttft, tpot, network)
    # a histogram instead of the values, the four lists above staying empty; the exact
    # quantiles are filled into `resolved` (metric -> quantile name -> value) from one
    # collecting read of the written rows (results/exact.py) before `finish`
    hists: dict[str, ValueHist] | None = None
    resolved: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def offered(self) -> int:
        return int(self.counts.sum())


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Numpy views of the request columns; status as its index in STATUSES."""
    out = {n: table[n].to_numpy() for n in COLUMNS if n != "status"}
    names = table["status"].cast(pa.string())
    out["status"] = pc.index_in(names, value_set=pa.array(STATUSES)).to_numpy()
    return _with_network(table, out)


def _with_network(table: pa.Table, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`out` with the optional ``network_ns`` column (runs written before it: absent, or
    null when read through the current schema, i.e. 0)."""
    if "network_ns" in table.column_names:
        out["network_ns"] = table["network_ns"].fill_null(0).to_numpy()
    return out


def _over(c: dict[str, np.ndarray], ok: np.ndarray, slo: ServiceSLO) -> dict[str, int]:
    """Requests over each bound; a request not finished ok is over every bound."""
    out: dict[str, int] = {}
    if slo.latency_ns is not None:
        out["latency"] = int(np.count_nonzero(~ok | (c["latency_ns"] > slo.latency_ns)))
    if slo.ttft_ns is not None:
        ttft = c["first_token_ns"] - c["arrival_ns"]
        out["ttft"] = int(np.count_nonzero(~ok | (ttft > slo.ttft_ns)))
    if slo.tpot_ns is not None:
        steps = c["output_tokens"].astype(np.int64) - 1
        late = (steps > 0) & (c["finish_ns"] - c["first_token_ns"] > slo.tpot_ns * steps)
        out["tpot"] = int(np.count_nonzero(~ok | late))
    return out


def partial(table: pa.Table, slo: ServiceSLO | None, keep_tokens: bool = False) -> Partial:
    """The partial statistics of `table`'s requests (all of one service).

    `keep_tokens`: keep TTFT/TPOT values even when this piece alone looks R&R (no SLO and no
    output tokens): a piece of a larger set must not decide the set's kind (`finish` ignores
    them when the merged set is R&R)."""
    p = partial_of_columns(_columns(table), slo, keep_tokens)
    p.spilled_from = spilled_from(table)
    return p


def spilled_from(table: pa.Table) -> dict[str, int]:
    """Home region -> requests of `table` (rows of one serving region) that the global
    router sent here from that home (``spill_rtt_ns > 0``; docs/network.md)."""
    if "spill_rtt_ns" not in table.column_names or table.num_rows == 0:
        return {}
    moved = table.filter(pc.greater(table["spill_rtt_ns"], 0))
    if moved.num_rows == 0:
        return {}
    counts = pc.value_counts(moved["origin_region"].cast(pa.string())).to_pylist()
    return {c["values"]: int(c["counts"]) for c in counts}


def codes(column: pa.ChunkedArray | pa.Array, names: tuple[str, ...]) -> np.ndarray:
    """Index of each value in `names` (-1: not there), from a dictionary column's indices
    without casting every value to a string."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(arr.type):
        found = pc.index_in(arr.cast(pa.string()), value_set=pa.array(names))
        return found.fill_null(-1).to_numpy().astype(np.int64)
    lut = np.array(
        [names.index(v) if v in names else -1 for v in arr.dictionary.to_pylist()] + [-1],
        dtype=np.int64,
    )
    return lut[arr.indices.fill_null(len(lut) - 1).to_numpy()]


def fast_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """`_columns` for tables whose status is a dictionary column (the writer's own rows):
    the same arrays, status codes taken from the dictionary indices."""
    out = {n: table[n].to_numpy() for n in COLUMNS if n != "status"}
    out["status"] = codes(table["status"], STATUSES)
    return _with_network(table, out)


def partial_of_columns(
    c: dict[str, np.ndarray],
    slo: ServiceSLO | None,
    keep_tokens: bool = False,
    latency: np.ndarray | None = None,
    bounded: bool = False,
) -> Partial:
    """`partial` of requests given as numpy columns (see `_columns`); `latency`: the ok
    rows' ``narrow(latency_ns)`` when the caller has it (kept as given: the writer shares
    one array with the region's interval statistics). `bounded`: histograms of the kept
    metrics instead of their values (`Partial.hists`)."""
    ok = c["status"] == 0
    p = _counted(c, ok, slo)
    if latency is None and bounded:
        latency = c["latency_ns"][ok]
    values = metric_values(
        c, ok, kind_of(slo, p) == "llm" or (keep_tokens and slo is None), latency
    )
    if bounded:
        p.hists = {name: ValueHist.of(v) for name, v in values.items()}
        return p
    p.latency = [values["latency"]]
    if "network" in values:
        p.network = [values["network"]]
    if "ttft" in values:
        p.ttft, p.tpot = [values["ttft"]], [values["tpot"]]
    return p


def metric_values(
    c: dict[str, np.ndarray], ok: np.ndarray, tokens: bool, latency: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The values of the kept metrics of requests `c` (numpy columns): the ok requests'
    latency (`latency` when the caller has it, else ``narrow(latency_ns)``), their
    network_ns above 0 (when the column is there), and with `tokens` their TTFT and the
    TPOT of those with more than one output token. The one definition of each: the exact
    re-read of written rows computes them here too (results/exact.py)."""
    out = {"latency": narrow(c["latency_ns"][ok]) if latency is None else latency}
    if "network_ns" in c:  # only the non-zero values: a network-free run keeps nothing
        net = c["network_ns"][ok]
        out["network"] = net[net > 0]
    if tokens:
        out["ttft"] = narrow((c["first_token_ns"] - c["arrival_ns"])[ok])
        steps = c["output_tokens"].astype(np.int64) - 1
        multi = ok & (steps > 0)
        out["tpot"] = (c["finish_ns"] - c["first_token_ns"])[multi] / steps[multi]
    return out


def _counted(c: dict[str, np.ndarray], ok: np.ndarray, slo: ServiceSLO | None) -> Partial:
    """The Partial's counts and sums (no kept values) of requests `c`."""
    return Partial(
        counts=np.bincount(c["status"], minlength=len(STATUSES)).astype(np.int64),
        good=int(np.count_nonzero(c["slo_ok"])),
        items=int(c["items"][ok].sum()),
        output_tokens=int(c["output_tokens"][ok].sum()),
        has_tokens=bool(len(ok) and int(c["output_tokens"].max()) > 0),
        last_arrival_ns=int(c["arrival_ns"].max()) if len(ok) else 0,
        input_tokens=int(c["input_tokens"][ok].sum()),
        cached_tokens=int(c["cached_tokens"][ok].sum()),
        preemptions=int(c["preemptions"].sum()),
        kv_failures=int(np.count_nonzero((c["status"] == REJECTED) & (c["accelerator_id"] >= 0))),
        over=_over(c, ok, slo) if slo is not None else {},
    )


def narrow(values: np.ndarray) -> np.ndarray:
    """Kept integer values as int32 when every one fits (ns latencies under 2.1 s: half the
    memory of the exact quantiles' values; the figures are the same numbers)."""
    if values.dtype != np.int64 or len(values) == 0:
        return values
    fits = int(values.min()) >= 0 and int(values.max()) <= np.iinfo(np.int32).max
    return values.astype(np.int32) if fits else values


def merge(parts: Iterable[Partial]) -> Partial:
    """One Partial for the union of disjoint request sets."""
    out = Partial()
    for p in parts:
        out.counts = out.counts + p.counts
        out.good += p.good
        out.items += p.items
        out.output_tokens += p.output_tokens
        out.has_tokens |= p.has_tokens
        out.last_arrival_ns = max(out.last_arrival_ns, p.last_arrival_ns)
        out.input_tokens += p.input_tokens
        out.cached_tokens += p.cached_tokens
        out.preemptions += p.preemptions
        out.kv_failures += p.kv_failures
        for k, v in p.over.items():
            out.over[k] = out.over.get(k, 0) + v
        out.latency += p.latency
        out.ttft += p.ttft
        out.tpot += p.tpot
        out.network += p.network
        for k, n in p.spilled_from.items():
            out.spilled_from[k] = out.spilled_from.get(k, 0) + n
        if p.hists is not None:
            out.hists = merge_hists(out.hists or {}, p.hists)
    return out


def merge_hists(a: Mapping[str, ValueHist], b: Mapping[str, ValueHist]) -> dict[str, ValueHist]:
    """Per metric, the histogram of both (a metric in one only is kept as it is)."""
    return {k: a[k].merged(b[k]) if k in a and k in b else a.get(k) or b[k] for k in {*a, *b}}


def kind_of(slo: ServiceSLO | None, p: Partial) -> str:
    """The kind (rr, llm) of a group's figures: the SLO's, else LLM when any request has
    output tokens."""
    if slo is not None:
        return slo.kind
    return "llm" if p.has_tokens else "rr"


def _values(arrays: list[np.ndarray]) -> np.ndarray:
    """The kept values as one new array (the caller owns it: `_quantiles` may reorder it)."""
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _quantiles(values: np.ndarray, qs: Mapping[str, float]) -> dict[str, float | None]:
    """Exact quantiles (numpy linear interpolation); None for an empty group. `values` is
    partitioned in place (a `_values` array: no second copy of a fleet's latencies)."""
    if len(values) == 0:
        return dict.fromkeys(qs)
    got = np.quantile(values, list(qs.values()), overwrite_input=True)
    return {k: float(v) for k, v in zip(qs, got, strict=True)}


def _verdict(p: Partial, slo: ServiceSLO | None, rules: VerdictRules) -> dict[str, Any]:
    """LoadGen-style verdict over the partial's counts."""
    metrics = []
    if slo is not None:
        bounds = {"latency": slo.latency_ns, "ttft": slo.ttft_ns, "tpot": slo.tpot_ns}
        for name, over in p.over.items():
            bound = bounds[name]
            assert bound is not None
            metrics.append(
                metric_verdict(
                    name=name,
                    n=p.offered,
                    over=over,
                    bound_ns=bound,
                    p=slo.percentile / 100.0,
                    rules=rules,
                )
            )
    not_ok = p.offered - int(p.counts[0])
    return verdict(
        metrics, duration_ns=p.last_arrival_ns, rules=rules, not_ok=not_ok, requests=p.offered
    )


def finish(
    p: Partial, *, slo: ServiceSLO | None, duration_ns: int, rules: VerdictRules
) -> dict[str, Any]:
    """Counts, rates, latency quantiles (TTFT/TPOT for LLM) and verdict of one group."""
    seconds = max(duration_ns, 1) / NS_PER_S
    counts = {s: int(p.counts[i]) for i, s in enumerate(STATUSES)}
    out: dict[str, Any] = {
        "kind": kind_of(slo, p),
        "offered": p.offered,
        "completed": counts["ok"],
        "good": p.good,
        **{s: counts[s] for s in STATUSES[1:]},
        "offered_per_s": p.offered / seconds,
        "completed_per_s": counts["ok"] / seconds,
        "goodput_per_s": p.good / seconds,
        "items_per_s": p.items / seconds,
        "output_tokens_per_s": p.output_tokens / seconds,
        "output_tokens": p.output_tokens,
        "items": p.items,
        "latency_ns": _latency_stats(p),
    }
    network = _network_stats(p, counts["ok"])
    if network is not None:
        out["network_ns"] = network
    if out["kind"] == "llm":
        out["ttft_ns"] = _token_quantiles(p, "ttft")
        out["tpot_ns"] = _token_quantiles(p, "tpot")
        out["input_tokens"] = p.input_tokens
        out["preemptions"] = p.preemptions
        out["kv_allocation_failures"] = p.kv_failures
        out["prefix_cache_hit_rate"] = p.cached_tokens / p.input_tokens if p.input_tokens else None
    out["verdict"] = _verdict(p, slo, rules)
    return out


def _latency_stats(p: Partial) -> dict[str, Any]:
    """Mean, max and quantiles of the ok requests' latency (None for none), from the kept
    values or from the histogram and the resolved quantiles."""
    if p.hists is not None:
        h = p.hists.get("latency") or ValueHist()
        return {
            "mean": float(h.total) / h.n if h.n else None,
            "max": h.max if h.n else None,
            **(p.resolved["latency"] if h.n else dict.fromkeys(QUANTILES)),
        }
    latency = _values(p.latency)
    return {
        "mean": float(latency.sum()) / len(latency) if len(latency) else None,
        "max": int(latency.max()) if len(latency) else None,
        **_quantiles(latency, QUANTILES),
    }


def _token_quantiles(p: Partial, metric: str) -> dict[str, float | None]:
    """TTFT or TPOT quantiles of an LLM group (None for no values)."""
    if p.hists is not None:
        h = p.hists.get(metric) or ValueHist()
        return p.resolved[metric] if h.n else dict.fromkeys(TOKEN_QUANTILES)
    return _quantiles(_values(getattr(p, metric)), TOKEN_QUANTILES)


def _network_stats(p: Partial, ok: int) -> dict[str, Any] | None:
    """`network_stats` of the group, None when no ok request had network time."""
    if p.hists is not None:
        h = p.hists.get("network") or ValueHist()
        if not h.n:
            return None
        return {"mean": float(h.total) / ok, "max": h.max, **p.resolved["network"], "requests": h.n}
    network = _values(p.network)
    return network_stats(network, ok) if len(network) else None


def network_stats(nonzero: np.ndarray, ok: int) -> dict[str, Any]:
    """Per-request network time (``network_ns``: fabric transfers + spill RTT) of a group's
    `ok` requests, given the values above zero: mean, quantiles and max over all `ok`
    requests (the others count as 0), and how many requests had any."""
    values = np.concatenate([np.zeros(ok - len(nonzero)), nonzero])
    return {
        "mean": float(nonzero.sum()) / ok,
        "max": int(nonzero.max()),
        **_quantiles(values, TOKEN_QUANTILES),
        "requests": len(nonzero),
    }
