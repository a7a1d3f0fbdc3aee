"""Trace batches as plain numpy columns, in the engine's conventions (engine/cell.py
RequestBatch): service and region as int32 indices into the simulation's name lists, nulls as
0 (items for LLM rows, tokens for R&R rows), session_id −1 when absent, region −1 when the
trace has no region column or the row's region is null (the config's weights then spread
those requests, docs/traces.md). ``prefix_blocks`` (the prompt's hash chain, e.g. Mooncake's
``hash_ids``) becomes an object column of :class:`PrefixChain` (None where a row has none);
the chain's block size, in tokens, is the trace metadata's ``parameters.block_tokens``
(:func:`prefix_block_tokens`).

Dictionaries may differ from batch to batch (each Parquet row group has its own), so names are
mapped through each batch's dictionary, never by raw index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from mtia_cluster.errors import UserError
from mtia_cluster.traces.io import read_metadata, read_trace_schema


class PrefixChain(NamedTuple):
    """A prompt's hash chain: ``hashes[m]`` identifies its tokens
    ``[0, (m + 1) * block_tokens)`` (the last block may be partial)."""

    block_tokens: int
    hashes: np.ndarray  # int64


def prefix_block_tokens(metadata: dict[str, Any], file: object = None) -> int:
    """The hash-chain block size of a trace with ``prefix_blocks`` (its metadata's
    ``parameters.block_tokens``, a positive integer)."""
    params = metadata.get("parameters")
    value = params.get("block_tokens") if isinstance(params, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(
            "a trace with prefix_blocks needs its hash block size in tokens (a positive "
            "integer) in its metadata",
            file=str(file) if file else None,
            field="parameters.block_tokens",
            value=value,
        )
    return value


def trace_prefix_tokens(path: str | Path) -> int | None:
    """:func:`prefix_block_tokens` of the trace at `path`, None when it has no chains."""
    if "prefix_blocks" not in read_trace_schema(path).names:
        return None
    return prefix_block_tokens(read_metadata(path), path)


def _chains(batch: pa.RecordBatch, block_tokens: int | None, file: object) -> np.ndarray:
    """The prefix_blocks column as PrefixChain objects (None for null or empty lists)."""
    out = np.full(batch.num_rows, None, dtype=object)
    if "prefix_blocks" not in batch.schema.names:
        return out
    if block_tokens is None:
        block_tokens = prefix_block_tokens({}, file)
    col = batch.column("prefix_blocks")
    if col.values.null_count:  # a missing id inside a chain: no prefix it could name
        raise UserError(
            "prefix_blocks lists must not hold nulls",
            file=str(file) if file else None,
            field="prefix_blocks",
            value=None,
        )
    lists = col.to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(col.value_lengths().fill_null(0).to_numpy() > 0).tolist():
        out[i] = PrefixChain(block_tokens, lists[i].astype(np.int64, copy=False))
    return out


def _indices(col: pa.Array, names: Sequence[str], column: str, file: object) -> np.ndarray:
    """Map a dictionary<string> column onto positions in `names` (unknown name: UserError);
    a null maps to −1, like a missing column (required columns never hold nulls)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    lookup = {n: i for i, n in enumerate(names)}
    dictionary = col.dictionary.to_pylist()
    # one slot past the dictionary stands for null
    codes = col.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
    table = np.full(len(dictionary) + 1, -1, dtype=np.int32)
    for j, name in enumerate(dictionary):
        if name is None:  # a null stored in the dictionary itself
            continue
        if name not in lookup:
            used = np.any(codes == j)
            if used:
                raise UserError(
                    f"{column} not in the configuration ({', '.join(names)})",
                    file=str(file) if file else None,
                    field=column,
                    value=name,
                )
            continue
        table[j] = lookup[name]
    return table[codes]


def _filled(batch: pa.RecordBatch, name: str, dtype: type, fill: int) -> np.ndarray:
    if name not in batch.schema.names:
        return np.full(batch.num_rows, fill, dtype=dtype)
    col = batch.column(name)
    if col.null_count:
        col = col.fill_null(fill)
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def to_numpy_columns(
    batch: pa.RecordBatch,
    services: Sequence[str],
    regions: Sequence[str] | None = None,
    file: object = None,
    prefix_tokens: int | None = None,
) -> dict[str, np.ndarray]:
    """request_id, arrival_ns, service, region, items, input_tokens, output_tokens, session_id,
    prefix_blocks (`prefix_tokens`: the chains' block size, needed when the batch has them)."""
    if "region" in batch.schema.names and regions is not None:
        region = _indices(batch.column("region"), regions, "region", file)
    else:
        region = np.full(batch.num_rows, -1, dtype=np.int32)
    return {
        "request_id": batch.column("request_id").to_numpy().astype(np.int64, copy=False),
        "arrival_ns": batch.column("arrival_ns").to_numpy().astype(np.int64, copy=False),
        "service": _indices(batch.column("service"), services, "service", file),
        "region": region,
        "items": _filled(batch, "items", np.int32, 0),
        "input_tokens": _filled(batch, "input_tokens", np.int32, 0),
        "output_tokens": _filled(batch, "output_tokens", np.int32, 0),
        "session_id": _filled(batch, "session_id", np.int64, -1),
        "prefix_blocks": _chains(batch, prefix_tokens, file),
    }
