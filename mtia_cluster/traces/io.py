"""Write and stream-read trace Parquet files, validating as they go.

Files are zstd-compressed Parquet with row groups of `ROW_GROUP_ROWS` rows, so a reader holds
one row group at a time, and the trace metadata (source, licence, generator, parameters as
JSON) in the Parquet key-value metadata (the format key also marks the file as the tool's, so
``--overwrite`` may replace it; mtia_cluster.output). Writes go to a locked temporary beside
the target, renamed when complete: a failed or interrupted write never leaves a file under the
target name, and a disk-full error removes the temporary (one line, exit 1).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mtia_cluster.errors import UserError
from mtia_cluster.output import TRACE_FILE, TRACE_METADATA_KEY, Staging, claim_output
from mtia_cluster.traces.limits import check_trace_limits, trace_span_ns
from mtia_cluster.traces.schema import (
    COLUMN_ORDER,
    METADATA_KEYS,
    StreamChecker,
    check_schema,
    conform_batch,
    trace_schema,
)

ROW_GROUP_ROWS = 262_144
DEFAULT_BATCH_ROWS = 65_536
# Decoded batches the scanner may read ahead: bounds a reader's memory whatever the file size
# (pyarrow's defaults held ~0.5 GB of a 30 M-row trace; these hold ~60 MB).
READAHEAD_BATCHES = 2
FORMAT_VERSION = "1"


def _encode_metadata(metadata: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Trace metadata as Parquet key-value pairs: strings as-is, parameters as JSON."""
    out = {TRACE_METADATA_KEY: FORMAT_VERSION.encode()}
    for key in METADATA_KEYS:
        value = metadata.get(key, {} if key == "parameters" else "unknown")
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        out[key.encode()] = text.encode()
    for key, value in metadata.items():
        if key not in METADATA_KEYS:
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            out[key.encode()] = text.encode()
    return out


class TraceWriter:
    """Streams validated record batches into one trace file, atomically.

    Use as a context manager; the file appears under `path` only when the block ends cleanly.
    An existing file at `path` is replaced only when it is a trace the tool wrote and
    `overwrite` is set (mtia_cluster.output decides, before anything is written).
    """

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, Any],
        columns: list[str],
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        unknown = [c for c in columns if c not in COLUMN_ORDER]
        if unknown:
            raise UserError("unknown trace column", file=path, field=unknown[0])
        for name in ("request_id", "arrival_ns", "service"):
            if name not in columns:
                raise UserError(
                    "missing required column",
                    file=path,
                    field=name,
                    value=list(columns),
                    has_value=True,
                )
        self.schema = trace_schema(columns).with_metadata(_encode_metadata(metadata))
        self.checker = StreamChecker(self.path)
        self._claim = claim_output(self.path, TRACE_FILE, overwrite=overwrite)
        self._stage: Staging | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def __enter__(self) -> TraceWriter:
        self._stage = Staging(self._claim)
        try:
            self._writer = pq.ParquetWriter(
                self._stage.path,
                self.schema,
                compression="zstd",
                compression_level=3,
                write_statistics=True,
            )
        except BaseException as exc:
            self._abandon(exc)
            raise
        return self

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Validate and append a batch (or table) whose columns match the writer's."""
        assert self._writer is not None, "use TraceWriter as a context manager"
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for batch in batches:
            check_schema(batch.schema, self.path)
            batch = conform_batch(
                batch.select(self.schema.names), self.path, self.checker.rows_seen
            )
            self.checker.check(batch)
            self._pending.append(batch.cast(self.schema.remove_metadata()))
            self._pending_rows += batch.num_rows
            if self._pending_rows >= ROW_GROUP_ROWS:
                self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write buffered rows as whole row groups (small writes never make small groups);
        the remainder waits for more rows unless this is the final flush."""
        if not self._pending or self._writer is None:
            return
        table = pa.Table.from_batches(self._pending)
        cut = table.num_rows if final else table.num_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
        self._writer.write_table(table.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
        rest = table.slice(cut)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stage is not None
        if exc is not None:
            self._abandon(exc)
            return
        try:
            if self._writer is not None:
                self._flush(final=True)
                self._writer.close()
            self.checker.finish()
            if self.checker.rows_seen == 0:
                raise UserError("refusing to write a trace with no requests", file=self.path)
        except BaseException as err:
            self._abandon(err)
            raise
        self._stage.publish()

    def _abandon(self, exc: BaseException) -> None:
        """Remove the temporary; an OS error (disk full...) is raised as one line."""
        assert self._stage is not None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        io = self._stage.fail(exc)
        self._stage.discard()
        if io is not None:
            raise io from None


def write_trace(
    table: pa.Table, path: str | Path, metadata: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Validate `table` and write it to `path` (zstd Parquet, atomic). Returns the path.
    `overwrite`: replace an earlier trace of the tool at `path` (nothing else is replaced)."""
    with TraceWriter(path, metadata, list(table.column_names), overwrite=overwrite) as w:
        for batch in table.to_batches(max_chunksize=ROW_GROUP_ROWS):
            w.write(batch)
    return Path(path)


