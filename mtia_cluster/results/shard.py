"""One shard's Parquet parts, streamed into a run's temporary directory.

Each shard (a Ray actor, possibly on another node sharing the run's filesystem) writes its
own files, so writers never coordinate: ``requests/region=<r>/part-<shard>-<seq>.parquet`` and
``devices/part-<shard>-<seq>.parquet``. Rows are buffered up to `row_group_rows` and written
as one row group; a file is written under a hidden in-progress name (``.part-...``, ignored
by pyarrow, DuckDB and Polars globs) and renamed when closed.

:meth:`ShardWriter.checkpoint` closes the current files and returns the next sequence number:
the distributed runner checkpoints the writer together with the shard's state. A shard that
is restarted opens a new ShardWriter with the same name: it deletes that shard's
in-progress files (rows after the last checkpoint, which the restarted shard writes again)
and continues numbering after the last committed part, so no row is lost or duplicated.

Each writer also accumulates the summary statistics of the rows it writes
(`results/partials.py`); a restarted writer re-reads only its own committed parts to
rebuild them, so they always match the rows its parts hold.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from mtia_cluster.engine.cell import Completed
from mtia_cluster.errors import UserError
from mtia_cluster.results.convert import (
    completed_by_region,
    completed_to_table,
    request_file_table,
    rows_by_region,
)
from mtia_cluster.results.devstats import DeviceStatsBuilder, device_intervals
from mtia_cluster.results.partials import ShardStats, StatsBuilder
from mtia_cluster.results.schema import DEVICE_SCHEMA, REQUEST_FILE_SCHEMA, SHARDS_DIR, check_name
from mtia_cluster.slo import ServiceSLO

ROW_GROUP_ROWS = 131_072
INPROGRESS = ".inprogress"


@dataclass(frozen=True)
class RunTarget:
    """Everything a shard needs to write into a run (small and picklable for Ray)."""

    tmp_dir: str
    services: tuple[str, ...]
    regions: tuple[str, ...]
    slos: Mapping[str, ServiceSLO] = field(default_factory=dict)
    row_group_rows: int = ROW_GROUP_ROWS
    interval_ns: int = 1_000_000_000  # the `regions/` interval (the shard's statistics)

    def open_shard(self, shard: str | int) -> ShardWriter:
        """A writer for shard `shard` (cleans up that shard's uncommitted parts)."""
        return ShardWriter(self, str(shard))


class _Part:
    """One Parquet file being written: buffered batches, flushed as row groups."""

    def __init__(self, final: Path, schema: pa.Schema, row_group_rows: int) -> None:
        self.final = final
        self.tmp = final.with_name("." + final.name + INPROGRESS)
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        """Buffer rows; write a row group once enough are pending."""
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        """Write pending rows as one row group."""
        if not self.pending_rows:
            return
        if self.writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.tmp,
                self.schema,
                compression="zstd",
                use_dictionary=_dictionary_columns(self.schema),
            )
        self.writer.write_table(pa.concat_tables(self.pending), row_group_size=self.pending_rows)
        self.pending, self.pending_rows = [], 0

    def commit(self) -> None:
        """Flush, close and rename to the final name (nothing if no rows were written)."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
            os.replace(self.tmp, self.final)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary-encode only the name columns: on unique int64 timestamps and ids it costs
    half the write time and makes files larger."""
    return [f.name for f in schema if pa.types.is_dictionary(f.type)]


_PART = re.compile(r"^part-(?P<shard>.+)-(?P<seq>\d{6})\.parquet$")


