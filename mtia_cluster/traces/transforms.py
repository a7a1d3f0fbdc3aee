"""Transforms on in-memory trace tables: scale the rate, slice a window, sample a fraction,
remap services, merge traces. Each returns a new valid table (arrivals non-decreasing,
request ids unique); write it with :func:`mtia_cluster.traces.io.write_trace`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.engine.rng import StreamKind, entity_rng
from mtia_cluster.errors import UserError


def scale_rate(table: pa.Table, factor: float) -> pa.Table:
    """Multiply the request rate by `factor` (arrival times divided by it)."""
    if not (factor > 0 and math.isfinite(factor)):
        raise UserError("rate scale factor must be > 0", field="factor", value=factor)
    t = table.column("arrival_ns").to_numpy()
    scaled = np.floor(t / factor).astype(np.int64)
    return table.set_column(
        table.schema.get_field_index("arrival_ns"),
        "arrival_ns",
        pa.array(np.maximum.accumulate(scaled) if len(scaled) else scaled),
    )


def time_slice(table: pa.Table, start_ns: int, end_ns: int, rebase: bool = True) -> pa.Table:
    """Rows with start_ns <= arrival_ns < end_ns; times rebased to start_ns by default."""
    if not 0 <= start_ns < end_ns:
        raise UserError(
            "time slice needs 0 <= start < end",
            field="start/end",
            value=(start_ns, end_ns),
            has_value=True,
        )
    t = table.column("arrival_ns")
    out = table.filter(pc.and_(pc.greater_equal(t, start_ns), pc.less(t, end_ns)))
    if rebase:
        idx = out.schema.get_field_index("arrival_ns")
        out = out.set_column(idx, "arrival_ns", pc.subtract(out.column("arrival_ns"), start_ns))
    return out


def sample_fraction(table: pa.Table, fraction: float, seed: int = 0) -> pa.Table:
    """Keep each request independently with probability `fraction` (seeded)."""
    if not 0 < fraction <= 1:
        raise UserError("sample fraction must be in (0, 1]", field="fraction", value=fraction)
    rng = entity_rng(seed, StreamKind.TRACE_SAMPLE)
    return table.filter(pa.array(rng.random(table.num_rows) < fraction))


def remap_services(table: pa.Table, mapping: Mapping[str, str]) -> pa.Table:
    """Rename services (old -> new; several old names may map to one new name)."""
    table = table.unify_dictionaries()
    col = table.column("service").combine_chunks()
    names = [mapping.get(s, s) for s in col.dictionary.to_pylist()]
    unique = list(dict.fromkeys(names))
    lookup = np.array([unique.index(n) for n in names], dtype=np.int32)
    indices = (
        lookup[col.indices.to_numpy(zero_copy_only=False)] if len(col) else np.zeros(0, np.int32)
    )
    new = pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(unique))
    return table.set_column(table.schema.get_field_index("service"), "service", new)


def merge(tables: Sequence[pa.Table]) -> pa.Table:
    """Interleave traces by arrival (stable: earlier tables first on ties), ids 0..n-1.

    Columns missing from some inputs become nulls; session ids are kept as they are.
    """
    if not tables:
        raise UserError("merge needs at least one trace", field="tables", value=0)
    names: list[str] = []
    for t in tables:
        names += [c for c in t.column_names if c not in names]
    parts = []
    for t in tables:
        t = t.unify_dictionaries() if t.num_rows else t
        cols = {}
        for n in names:
            if n in t.column_names:
                cols[n] = _plain(t.column(n))
            else:
                ref = next(x for x in tables if n in x.column_names).schema.field(n).type
                ref = ref.value_type if pa.types.is_dictionary(ref) else ref
                cols[n] = pa.nulls(t.num_rows, ref)
        parts.append(pa.table(cols))
    combined = pa.concat_tables(parts)
    order = np.argsort(combined.column("arrival_ns").to_numpy(), kind="stable")
    out = combined.take(pa.array(order))
    out = out.set_column(
        out.schema.get_field_index("request_id"),
        "request_id",
        pa.array(np.arange(out.num_rows, dtype=np.int64)),
    )
    for n in ("service", "region", "log_type"):
        if n in out.column_names:
            out = out.set_column(
                out.schema.get_field_index(n), n, pc.dictionary_encode(out.column(n))
            )
    return out


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary columns decoded to strings (so differing dictionaries concatenate)."""
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col
