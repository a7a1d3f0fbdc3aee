"""The two streaming passes over `requests/`: counts, sums and histograms, then exact quantiles.

Both passes read the dataset as record batches of a few columns, so memory is bounded by the
batch size, the group accumulators and the histograms, never by the run. Conventions follow
`regions/` (docs/results.md): a request is *offered* in the window of its arrival; completed,
good, latency/TTFT/TPOT and the other statuses count in the window of its finish. Without
``--window`` there is one window and the conventions coincide with `summary.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mtia_cluster.results.analysis.accumulators import METRICS, Batch, LevelAcc
from mtia_cluster.results.analysis.groups import Keys, name_codes
from mtia_cluster.results.analysis.refine import exact_quantiles, make_plans
from mtia_cluster.results.hist import N_BUCKETS
from mtia_cluster.results.summary import STATUSES
from mtia_cluster.slo import ServiceSLO

BATCH_ROWS = 262_144
_DENSE_LIMIT = 1 << 16


def _add(target: np.ndarray, idx: np.ndarray, weights: np.ndarray | None = None) -> None:
    """target[idx] += weights (or 1), dense bincount for small targets, sparse otherwise."""
    if len(idx) == 0:
        return
    if len(target) <= _DENSE_LIMIT:
        target += np.bincount(idx, weights=weights, minlength=len(target)).astype(target.dtype)
        return
    uniq, inverse = np.unique(idx, return_inverse=True)
    target[uniq] += np.bincount(inverse, weights=weights).astype(target.dtype)


_COLUMNS = [
    "region",
    "service",
    "accelerator_id",
    "status",
    "arrival_ns",
    "first_token_ns",
    "finish_ns",
    "output_tokens",
    "items",
    "slo_ok",
    "input_tokens",
    "preemptions",
    "cached_tokens",
]
_OPTIONAL = ("input_tokens", "preemptions", "cached_tokens")  # runs written before: zeros


def _record_batches(requests: ds.Dataset, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches file by file, row group by row group, with the `region` partition value.

    ``ParquetFile.iter_batches`` decodes one row group at a time with no read-ahead; the
    dataset scanner buffers ahead of a slow consumer (measured: +900 MB on 20M requests), and
    pre-buffering or threaded decoding cost another 80-110 MB for about 0.7 s a pass.
    """
    for fragment in requests.get_fragments():
        region = ds.get_partition_keys(fragment.partition_expression).get("region")
        with fragment.filesystem.open_input_file(fragment.path) as f:
            parquet = pq.ParquetFile(f, pre_buffer=False)
            present = set(parquet.schema_arrow.names)
            wanted = [c for c in columns if c in present or c not in _OPTIONAL]
            for rb in parquet.iter_batches(
                batch_size=BATCH_ROWS, columns=wanted, use_threads=False
            ):
                names = pa.repeat(pa.scalar(region, pa.string()), rb.num_rows)
                yield rb.append_column("region", names)


def batches(
    requests: ds.Dataset, keys: Keys, window_ns: int | None, windows: int
) -> Iterator[Batch]:
    """The dataset as :class:`Batch` es, streamed one row group at a time."""
    for rb in _record_batches(requests, [c for c in _COLUMNS if c != "region"]):
        if rb.num_rows == 0:
            continue
        names = [n for n in _COLUMNS[3:] if n != "status" and n in rb.schema.names]
        col = {n: rb[n].to_numpy(zero_copy_only=False) for n in names}
        zeros = np.zeros(rb.num_rows, dtype=np.int64)
        codes = {
            "region": name_codes(rb["region"], keys.labels["region"]),
            "service": name_codes(rb["service"], keys.labels["service"]),
        }
        accel = rb["accelerator_id"].to_numpy(zero_copy_only=False)
        for dim in ("generation", "rack"):
            codes[dim] = keys.from_accelerator(dim, accel)
        status = name_codes(rb["status"], [*STATUSES, "-"])
        arrival, finish = col["arrival_ns"], col["finish_ns"]
        yield Batch(
            codes=codes,
            status=status,
            ok=status == 0,
            arrival_ns=arrival,
            finish_ns=finish,
            first_token_ns=col["first_token_ns"],
            output_tokens=col["output_tokens"].astype(np.int64),
            items=col["items"].astype(np.int64),
            slo_ok=np.asarray(col["slo_ok"], dtype=bool),
            llm={n: col.get(n, zeros).astype(np.int64) for n in _OPTIONAL} | {"accel": accel},
            win_arrival=_window(arrival, window_ns, windows),
            win_finish=_window(finish, window_ns, windows),
        )


