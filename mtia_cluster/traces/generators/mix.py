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
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from mtia_cluster import __version__
from mtia_cluster.config.schema import validate
from mtia_cluster.config.trace_spec import (
    Arrivals,
    MLPerfSizes,
    Offline,
    OnOff,
    Poisson,
    RegionMix,
    Renewal,
    ServeGen,
    ServiceSpec,
    TableLengths,
    TraceSpecFile,
)
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import arrivals as arr
from mtia_cluster.traces.generators.diurnal import DiurnalProfile
from mtia_cluster.traces.generators.prefix import add_prefix_chains, chain_column
from mtia_cluster.traces.generators.sessions import sessionize
from mtia_cluster.traces.generators.sizes import sample_lengths, sample_sizes
from mtia_cluster.traces.limits import check_generation

ARRIVALS, SIZES, PREFIXES = 0, 1, 2
DEFAULT_ITEMS = MLPerfSizes(dist="mlperf-dlrm-v2")  # rr services without `items`
DEFAULT_LENGTHS = TableLengths(dist="azure-2023-conv")  # llm services without `lengths`


def stream_rng(seed: int, service: str, region: str, purpose: int) -> np.random.Generator:
    """The independent random stream of one (service, region, purpose)."""
    key = (zlib.crc32(service.encode()), zlib.crc32(region.encode()), purpose)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


class Stream(NamedTuple):
    """One (service, region) stream of a spec and its share of the service's rate."""

    svc: ServiceSpec
    region: str
    region_mix: RegionMix | None  # None: the spec has no regions
    rate: float


def _diurnal(
    svc: ServiceSpec, region: RegionMix | None, start_hour: float
) -> DiurnalProfile | None:
    d = svc.diurnal
    if d is None:
        return None
    return DiurnalProfile(
        peak_to_trough=d.peak_to_trough,
        peak_hour_local=d.peak_hour_local,
        tz_offset_h=region.tz_offset_h if region else 0.0,
        start_hour_utc=start_hour,
        weekly=tuple(d.weekly),
        day_s=d.day_s,
    )


def _arrivals(
    rng: np.random.Generator, a: Arrivals, rate: float, n: int | None, duration_s: float | None
) -> np.ndarray:
    if isinstance(a, Poisson):
        return arr.poisson(rng, rate, n=n, duration_s=duration_s)
    if isinstance(a, Renewal):
        return arr.renewal(rng, rate, a.cv, a.process, n=n, duration_s=duration_s)
    if isinstance(a, OnOff):
        # burst: on-state rate as a multiple of the mean; on_fraction of time spent on
        burst, mean_on = a.burst_factor, a.mean_on_s
        on_frac = min(a.on_fraction if a.on_fraction is not None else 1.0 / burst, 1.0 / burst)
        mean_off = mean_on * (1 - on_frac) / on_frac if on_frac < 1 else mean_on
        on_rate = rate * burst
        off_rate = max(rate - on_rate * on_frac, 0.0) / max(1 - on_frac, 1e-12)
        return arr.on_off(rng, on_rate, off_rate, mean_on, mean_off, n=n, duration_s=duration_s)
    if isinstance(a, Offline):
        count = n if n is not None else round(rate * (duration_s or 0))
        return arr.offline(count)
    from mtia_cluster.traces.generators.servegen import servegen_arrivals

    if duration_s is None:  # refused with file and field by _check_spec
        raise ValueError("servegen arrivals need duration_s")
    return servegen_arrivals(rng, a.path, a.start_s, duration_s, a.rate_scale)


def _stream(
    seed: int, s: Stream, n: int | None, duration_s: float | None, start_hour: float
) -> dict[str, np.ndarray]:
    """One (service, region) stream: arrivals (diurnal-warped), sizes and hash chains."""
    out = _sized_stream(seed, s, n, duration_s, start_hour)
    if "input_tokens" in out and s.svc.prefix_blocks is not None:
        rng = stream_rng(seed, s.svc.name, s.region, PREFIXES)
        out = add_prefix_chains(rng, out, s.svc.prefix_blocks)
    return out


