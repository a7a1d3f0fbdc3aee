"""Multi-service, multi-region trace mixes described by a small mapping (YAML or dict).

    name: demo
    duration_s: 900            # or `requests: N` (total, split by rate share)
    start_hour_utc: 0          # hour of week at t=0, Monday 00:00 UTC = 0 (for diurnal)
    regions:                   # optional; without it the trace has no region column
      us-east: {weight: 1.0, tz_offset_h: -5}
      eu-west: {weight: 0.6, tz_offset_h: 1}
    services:
      - name: rr-ranking
        kind: rr               # rr: items; llm: input_tokens/output_tokens
        rate_per_s: 4.0        # total over regions, split by region weight
        arrivals: {process: poisson}   # gamma|weibull (cv), onoff, offline, servegen
        diurnal: {peak_to_trough: 3, peak_hour_local: 20}   # day_s: 600 plays a day in 10 min
        items: {dist: mlperf-dlrm-v2}
      - name: llm-chat
        kind: llm
        rate_per_s: 1.0
        lengths: {dist: azure-2023-conv}
        sessions: {mean_turns: 3, think_time_s: 30}   # optional, LLM only (sessions.py)
        prefix_blocks: {block_tokens: 512, system_prompts: 4, system_prompt_tokens: 1024}
                               # optional, LLM only: hash chains (prefix.py)

Each (service, region) stream draws from its own generator,
`PCG64(SeedSequence(seed, spawn_key=(crc32(service), crc32(region), purpose)))`, so adding a
service never changes another's requests. Streams are merged by arrival (stable) and request
ids are assigned 0..n-1 in arrival order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mtia_cluster import __version__
from mtia_cluster.config import Fields
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import arrivals as arr
from mtia_cluster.traces.generators.diurnal import DiurnalProfile
from mtia_cluster.traces.generators.prefix import add_prefix_chains, chain_column, prefix_settings
from mtia_cluster.traces.generators.sessions import sessionize
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.traces.limits import check_generation

ARRIVALS, SIZES, PREFIXES = 0, 1, 2


def stream_rng(seed: int, service: str, region: str, purpose: int) -> np.random.Generator:
    """The independent random stream of one (service, region, purpose)."""
    key = (zlib.crc32(service.encode()), zlib.crc32(region.encode()), purpose)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _diurnal(svc: Fields, region: Fields | None, start_hour: float) -> DiurnalProfile | None:
    if not svc.has("diurnal"):
        return None
    d = svc.sub("diurnal")
    tz = region.number("tz_offset_h", 0.0, min_value=-14, max_value=14) if region else 0.0
    weekly = d.list("weekly", [1.0] * 7)
    try:
        weekly_t = tuple(float(x) for x in weekly)
    except (TypeError, ValueError):
        raise d.error("weekly", "expected 7 numbers", weekly) from None
    return DiurnalProfile(
        peak_to_trough=d.number("peak_to_trough", 1.0, min_value=1.0),
        peak_hour_local=d.number("peak_hour_local", 20.0, max_value=24),
        tz_offset_h=tz,
        start_hour_utc=start_hour,
        weekly=weekly_t,
        day_s=d.number("day_s", 86_400.0, positive=True),
    )


def _arrivals(
    rng: np.random.Generator, a: Fields, rate: float, n: int | None, duration_s: float | None
) -> np.ndarray:
    process = a.str(
        "process",
        "poisson",
        choices=["poisson", "gamma", "weibull", "onoff", "offline", "servegen"],
    )
    if process == "poisson":
        return arr.poisson(rng, rate, n=n, duration_s=duration_s)
    if process in ("gamma", "weibull"):
        return arr.renewal(
            rng, rate, a.number("cv", positive=True), process, n=n, duration_s=duration_s
        )
    if process == "onoff":
        # burst: on-state rate as a multiple of the mean; on_fraction of time spent on
        burst = a.number("burst_factor", 5.0, min_value=1.0)
        mean_on = a.number("mean_on_s", 1.0, positive=True)
        on_frac = min(
            a.number("on_fraction", 1.0 / burst, positive=True, max_value=1.0), 1.0 / burst
        )
        mean_off = mean_on * (1 - on_frac) / on_frac if on_frac < 1 else mean_on
        on_rate = rate * burst
        off_rate = max(rate - on_rate * on_frac, 0.0) / max(1 - on_frac, 1e-12)
        return arr.on_off(rng, on_rate, off_rate, mean_on, mean_off, n=n, duration_s=duration_s)
    if process == "offline":
        count = n if n is not None else round(rate * (duration_s or 0))
        return arr.offline(count)
    from mtia_cluster.traces.generators.servegen import servegen_arrivals

    if duration_s is None:
        raise a.error("process", "servegen arrivals need duration_s, not a request count", process)
    return servegen_arrivals(
        rng,
        a.str("path"),
        a.number("start_s", 0.0),
        duration_s,
        a.number("rate_scale", 1.0, positive=True),
    )


def _stream(
    seed: int,
    svc: Fields,
    name: str,
    region: str,
    region_f: Fields | None,
    rate: float,
    n: int | None,
    duration_s: float | None,
    start_hour: float,
) -> dict[str, np.ndarray]:
    """One (service, region) stream: arrivals (diurnal-warped), sizes and hash chains."""
    out = _sized_stream(seed, svc, name, region, region_f, rate, n, duration_s, start_hour)
    if "input_tokens" in out and svc.has("prefix_blocks"):
        rng = stream_rng(seed, name, region, PREFIXES)
        out = add_prefix_chains(rng, out, svc.sub("prefix_blocks"))
    return out


def _sized_stream(
    seed: int,
    svc: Fields,
    name: str,
    region: str,
    region_f: Fields | None,
    rate: float,
    n: int | None,
    duration_s: float | None,
    start_hour: float,
) -> dict[str, np.ndarray]:
    """One (service, region) stream: arrivals (diurnal-warped) and sizes."""
    rng = stream_rng(seed, name, region, ARRIVALS)
    a = svc.sub("arrivals", {"process": "poisson"})
    kind = svc.str("kind", choices=["rr", "llm"])
    sessions = svc.sub("sessions") if kind == "llm" and svc.has("sessions") else None
    if sessions is not None:  # the process gives session starts; turns follow
        mean_turns = sessions.number("mean_turns", 3.0, min_value=1.0)
        rate = rate / mean_turns
        n = None if n is None else max(1, round(n / mean_turns))
    profile = _diurnal(svc, region_f, start_hour)
    if profile is not None and duration_s is not None:
        op_duration = profile.operational_duration_s(duration_s)
        base = _arrivals(rng, a, rate, None, op_duration)
        t = profile.warp(base, duration_s)
        t = t[t < int(duration_s * arr.NS_PER_S)]
    else:
        t = _arrivals(rng, a, rate, n, duration_s)
        if profile is not None:
            t = profile.warp(t)
    size_rng = stream_rng(seed, name, region, SIZES)
    if sessions is not None:
        lengths = svc.sub("lengths", {"dist": "azure-2023-conv"})
        out = sessionize(size_rng, t, sessions, lengths)
        if duration_s is not None:
            keep = out["arrival_ns"] < int(duration_s * arr.NS_PER_S)
            out = {k: v[keep] for k, v in out.items()}
        return out
    out = {"arrival_ns": t}
    if kind == "rr":
        out["items"] = sample_sizes(
            size_rng,
            svc.sub("items", {"dist": "mlperf-dlrm-v2"}).data,
            len(t),
            svc.file,
            svc.path("items"),
        )
    else:
        lengths = svc.sub("lengths", {"dist": "azure-2023-conv"})
        out["input_tokens"], out["output_tokens"] = sample_lengths(
            size_rng, lengths.data, len(t), svc.file, lengths.prefix
        )
    return out


def _plan(f: Fields) -> tuple[list[tuple[Fields, str, str, Fields | None, float]], float]:
    """Every (service fields, service name, region, region fields, rate) stream, total rate."""
    regions: list[tuple[str, Fields | None, float]] = [("", None, 1.0)]
    if f.has("regions"):
        reg = f.sub("regions")
        regions = []
        for rname in reg.data:
            region_f = reg.sub(str(rname))
            regions.append((str(rname), region_f, region_f.number("weight", 1.0, positive=True)))
        if not regions:
            raise f.error("regions", "needs at least one region", {})
    total_w = sum(w for _, _, w in regions)
    streams: list[tuple[Fields, str, str, Fields | None, float]] = []
    names: set[str] = set()
    services = f.list("services")
    if not services:
        raise f.error("services", "needs at least one service", services)
    for i, _ in enumerate(services):
        svc = Fields(services[i], f.file, f.path(f"services[{i}]"))
        name = svc.str("name")
        if name in names:
            raise svc.error("name", "duplicate service name", name)
        names.add(name)
        rate = svc.number("rate_per_s", positive=True)
        for rname, rf, w in regions:
            streams.append((svc, name, rname, rf, rate * w / total_w))
    return streams, float(sum(s[4] for s in streams))


def generate_table(
    spec: Mapping[str, Any],
    seed: int = 0,
    file: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Generate the trace described by `spec`; returns (table, metadata).

    `progress(done, total)` is called after each (service, region) stream and the merge."""
    from mtia_cluster.config.schema import validate
    from mtia_cluster.config.trace_spec import TraceSpecFile

    validate(TraceSpecFile, spec, file)  # every key, type and range, before any draw
    f = Fields(spec, file)
    if f.has("requests") == f.has("duration_s"):
        raise UserError(
            "give exactly one of requests or duration_s", file=file, field="requests/duration_s"
        )
    total_n = f.int("requests", positive=True) if f.has("requests") else None
    duration_s = f.number("duration_s", positive=True) if f.has("duration_s") else None
    start_hour = f.number("start_hour_utc", 0.0, max_value=168.0)
    streams, total_rate = _plan(f)
    check_generation(total_n or total_rate * (duration_s or 0.0), duration_s, file)
    parts = []
    for svc, name, region, rf, rate in streams:
        n = None if total_n is None else round(total_n * rate / total_rate)
        parts.append(_stream(seed, svc, name, region, rf, rate, n, duration_s, start_hour))
        if progress is not None:
            progress(len(parts), len(streams) + 1)
    service_names = list(dict.fromkeys(s[1] for s in streams))
    region_names = list(dict.fromkeys(s[2] for s in streams))
    table = _merge(
        parts,
        [service_names.index(s[1]) for s in streams],
        [region_names.index(s[2]) for s in streams],
        service_names,
        region_names if f.has("regions") else None,
    )
    if progress is not None:
        progress(len(streams) + 1, len(streams) + 1)
    if len(table) == 0:
        raise UserError(
            "the spec generates no requests (rate × duration too small)",
            file=file,
            field="duration_s",
            value=duration_s,
        )
    meta = generated_metadata(spec, seed)
    block = _block_tokens(streams)
    if block is not None:
        meta["parameters"]["block_tokens"] = block
    return table, meta