def _open(path: str | Path) -> pq.ParquetFile:
    """Open a trace file, turning every way it can be unreadable into a UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", file=p)
    if p.is_dir():
        raise UserError("is a directory, expected a Parquet trace file", file=p)
    if p.stat().st_size == 0:
        raise UserError("empty file, expected a Parquet trace", file=p)
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"not a readable Parquet file ({_short(exc)})", file=p) from None
    check_schema(pf.schema_arrow, p)
    check_trace_limits(pf, p)  # span and per-request sizes, from the statistics
    return pf


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def read_trace_schema(path: str | Path) -> pa.Schema:
    """The trace's Arrow schema (checked: required columns present, known types valid)."""
    return _open(path).schema_arrow


def read_span_ns(path: str | Path) -> int:
    """Last minus first arrival of the (checked) trace, from its statistics."""
    return trace_span_ns(_open(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The trace's metadata: source, licence, generator, parameters (decoded JSON), rows."""
    pf = _open(path)
    raw = pf.schema_arrow.metadata or {}
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        k = key.decode()
        if k == "ARROW:schema":
            continue
        text = value.decode()
        if k == "parameters" or text[:1] in "{[":
            try:
                meta[k] = json.loads(text)
                continue
            except json.JSONDecodeError:
                pass
        meta[k] = text
    meta["rows"] = pf.metadata.num_rows
    return meta


def _filter(
    schema: pa.Schema,
    path: Path,
    regions: list[str] | None,
    services: list[str] | None,
    start_ns: int | None,
    end_ns: int | None,
) -> pc.Expression | None:
    parts: list[pc.Expression] = []
    if regions is not None:
        if "region" not in schema.names:
            raise UserError(
                "cannot filter by region: the trace has no region column",
                file=path,
                field="region",
                value=list(regions),
            )
        parts.append(pc.field("region").isin(list(regions)))
    if services is not None:
        parts.append(pc.field("service").isin(list(services)))
    if start_ns is not None:
        parts.append(pc.field("arrival_ns") >= start_ns)
    if end_ns is not None:
        parts.append(pc.field("arrival_ns") < end_ns)
    if not parts:
        return None
    expr = parts[0]
    for part in parts[1:]:
        expr = expr & part
    return expr


def read_trace_batches(
    path: str | Path,
    *,
    regions: list[str] | None = None,
    services: list[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    columns: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    validate: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Yield the trace as validated record batches, in file order, never the whole file.

    Filters (regions, services, [start_ns, end_ns)) are pushed into pyarrow.dataset so row
    groups that cannot match are skipped. `columns` restricts what is read; the required
    columns are always included. A bad file raises UserError at the first bad batch.
    """
    p = Path(path)
    pf = _open(p)
    if pf.metadata.num_rows == 0:
        raise UserError("trace has no requests", file=p, field="rows", value=0)
    wanted = None
    if columns is not None:
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise UserError("column not in trace", file=p, field=missing[0])
        wanted = [
            c
            for c in pf.schema_arrow.names
            if c in columns or c in ("request_id", "arrival_ns", "service")
        ]
    expr = _filter(pf.schema_arrow, p, regions, services, start_ns, end_ns)
    # pre_buffer off: otherwise whole column chunks of many row groups are buffered at once
    fmt = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False)
    )
    dataset = ds.dataset(p, format=fmt)
    checker = StreamChecker(p)
    try:
        scanner = ds.Scanner.from_dataset(
            dataset,
            columns=wanted,
            filter=expr,
            batch_size=batch_rows,
            batch_readahead=READAHEAD_BATCHES,
            fragment_readahead=1,
        )
        for batch in scanner.to_batches():
            if not batch.num_rows:
                continue
            batch = conform_batch(batch, p, checker.rows_seen)
            if validate:
                checker.check(batch)
            else:
                checker.rows_seen += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"corrupt or truncated Parquet data ({_short(exc)})", file=p) from None
    if validate:
        checker.finish()


def read_trace(path: str | Path, **kwargs: Any) -> pa.Table:
    """Read a whole (small or filtered) trace into one validated table."""
    batches = list(read_trace_batches(path, **kwargs))
    schema = batches[0].schema if batches else trace_schema(["request_id", "arrival_ns", "service"])
    table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
    return table.unify_dictionaries() if batches else table
