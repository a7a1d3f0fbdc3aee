"""Shared importer steps: open and check a CSV/JSONL file, check count columns, build and
write the trace (sorted by arrival, ids 0..n-1, rebased to the first arrival)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtia_cluster.errors import UserError
from mtia_cluster.traces.io import write_trace
from mtia_cluster.units import NS_PER_S

Progress = Callable[[int], None]  # called with the number of input bytes just consumed


def check_file(path: Path) -> None:
    """The input exists, is a file and is not empty."""
    if not path.exists():
        raise UserError("file not found", file=path)
    if path.is_dir():
        raise UserError("is a directory, expected a file", file=path)
    if path.stat().st_size == 0:
        raise UserError("empty file", file=path)


def csv_header(path: Path) -> list[str]:
    """The column names on the first line of a CSV."""
    with path.open("rb") as fh:
        line = fh.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    return [c.strip().strip('"') for c in line.split(",")]


def require_header(path: Path, header: list[str], required: list[str], fmt: str) -> None:
    """Every required column is in the header, else a UserError naming the first missing."""
    for name in required:
        if name not in header:
            raise UserError(
                f"CSV header does not match the {fmt} format: missing column {name!r}",
                file=path,
                field="header",
                value=header,
            )


def read_csv(
    path: Path,
    columns: list[str],
    types: dict[str, pa.DataType],
    progress: Progress | None = None,
) -> pa.Table:
    """Read the given columns with pyarrow.csv; conversion errors become UserErrors.

    With `progress`, the file is streamed block by block and progress(bytes) is called after
    each block (for the CLI's progress bar); otherwise pyarrow reads it in one call.
    """
    convert = pacsv.ConvertOptions(
        include_columns=columns, column_types=types, strings_can_be_null=True
    )
    try:
        if progress is None:
            table = pacsv.read_csv(path, convert_options=convert)
        else:
            table = _streamed(path, convert, progress)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot parse CSV: {str(exc).splitlines()[0][:300]}", file=path) from None
    if table.num_rows == 0:
        raise UserError("no data rows after the header", file=path)
    return table


def _streamed(path: Path, convert: pacsv.ConvertOptions, progress: Progress) -> pa.Table:
    with path.open("rb") as fh:
        reader = pacsv.open_csv(fh, convert_options=convert)
        batches, done = [], 0
        for batch in reader:
            batches.append(batch)
            position = fh.tell()
            progress(position - done)
            done = position
        return pa.Table.from_batches(batches, schema=reader.schema)


def counts(table: pa.Table, column: str, path: Path, row_offset: int = 2) -> np.ndarray:
    """A token/size column as int32, rejecting nulls, NaN, negatives and fractions.

    Rows in messages are 1-based file lines (header = line 1) for CSV (`row_offset` 2).
    """
    col = table.column(column)
    values = (
        col.to_numpy().astype(np.float64)
        if col.null_count == 0
        else pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()
    )
    bad_null = (
        np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
        if col.null_count
        else np.zeros(0, dtype=np.int64)
    )
    if len(bad_null):
        raise UserError(
            "missing value",
            file=path,
            field=f"line {int(bad_null[0]) + row_offset}, column {column}",
        )
    finite = np.isfinite(values)
    bad = np.flatnonzero(
        ~finite
        | (np.where(finite, values, 0) < 0)
        | (np.where(finite, values, 0) % 1 != 0)
        | (np.where(finite, values, 0) > 2**31 - 1)
    )
    if len(bad):
        i = int(bad[0])
        raise UserError(
            "token count must be a finite non-negative integer",
            file=path,
            field=f"line {i + row_offset}, column {column}",
            value=float(values[i]),
        )
    return values.astype(np.int32)


def seconds_to_ns(
    table: pa.Table, column: str, path: Path, scale: float = NS_PER_S, row_offset: int = 2
) -> np.ndarray:
    """A numeric time column (s or ms) as int64 ns, rejecting nulls/NaN/negatives."""
    col = table.column(column)
    values = pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy()
    bad = np.flatnonzero(~np.isfinite(values) | (np.nan_to_num(values) < 0))
    if len(bad):
        i = int(bad[0])
        raise UserError(
            "timestamp must be a finite non-negative number",
            file=path,
            field=f"line {i + row_offset}, column {column}",
            value=float(values[i]),
        )
    return np.rint(values * scale).astype(np.int64)


def build_and_write(
    path: Path,
    output: Path,
    arrival: np.ndarray,
    service: pa.Array,
    extra: dict[str, Any],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> pa.Table:
    """Sort rows by arrival (stable), number them, write the trace atomically (`overwrite`:
    replace an earlier trace of the tool at `output`)."""
    order = np.argsort(arrival, kind="stable")
    out_of_order = int(np.count_nonzero(np.diff(arrival) < 0))
    arrival = arrival[order] - arrival[order][0]
    cols: dict[str, Any] = {
        "request_id": pa.array(np.arange(len(arrival), dtype=np.int64)),
        "arrival_ns": pa.array(arrival),
        "service": service.take(pa.array(order)),
    }
    for name, values in extra.items():
        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        cols[name] = arr.take(pa.array(order))
    table = pa.table(cols)
    params = dict(metadata.get("parameters", {}))
    params.update(source_file=str(path), rows=len(arrival), rows_out_of_order=out_of_order)
    write_trace(table, output, {**metadata, "parameters": params}, overwrite=overwrite)
    return table


def constant_service(name: str, n: int) -> pa.Array:
    """A dictionary column holding one service name n times."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([name]))