def _window(t_ns: np.ndarray, window_ns: int | None, windows: int) -> np.ndarray:
    if window_ns is None:
        return np.zeros(len(t_ns), dtype=np.int64)
    return np.clip(t_ns // window_ns, 0, windows - 1).astype(np.int64)


def bounds_by_service(
    services: Sequence[str], slos: Mapping[str, ServiceSLO]
) -> dict[str, np.ndarray]:
    """Per service code: each metric's bound in ns (-1: not bounded); the ``-`` code unbounded."""
    out = {m: np.full(len(services) + 1, -1, dtype=np.int64) for m in METRICS}
    for i, s in enumerate(services):
        slo = slos.get(s)
        if slo is not None:
            for m in METRICS:
                bound = getattr(slo, f"{m}_ns")
                out[m][i] = -1 if bound is None else int(bound)
    return out


def _over(b: Batch, bounds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per row and bounded metric: counts as over the bound (LoadGen: not ok = infinitely late).

    Same rule as summary.py's verdict: latency/TTFT above the bound; TPOT compared in integers
    (``finish - first > bound * (tokens - 1)``), single-token requests never late on TPOT.
    """
    svc = b.codes["service"]
    steps = b.output_tokens - 1
    late = {
        "latency": (b.finish_ns - b.arrival_ns) > bounds["latency"][svc],
        "ttft": (b.first_token_ns - b.arrival_ns) > bounds["ttft"][svc],
        "tpot": (steps > 0) & (b.finish_ns - b.first_token_ns > bounds["tpot"][svc] * steps),
    }
    return {m: (bounds[m][svc] >= 0) & (~b.ok | late[m]) for m in METRICS}


def first_pass(
    acc: LevelAcc, b: Batch, llm: np.ndarray, bounds: dict[str, np.ndarray] | None
) -> None:
    """Counts, sums, maxima, verdict counters and histograms of one batch."""
    lv = acc.level
    ga, gf = lv.gid(b.codes, b.win_arrival), lv.gid(b.codes, b.win_finish)
    c = acc.counts
    _add(c["offered"], ga)
    for code, name in enumerate(STATUSES):
        mask = b.status == code
        _add(c["completed" if code == 0 else name], gf[mask])
    _add(c["good"], gf[b.slo_ok & b.ok])
    gok = gf[b.ok]
    _add(c["items"], gok, b.items[b.ok].astype(np.float64))
    _add(c["tokens"], gok, b.output_tokens[b.ok].astype(np.float64))
    _add(c["input_tokens"], gok, b.llm["input_tokens"][b.ok].astype(np.float64))
    _add(c["cached_tokens"], gok, b.llm["cached_tokens"][b.ok].astype(np.float64))
    _add(c["preemptions"], gf, b.llm["preemptions"].astype(np.float64))
    _add(c["kv_failures"], gf[(b.status == STATUSES.index("rejected")) & (b.llm["accel"] >= 0)])
    latency = (b.finish_ns - b.arrival_ns)[b.ok]
    _add(acc.latency_sum, gok, latency.astype(np.float64))
    np.maximum.at(acc.latency_max, gok, latency)
    if acc.judged and bounds is not None:
        gs = (ga * acc.regions + b.codes["region"]) * acc.services + b.codes["service"]
        _add(acc.verdict["n"], gs)
        over = b.cache.get("over")
        if over is None:
            over = b.cache["over"] = _over(b, bounds)
        for m, flag in over.items():
            _add(acc.verdict[m], gs[flag])
        np.maximum.at(acc.verdict["last"], gs, b.arrival_ns)
    for m in METRICS:
        mask, _, buckets = b.metric(m, llm)
        acc.hist[m].add(gf[mask] * N_BUCKETS + buckets)


def second_pass(
    accs: list[LevelAcc], stream: Callable[[], Iterator[Batch]], llm: np.ndarray
) -> None:
    """Exact quantiles of every level and metric (refine.py: one or two more passes)."""
    exact_quantiles(make_plans(accs, METRICS), stream, llm)


def llm_mask(services: Sequence[str], kinds: Mapping[str, str]) -> np.ndarray:
    """Per service code: True for LLM services (TTFT/TPOT are computed for them)."""
    return np.array([kinds.get(s) == "llm" for s in services] + [False], dtype=bool)