def _block_tokens(streams: list[tuple[Fields, str, str, Fields | None, float]]) -> int | None:
    """The one hash block size of the services with prefix_blocks (None: no such service)."""
    sizes: dict[int, Fields] = {}
    for svc, *_ in streams:
        if svc.has("prefix_blocks"):
            sizes.setdefault(prefix_settings(svc.sub("prefix_blocks"))[0], svc)
    if len(sizes) > 1:
        svc = list(sizes.values())[-1]
        raise svc.sub("prefix_blocks").error(
            "block_tokens", "must be the same for every service (one per trace)", max(sizes)
        )
    return next(iter(sizes), None)


def generated_metadata(spec: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Metadata of a generated trace: our licence plus attribution of any data we sampled."""
    text = repr(spec)
    sources = ["synthetic (mtia-cluster generators)"]
    if "mlperf-dlrm-v2" in text or "'kind': 'rr'" in text:
        sources.append("R&R sizes: MLPerf Inference DLRM-v2 dist_quantile.txt (Apache-2.0)")
    if "azure-2023" in text or "'kind': 'llm'" in text:
        sources.append(
            "LLM lengths: Azure LLM inference trace 2023 quantiles (CC-BY-4.0, "
            "Microsoft Azure / Splitwise, ISCA 2024)"
        )
    if "servegen" in text:
        sources.append("ServeGen fits (alibaba/ServeGen, Apache-2.0)")
    return {
        "source": "; ".join(sources),
        "licence": "Apache-2.0 for the synthetic trace; see source for attributions",
        "generator": f"mtia_cluster.traces.generators.mix {__version__}",
        "parameters": {"seed": seed, "spec": dict(spec)},
    }


def _merge(
    parts: list[dict[str, np.ndarray]],
    service_idx: list[int],
    region_idx: list[int],
    services: list[str],
    regions: list[str] | None,
) -> pa.Table:
    """Concatenate streams, stable-sort by arrival, number requests 0..n-1."""
    sizes = [len(p["arrival_ns"]) for p in parts]
    t = np.concatenate([p["arrival_ns"] for p in parts])
    order = np.argsort(t, kind="stable") if len(parts) > 1 else None

    def col(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    svc = np.repeat(np.asarray(service_idx, dtype=np.int32), sizes)
    cols: dict[str, pa.Array] = {
        "request_id": pa.array(np.arange(len(t), dtype=np.int64)),
        "arrival_ns": pa.array(col(t)),
        "service": pa.DictionaryArray.from_arrays(pa.array(col(svc)), pa.array(services)),
    }
    if regions is not None:
        reg = np.repeat(np.asarray(region_idx, dtype=np.int32), sizes)
        cols["region"] = pa.DictionaryArray.from_arrays(pa.array(col(reg)), pa.array(regions))
    if any("session_id" in p for p in parts):
        # session ids are per stream; offset them so they are unique in the trace
        offsets = np.cumsum(
            [0]
            + [
                int(p["session_id"].max()) + 1 if "session_id" in p and len(p["session_id"]) else 0
                for p in parts
            ]
        )
        values = np.concatenate(
            [
                p["session_id"] + off if "session_id" in p else np.zeros(n, np.int64)
                for p, n, off in zip(parts, sizes, offsets, strict=False)
            ]
        )
        mask = np.concatenate(
            [np.full(n, "session_id" not in p) for p, n in zip(parts, sizes, strict=True)]
        )
        cols["session_id"] = pa.array(col(values), mask=col(mask), type=pa.int64())
    if any("prefix_ids" in p for p in parts):
        cols["prefix_blocks"] = _merged_chains(parts, sizes, order)
    for name in ("items", "input_tokens", "output_tokens"):
        if any(name in p for p in parts):
            values = np.concatenate(
                [p.get(name, np.zeros(n, np.int32)) for p, n in zip(parts, sizes, strict=True)]
            )
            mask = np.concatenate(
                [np.full(n, name not in p) for p, n in zip(parts, sizes, strict=True)]
            )
            cols[name] = pa.array(col(values), mask=col(mask), type=pa.int32())
    return pa.table(cols)


def _merged_chains(
    parts: list[dict[str, np.ndarray]], sizes: list[int], order: np.ndarray | None
) -> pa.Array:
    """The streams' chains in merged order, each stream's ids offset past the previous
    streams' (null for streams without chains)."""
    arrays, base = [], 0
    for p, n in zip(parts, sizes, strict=True):
        if "prefix_ids" not in p:
            arrays.append(pa.nulls(n, pa.list_(pa.int64())))
            continue
        ids = p["prefix_ids"] + base
        base = int(ids.max()) + 1 if len(ids) else base
        arrays.append(chain_column(p["prefix_offsets"], ids))
    merged = pa.concat_arrays(arrays)
    return merged if order is None else merged.take(pa.array(order))