def _sized_stream(
    seed: int, s: Stream, n: int | None, duration_s: float | None, start_hour: float
) -> dict[str, np.ndarray]:
    """One (service, region) stream: arrivals (diurnal-warped) and sizes."""
    svc, rate = s.svc, s.rate
    rng = stream_rng(seed, svc.name, s.region, ARRIVALS)
    sessions = svc.sessions if svc.kind == "llm" else None
    if sessions is not None:  # the process gives session starts; turns follow
        rate = rate / sessions.mean_turns
        n = None if n is None else max(1, round(n / sessions.mean_turns))
    profile = _diurnal(svc, s.region_mix, start_hour)
    if profile is not None and duration_s is not None:
        op_duration = profile.operational_duration_s(duration_s)
        base = _arrivals(rng, svc.arrivals, rate, None, op_duration)
        t = profile.warp(base, duration_s)
        t = t[t < int(duration_s * arr.NS_PER_S)]
    else:
        t = _arrivals(rng, svc.arrivals, rate, n, duration_s)
        if profile is not None:
            t = profile.warp(t)
    size_rng = stream_rng(seed, svc.name, s.region, SIZES)
    lengths = svc.lengths or DEFAULT_LENGTHS
    if sessions is not None:
        out = sessionize(size_rng, t, sessions, lengths)
        if duration_s is not None:
            keep = out["arrival_ns"] < int(duration_s * arr.NS_PER_S)
            out = {k: v[keep] for k, v in out.items()}
        return out
    out = {"arrival_ns": t}
    if svc.kind == "rr":
        out["items"] = sample_sizes(size_rng, svc.items or DEFAULT_ITEMS, len(t))
    else:
        out["input_tokens"], out["output_tokens"] = sample_lengths(size_rng, lengths, len(t))
    return out


def _plan(spec: TraceSpecFile) -> tuple[list[Stream], float]:
    """Every (service, region) stream with its rate, and the total rate."""
    regions: list[tuple[str, RegionMix | None]] = [("", None)]
    if spec.regions is not None:
        regions = [(str(name), mix) for name, mix in spec.regions.items()]
    total_w = sum(mix.weight if mix else 1.0 for _, mix in regions)
    streams = [
        Stream(svc, name, mix, svc.rate_per_s * (mix.weight if mix else 1.0) / total_w)
        for svc in spec.services
        for name, mix in regions
    ]
    return streams, float(sum(s.rate for s in streams))


def _check_spec(spec: TraceSpecFile, file: str | Path | None) -> None:
    """What the models cannot see field by field: names unique, one hash block size per
    trace, ServeGen arrivals only with a duration. One UserError naming file and field."""
    names: set[str] = set()
    blocks: dict[int, int] = {}  # block_tokens -> first service index with it
    for i, svc in enumerate(spec.services):
        if svc.name in names:
            raise UserError(
                "duplicate service name", file=file, field=f"services[{i}].name", value=svc.name
            )
        names.add(svc.name)
        if isinstance(svc.arrivals, ServeGen) and spec.duration_s is None:
            raise UserError(
                "servegen arrivals need duration_s, not a request count",
                file=file,
                field=f"services[{i}].arrivals.process",
                value=svc.arrivals.process,
            )
        if svc.prefix_blocks is not None:
            blocks.setdefault(svc.prefix_blocks.block_tokens, i)
    if len(blocks) > 1:
        raise UserError(
            "must be the same for every service (one per trace)",
            file=file,
            field=f"services[{list(blocks.values())[-1]}].prefix_blocks.block_tokens",
            value=max(blocks),
        )


def generate_table(
    spec: Mapping[str, Any],
    seed: int = 0,
    file: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Generate the trace described by `spec`; returns (table, metadata).

    `progress(done, total)` is called after each (service, region) stream and the merge."""
    model = validate(TraceSpecFile, spec, file)  # every key, type and range, before any draw
    _check_spec(model, file)
    total_n, duration_s = model.requests, model.duration_s
    streams, total_rate = _plan(model)
    check_generation(total_n or total_rate * (duration_s or 0.0), duration_s, file)
    parts = []
    for s in streams:
        n = None if total_n is None else round(total_n * s.rate / total_rate)
        parts.append(_stream(seed, s, n, duration_s, model.start_hour_utc))
        if progress is not None:
            progress(len(parts), len(streams) + 1)
    service_names = list(dict.fromkeys(s.svc.name for s in streams))
    region_names = list(dict.fromkeys(s.region for s in streams))
    table = _merge(
        parts,
        [service_names.index(s.svc.name) for s in streams],
        [region_names.index(s.region) for s in streams],
        service_names,
        region_names if model.regions is not None else None,
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
    blocks = {s.svc.prefix_blocks.block_tokens for s in streams if s.svc.prefix_blocks}
    if blocks:  # one size, by _check_spec
        meta["parameters"]["block_tokens"] = blocks.pop()
    return table, meta


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
