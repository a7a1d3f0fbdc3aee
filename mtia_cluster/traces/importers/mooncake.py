"""Mooncake traces (kvcache-ai/Mooncake, e.g. mooncake_trace.jsonl).

JSON Lines, one request per line: `timestamp` (ms since the trace start), `input_length`,
`output_length`, `hash_ids` (ids of the prompt's 512-token blocks; equal ids across requests
mean a shared prefix). The block ids are kept in `prefix_blocks` for prefix-cache modelling.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson

from mtia_cluster.errors import UserError
from mtia_cluster.output import OutputKind, claim_output, staged
from mtia_cluster.traces.importers._common import (
    Progress,
    build_and_write,
    check_file,
    constant_service,
    counts,
    seconds_to_ns,
)

REQUIRED = ["timestamp", "input_length", "output_length"]


def import_mooncake(
    path: Path,
    output: Path,
    service: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> pa.Table:
    """Import a Mooncake JSONL trace, keeping hash_ids as prefix_blocks."""
    check_file(path)
    try:
        table = pajson.read_json(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(
            f"not valid JSON Lines: {str(exc).splitlines()[0][:300]}", file=path
        ) from None
    for name in REQUIRED:
        if name not in table.column_names:
            raise UserError(
                f"JSONL records do not match the mooncake format: missing key {name!r}",
                file=path,
                field="keys",
                value=table.column_names,
            )
    if table.num_rows == 0:
        raise UserError("no records", file=path)
    if progress is not None:
        progress(path.stat().st_size)
    t_ns = seconds_to_ns(table, "timestamp", path, scale=1e6, row_offset=1)
    extra: dict[str, object] = {
        "input_tokens": counts(table, "input_length", path, row_offset=1),
        "output_tokens": counts(table, "output_length", path, row_offset=1),
    }
    if "hash_ids" in table.column_names:
        col = table.column("hash_ids").combine_chunks()
        if not pa.types.is_list(col.type) or not (
            pa.types.is_integer(col.type.value_type) or pa.types.is_null(col.type.value_type)
        ):
            raise UserError(
                "hash_ids must be lists of integers",
                file=path,
                field="hash_ids",
                value=str(col.type),
            )
        extra["prefix_blocks"] = col.cast(pa.list_(pa.int64()))
    meta = {
        "source": f"Mooncake trace ({path.name}), github.com/kvcache-ai/Mooncake",
        "licence": "see the Mooncake repository (Apache-2.0 code licence; the trace "
        "files' own terms are not stated separately)",
        "generator": "mtia_cluster.traces.importers.mooncake",
        "parameters": {"format": "mooncake", "block_tokens": 512},
    }
    return build_and_write(
        path,
        output,
        t_ns,
        constant_service(service or "llm", len(t_ns)),
        extra,
        meta,
        overwrite=overwrite,
    )


MOONCAKE_JSONL = OutputKind("Mooncake JSONL file", False)  # never replaces an existing file


def write_mooncake(table: pa.Table, path: Path) -> Path:
    """Write an LLM trace table in the Mooncake JSONL format (the importer's inverse, for
    examples and tests): `timestamp` in whole ms (arrival floored), `input_length`,
    `output_length` and `hash_ids` (the `prefix_blocks` chains; empty when null). An
    existing file at `path` is refused (output.py's rules)."""
    arrival = table.column("arrival_ns").to_pylist()
    inputs = table.column("input_tokens").to_pylist()
    outputs = table.column("output_tokens").to_pylist()
    names = table.column_names
    chains = table.column("prefix_blocks").to_pylist() if "prefix_blocks" in names else None
    with staged(claim_output(path, MOONCAKE_JSONL)) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for i, t_ns in enumerate(arrival):
            record = {
                "timestamp": t_ns // 1_000_000,
                "input_length": inputs[i],
                "output_length": outputs[i],
                "hash_ids": (chains[i] or []) if chains is not None else [],
            }
            out.write(json.dumps(record) + "\n")
    return path