class ShardWriter:
    """Streams one shard's requests and device intervals into the run directory."""

    def __init__(self, target: RunTarget, shard: str) -> None:
        self.target = target
        self.shard = check_name("shard", shard)
        self.root = Path(target.tmp_dir)
        if not (self.root / "requests").is_dir():
            raise UserError("not an open results run directory", file=self.root)
        self.builder = StatsBuilder(target.services, target.slos, target.interval_ns, bounded=True)
        self.device_builder = DeviceStatsBuilder(target.interval_ns)
        self.stats: ShardStats | None = None  # set by close()
        self.seq = self._recover()
        self._requests: dict[str, _Part] = {}
        self._devices: _Part | None = None
        self.rows_written = 0

    def _recover(self) -> int:
        """Delete this shard's uncommitted parts; return the next sequence number. The
        statistics of its committed parts are rebuilt from them (devices in order)."""
        last = -1
        devices: list[tuple[int, Path]] = []
        for path in self.root.rglob("*part-*"):
            name = path.name
            if name.startswith(".") and name.endswith(INPROGRESS):
                name = name[1 : -len(INPROGRESS)]
                match = _PART.match(name)
                if match and match["shard"] == self.shard:
                    path.unlink()
                continue
            match = _PART.match(name)
            if match and match["shard"] == self.shard:
                last = max(last, int(match["seq"]))
                if path.parent.name.startswith("region="):  # committed before a restart
                    self.builder.add(path.parent.name[len("region=") :], pq.read_table(path))
                elif path.parent.name == "devices":
                    devices.append((int(match["seq"]), path))
        for _, path in sorted(devices):
            for table in device_intervals(str(path)):
                self.device_builder.add(table)
        return last + 1

    def _file(self, directory: Path) -> Path:
        return directory / f"part-{self.shard}-{self.seq:06d}.parquet"

    def write_completed(self, completed: Completed) -> None:
        """Convert engine rows (names, latency_ns, slo_ok) and append them: split by region
        on the int codes first, so each region's rows are converted once, with no filter
        pass over the Arrow table."""
        t = self.target
        for _, rows in completed_by_region(completed):
            table = completed_to_table(rows, services=t.services, regions=t.regions, slos=t.slos)
            self._append(t.regions[int(rows.region[0])], request_file_table(table))

    def write_requests(self, table: pa.Table) -> None:
        """Append `requests` rows (with a `region` column), split by region partition."""
        for name, rows in rows_by_region(table):
            self._append(name, request_file_table(rows))

    def _append(self, region: str, file_rows: pa.Table) -> None:
        """Append one region's rows (request file columns) to its part."""
        part = self._requests.get(region)
        if part is None:
            directory = self.root / "requests" / f"region={check_name('region', region)}"
            part = _Part(self._file(directory), REQUEST_FILE_SCHEMA, self.target.row_group_rows)
            self._requests[region] = part
        part.add(file_rows)
        self.builder.add(region, file_rows)
        self.rows_written += file_rows.num_rows

    def write_devices(self, table: pa.Table) -> None:
        """Append `devices` rows (from :class:`DeviceTracker.interval`)."""
        if self._devices is None:
            self._devices = _Part(
                self._file(self.root / "devices"), DEVICE_SCHEMA, self.target.row_group_rows
            )
        table = table.cast(DEVICE_SCHEMA)
        self._devices.add(table)
        self.device_builder.add(table)

    def checkpoint(self) -> int:
        """Commit every open part; later rows go to new parts. Returns the next sequence."""
        for part in [*self._requests.values(), *filter(None, [self._devices])]:
            part.commit()
        self._requests, self._devices = {}, None
        self.seq += 1
        return self.seq

    def close(self) -> ShardStats:
        """Commit and record that this shard finished (``_shards/<shard>.json``); returns the
        summary statistics of every row it wrote (raises if it wrote a request_id twice)."""
        self.checkpoint()
        self.stats = self.builder.result()
        self.stats.devices = self.device_builder.stats
        marker = self.root / SHARDS_DIR / f"{self.shard}.json"
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(json.dumps({"shard": self.shard, "next_seq": self.seq}))
        return self.stats

    def abort(self) -> None:
        """Drop uncommitted rows (the shard failed); committed parts stay."""
        for part in [*self._requests.values(), *filter(None, [self._devices])]:
            if part.writer is not None:
                part.writer.close()
            part.tmp.unlink(missing_ok=True)
        self._requests, self._devices = {}, None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
