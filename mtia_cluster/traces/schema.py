"""The trace table contract (DESIGN §4) and its validation.

One row per request. Required columns: ``request_id`` (int64, unique), ``arrival_ns`` (int64,
nanoseconds since trace start, non-negative, non-decreasing), ``service`` (dictionary<string>).
Optional: ``region`` (dictionary<string>), ``items`` (int32, R&R query size, null for LLM),
``input_tokens``/``output_tokens`` (int32, null for R&R), ``session_id`` (int64) and importer
extras (``failed`` bool, ``prefix_blocks`` list<int64>, ``num_images`` int32, ``log_type``).

Validation works batch by batch (so a trace larger than memory is checked as it streams) and
raises a :class:`UserError` naming the file, the row and the column, and the bad value.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.errors import UserError

DICT_STRING = pa.dictionary(pa.int32(), pa.string())

REQUIRED: dict[str, pa.DataType] = {
    "request_id": pa.int64(),
    "arrival_ns": pa.int64(),
    "service": DICT_STRING,
}
OPTIONAL: dict[str, pa.DataType] = {
    "region": DICT_STRING,
    "items": pa.int32(),
    "input_tokens": pa.int32(),
    "output_tokens": pa.int32(),
    "session_id": pa.int64(),
    "failed": pa.bool_(),
    "prefix_blocks": pa.list_(pa.int64()),
    "num_images": pa.int32(),
    "log_type": DICT_STRING,
}
COLUMN_ORDER = list(REQUIRED) + list(OPTIONAL)
# Count columns: nulls allowed (items is null for LLM rows), negatives and NaN are not.
COUNT_COLUMNS = ("items", "input_tokens", "output_tokens", "num_images")
INT32_MAX = 2**31 - 1
METADATA_KEYS = ("source", "licence", "generator", "parameters")


def trace_schema(columns: list[str]) -> pa.Schema:
    """The canonical Arrow schema for a trace holding `columns` (in canonical order)."""
    known = {**REQUIRED, **OPTIONAL}
    return pa.schema(
        [pa.field(c, known[c], nullable=c not in REQUIRED) for c in COLUMN_ORDER if c in columns]
    )


def _kind_ok(name: str, actual: pa.DataType) -> bool:
    """Whether `actual` can be losslessly treated as the canonical type of column `name`."""
    want = {**REQUIRED, **OPTIONAL}[name]
    if pa.types.is_dictionary(want):
        return (
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or (
                pa.types.is_dictionary(actual)
                and (
                    pa.types.is_string(actual.value_type)
                    or pa.types.is_large_string(actual.value_type)
                )
            )
        )
    if pa.types.is_integer(want) and name in COUNT_COLUMNS:
        return pa.types.is_integer(actual) or pa.types.is_floating(actual)
    if pa.types.is_integer(want):
        return pa.types.is_integer(actual)
    if pa.types.is_list(want):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and pa.types.is_integer(
            actual.value_type
        )
    return bool(actual.equals(want))


def check_schema(schema: pa.Schema, file: str | Path | None) -> None:
    """Required columns present; no unknown column; every column of a compatible type."""
    names = set(schema.names)
    for name in REQUIRED:
        if name not in names:
            raise UserError(
                "missing required column",
                file=file,
                field=name,
                value=sorted(names),
                has_value=True,
            )
    known = {**REQUIRED, **OPTIONAL}
    for f in schema:
        if f.name not in known:  # a misspelled optional column would be ignored silently
            close = difflib.get_close_matches(f.name, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise UserError(f"unknown column ({hint})", file=file, field=f.name)
        if not _kind_ok(f.name, f.type):
            raise UserError(
                f"wrong type for column, expected {known[f.name]}",
                file=file,
                field=f.name,
                value=str(f.type),
            )


def _float_counts(col: pa.Array, name: str, file: str | Path | None, row0: int) -> pa.Array:
    """A float count column: reject NaN, infinities, negatives and fractions, then cast."""
    values = col.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values) & ~col.is_null().to_numpy(zero_copy_only=False)
    bad |= np.nan_to_num(values, nan=0.0) != np.floor(np.nan_to_num(values, nan=0.0))
    bad |= np.nan_to_num(values, nan=0.0) < 0
    bad |= np.nan_to_num(values, nan=0.0) > INT32_MAX
    idx = np.flatnonzero(bad)
    if len(idx):
        i = int(idx[0])
        raise UserError(
            "count must be a finite non-negative integer below 2**31",
            file=file,
            field=f"row {row0 + i}, column {name}",
            value=float(values[i]),
        )
    return pc.cast(col, pa.int32(), safe=False)


def conform_batch(
    batch: pa.RecordBatch, file: str | Path | None = None, row0: int = 0
) -> pa.RecordBatch:
    """Cast known columns to their canonical types (checked first by `check_schema`)."""
    known = {**REQUIRED, **OPTIONAL}
    arrays, fields = [], []
    for f, col in zip(batch.schema, batch.columns, strict=True):
        want = known.get(f.name)
        if want is not None and pa.types.is_floating(col.type):
            col = _float_counts(col, f.name, file, row0)
        elif want is not None and not col.type.equals(want):
            if pa.types.is_dictionary(want) and pa.types.is_dictionary(col.type):
                col = pc.cast(col, pa.dictionary(pa.int32(), pa.string()))
            elif pa.types.is_dictionary(want):
                col = pc.dictionary_encode(col.cast(pa.string()))
            else:
                try:
                    col = pc.cast(col, want)  # safe cast: overflow raises ArrowInvalid
                except pa.ArrowInvalid as exc:
                    raise UserError(
                        f"value out of range for {want}: {exc}", file=file, field=f.name
                    ) from None
        arrays.append(col)
        fields.append(pa.field(f.name, col.type, nullable=f.name not in REQUIRED))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


@dataclass
class StreamChecker:
    """Checks batches of one trace in order: carries the last arrival and seen request ids.

    Request ids are checked for uniqueness for free while they are consecutive (what every
    generator and importer writes: 0, 1, 2, ...); after the first gap the remaining ids are
    remembered (8 bytes per row) and checked when the stream ends (`finish`).
    """

    file: str | Path | None
    check_order: bool = True
    rows_seen: int = 0
    last_arrival_ns: int = -1
    first_id: int | None = None
    last_id: int | None = None
    ids_increasing: bool = True
    _ids: list[np.ndarray] = field(default_factory=list)

    def check(self, batch: pa.RecordBatch) -> None:
        """Validate one batch (already conformed); raise a UserError on the first problem."""
        self._check_nulls(batch)
        self._check_arrivals(batch)
        self._check_ids(batch)
        self._check_counts(batch)
        self.rows_seen += batch.num_rows

    def _err(self, message: str, row: int, column: str, value: object) -> UserError:
        return UserError(
            message,
            file=self.file,
            field=f"row {row}, column {column}",
            value=value,
            has_value=True,
        )

    def _check_nulls(self, batch: pa.RecordBatch) -> None:
        for name in REQUIRED:
            col = batch.column(name)
            if col.null_count:
                row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise self._err("null in required column", self.rows_seen + row, name, None)

    def _check_arrivals(self, batch: pa.RecordBatch) -> None:
        t = batch.column("arrival_ns").to_numpy()
        if not len(t):
            return
        neg = np.flatnonzero(t < 0)
        if len(neg):
            i = int(neg[0])
            raise self._err("negative arrival", self.rows_seen + i, "arrival_ns", int(t[i]))
        if not self.check_order:
            return
        prev = np.concatenate(([self.last_arrival_ns], t[:-1]))
        back = np.flatnonzero(t < prev)
        if len(back):
            i = int(back[0])
            raise self._err(
                f"arrivals must be non-decreasing (previous {int(prev[i])})",
                self.rows_seen + i,
                "arrival_ns",
                int(t[i]),
            )
        self.last_arrival_ns = int(t[-1])

    def _check_ids(self, batch: pa.RecordBatch) -> None:
        ids = batch.column("request_id").to_numpy()
        if not len(ids):
            return
        if self.ids_increasing:
            first = ids[0] if self.last_id is None else self.last_id + 1
            expected = np.arange(first, first + len(ids), dtype=np.int64)
            if np.array_equal(ids, expected):
                if self.first_id is None:
                    self.first_id = int(ids[0])
                self.last_id = int(ids[-1])
                return
            self.ids_increasing = False
        self._ids.append(ids.copy())

    def _check_counts(self, batch: pa.RecordBatch) -> None:
        """Count columns (int32 after conform) must not be negative; nulls are allowed."""
        for name in COUNT_COLUMNS:
            if name not in batch.schema.names:
                continue
            col = batch.column(name)
            low = pc.min(col).as_py()  # C++ pass, nulls skipped
            if low is None or low >= 0:
                continue
            values = col.to_numpy(zero_copy_only=False)
            i = int(np.flatnonzero(np.nan_to_num(values.astype(np.float64), nan=0.0) < 0)[0])
            raise self._err("negative count", self.rows_seen + i, name, int(values[i]))

    def finish(self) -> None:
        """End-of-stream check for duplicate ids once they stopped being consecutive."""
        if self.ids_increasing or not self._ids:
            return
        ids = np.concatenate(self._ids)
        row0 = self.rows_seen - len(ids)
        if self.first_id is not None and self.last_id is not None:
            inside = np.flatnonzero((ids >= self.first_id) & (ids <= self.last_id))
            if len(inside):
                i = int(inside[0])
                raise self._err("duplicate request id", row0 + i, "request_id", int(ids[i]))
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if len(dup):
            row = row0 + int(order[dup[0] + 1])
            raise self._err("duplicate request id", row, "request_id", int(sorted_ids[dup[0]]))
