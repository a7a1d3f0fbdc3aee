"""Request traces: the Parquet format, generators, importers and inspection.

The trace contract is DESIGN §4 (see :mod:`mtia_cluster.traces.schema`). Public API, what the
engine and the CLI use:

``read_trace_batches(path, *, regions=None, services=None, start_ns=None, end_ns=None,
columns=None, batch_rows=65536, validate=True) -> Iterator[pa.RecordBatch]``
    Stream a trace in file (arrival) order without loading it whole. Filters are pushed into
    pyarrow.dataset (row groups that cannot match are skipped); time range is
    ``start_ns <= arrival_ns < end_ns``. Every batch is validated (required columns, types,
    nulls, negative or decreasing arrivals, negative counts; duplicate ids at the latest when
    the stream ends) and a problem raises :class:`UserError` naming file, row, column, value.
``read_trace(path, **same) -> pa.Table``
    The same, collected into one table (small or filtered traces).
``read_trace_schema(path) -> pa.Schema`` (checked) and ``read_metadata(path) -> dict``
    source, licence, generator, parameters (decoded JSON) and rows.
``write_trace(table, path, metadata) -> Path`` and ``TraceWriter(path, metadata, columns)``
    Validate and write zstd Parquet (row groups of 262,144 rows) atomically.
``generate_table(spec, seed, file=None) -> (pa.Table, metadata)``
    A multi-service, multi-region mix (see :mod:`mtia_cluster.traces.generators.mix`).
``generate_demo_trace(path, seed=0)``
    The README sample (``traces/demo.parquet``).
``import_trace(fmt, source, output, service=None) -> pa.Table``
    Import azure-llm, burstgpt, mooncake or splitwise files (see ``docs/traces.md``).
``inspect_trace(path) -> dict``
    One streaming pass: rows, span_s, rate_per_s, rate_per_min, iat_cv, peak_to_mean,
    services, regions, size quantiles.
Transforms on in-memory tables live in :mod:`mtia_cluster.traces.transforms`;
:func:`mtia_cluster.traces.columns.to_numpy_columns` turns a batch into the engine's numpy
columns (service/region as indices into the config's names, nulls as 0, session -1).
"""

from mtia_cluster.traces.generators import generate_demo_trace, generate_table
from mtia_cluster.traces.inspect import inspect_trace
from mtia_cluster.traces.io import (
    TraceWriter,
    read_metadata,
    read_trace,
    read_trace_batches,
    read_trace_schema,
    write_trace,
)

__all__ = [
    "TraceWriter",
    "generate_demo_trace",
    "generate_table",
    "import_trace",
    "inspect_trace",
    "read_metadata",
    "read_trace",
    "read_trace_batches",
    "read_trace_schema",
    "write_trace",
]


def import_trace(fmt: str, source: object, output: object, service: str | None = None) -> object:
    """Import a public trace file; see :func:`mtia_cluster.traces.importers.import_trace`."""
    from mtia_cluster.traces.importers import import_trace as _import

    return _import(fmt, source, output, service=service)  # type: ignore[arg-type]
