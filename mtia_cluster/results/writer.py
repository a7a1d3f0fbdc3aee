"""The run directory of DESIGN §4, written atomically.

Lifecycle::

    with ResultsWriter(out, manifest={...}, services=[...], regions=[...], slos={...},
                       interval_ns=...) as run:
        shard = run.shard("0")            # or run.target.open_shard("0") in a Ray actor
        shard.write_completed(completed)  # per window
        shard.write_devices(tracker.interval(counters, start_ns=..., end_ns=...))
        shard.close()
        run.finalize(wall_time_s=..., simulated_span_ns=...)

Everything is written into ``.<out>.tmp-<run_id>/`` beside ``<out>`` (mtia_cluster.output
owns the target: what may be replaced, the lock, the rename) holding a ``_INCOMPLETE`` marker
and a manifest with status "incomplete". `finalize()` derives `regions/` and `summary.json`,
writes the final manifest (with the list of every file it wrote), removes the marker and
renames the directory to ``<out>``. An exception inside the ``with`` block (or a killed
process) leaves only the temporary directory, marked incomplete, which the next run into
``<out>`` removes; an OS error (disk full...) removes it at once. Nothing under ``<out>``
ever looks complete before it is.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import mtia_cluster
from mtia_cluster.errors import OutputIOError, UserError
from mtia_cluster.output import (
    RESULTS_DIR,
    Staging,
    claim_output,
    contents_of,
    is_interrupt,
    os_error_of,
)
from mtia_cluster.results.autoscale import with_autoscale
from mtia_cluster.results.derive import Derived, derive, derive_from_stats
from mtia_cluster.results.partials import ShardStats, merge_stats
from mtia_cluster.results.schema import (
    FORMAT_VERSION,
    MANIFEST,
    SHARDS_DIR,
    SUMMARY,
    check_name,
)
from mtia_cluster.results.shard import INPROGRESS, ROW_GROUP_ROWS, RunTarget, ShardWriter
from mtia_cluster.results.verdict import VerdictRules
from mtia_cluster.results.writer_io import (
    dataset_or_none,
    request_dataset,
    write_json,
)
from mtia_cluster.slo import ServiceSLO

DEFAULT_INTERVAL_NS = 1_000_000_000


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of every file under a directory in sorted path order."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def trace_start(path: Path) -> dict[str, str]:
    """``{"start_utc": ...}`` when the trace records the wall-clock time of its t = 0 (the
    importers of timestamped public traces do, in their parameters), else ``{}``: times in
    the results are nanoseconds since that instant."""
    if not path.is_file():
        return {}
    from mtia_cluster.traces.io import read_metadata

    try:
        start = (read_metadata(path).get("parameters") or {}).get("start_utc")
    except (OSError, UserError, ValueError):
        return {}
    return {"start_utc": str(start)} if start else {}


def run_extra(fleet_events: Sequence[Any], autoscale: Any) -> dict[str, Any]:
    """The run's optional entries of summary.json for `finalize(extra=...)`: the fleet
    events it applied and its autoscaling record, each only when there is one (every
    writer of a run, in process or distributed, passes them the same way)."""
    extra: dict[str, Any] = {"fleet_events": fleet_events} if fleet_events else {}
    if autoscale:
        extra["autoscale"] = autoscale
    return extra


class ResultsWriter:
    """A run directory being written by any number of shard writers (see module doc)."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        manifest: Mapping[str, Any],
        services: Sequence[str],
        regions: Sequence[str],
        slos: Mapping[str, ServiceSLO] | None = None,
        interval_ns: int = DEFAULT_INTERVAL_NS,
        rules: VerdictRules | None = None,
        trace_path: str | Path | None = None,
        run_id: str | None = None,
        row_group_rows: int = ROW_GROUP_ROWS,
        overwrite: bool = False,
        discard_if_interrupted: bool = False,
    ) -> None:
        # absolute: shard writers in other processes (Ray actors) may run in another cwd
        self.out = Path(out_dir).absolute()
        # who may write there is decided by mtia_cluster.output (refuses before any work)
        self.claim = claim_output(Path(out_dir), RESULTS_DIR, overwrite=overwrite)
        for r in regions:
            check_name("region", r)
        if interval_ns <= 0:
            raise UserError("interval must be positive", field="interval_ns", value=interval_ns)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        # Ctrl-C removes the temporary instead of keeping it marked incomplete: only for a
        # run whose every shard writes in this process (`simulate -o`); a replay's shard
        # actors may still be writing into it when the coordinator is interrupted
        self.discard_if_interrupted = discard_if_interrupted
        self.stage: Staging | None = None
        self.tmp = self.claim.target.with_name(f".{self.claim.target.name}.tmp-{self.run_id}")
        self.slos = dict(slos or {})
        self.rules = rules or VerdictRules()
        self.interval_ns = int(interval_ns)
        self.trace_path = Path(trace_path).absolute() if trace_path is not None else None
        self.target = RunTarget(
            str(self.tmp), tuple(services), tuple(regions), self.slos, row_group_rows, interval_ns
        )
        self._local: list[ShardWriter] = []  # writers opened in this process by shard()
        self.manifest = self._initial_manifest(manifest)
        self._started = time.monotonic()
        self.finalized: Path | None = None
        self.derived_from = ""  # how finalize() computed summary.json (tests, benchmarks)
        self._create()

    def _initial_manifest(self, user: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest fields known at the start (status incomplete)."""
        return {
            **dict(user),
            "format": RESULTS_DIR.format,
            "format_version": FORMAT_VERSION,
            "status": "incomplete",
            "run_id": self.run_id,
            "package_version": mtia_cluster.__version__,
            "services": list(self.target.services),
            "regions": list(self.target.regions),
            "slos": {k: v.to_dict() for k, v in self.slos.items()},
            "interval_ns": self.interval_ns,
            "verdict_rules": self.rules.to_dict(),
            "trace": {"path": str(self.trace_path)} if self.trace_path else None,
        }

    def _create(self) -> None:
        """Make the temporary directory (locked, with its marker) and incomplete manifest."""
        self.stage = Staging(self.claim, token=self.run_id)
        assert self.stage.path == self.tmp
        try:
            for sub in ("requests", "devices", "regions"):
                (self.tmp / sub).mkdir()
            write_json(self.tmp / MANIFEST, self.manifest)
        except OSError as exc:
            raise self._io_failure(exc) from None

    def _io_failure(self, exc: BaseException) -> OutputIOError | BaseException:
        """An OS error: remove the temporary (frees the space), return the one-line error."""
        assert self.stage is not None
        return self.stage.fail(exc) or exc

    def shard(self, shard: str | int) -> ShardWriter:
        """A writer for one shard in this process (elsewhere: ``self.target.open_shard``)."""
        writer = self.target.open_shard(shard)
        self._local.append(writer)
        return writer

    def write_links(self, table: pa.Table) -> None:
        """Write the run's ``links/`` rows (results/links.py) as one part."""
        try:
            (self.tmp / "links").mkdir(exist_ok=True)
            pq.write_table(table, self.tmp / "links" / "part-0.parquet", compression="zstd")
        except OSError as exc:
            raise self._io_failure(exc) from None

    def mark_incomplete(self, reason: str) -> None:
        """Record why the run stopped; the directory stays temporary, marked and unlocked
        (the next run into the same output, or `clean`, removes it). When even the marking
        fails (disk full), the temporary is removed instead."""
        if self.finalized is None and self.stage is not None and self.tmp.is_dir():
            self.manifest.update(status="incomplete", error=reason)
            try:
                write_json(self.tmp / MANIFEST, self.manifest)
            except OSError:
                self.stage.discard()
                return
            try:
                self.stage.write_marker("failed", reason)
            except OSError:
                self.stage.discard()
                return
            self.stage.release()

    def finalize(
        self,
        *,
        wall_time_s: float | None = None,
        simulated_span_ns: int | None = None,
        extra: Mapping[str, Any] | None = None,
        check_unique: bool = True,
        shard_stats: Mapping[str, ShardStats] | None = None,
        expected_requests: int | None = None,
    ) -> Path:
        """Derive regions/ and summary.json, write the final manifest, rename to `out`.

        `shard_stats`: what other processes' shard writers returned from ``close()`` (by
        shard name); shards opened here with `shard()` add their own. When they cover every
        closed shard, the summary and `regions/` are merged from them without reading the
        requests back (results/partials.py); the id check is then each shard's own plus
        `expected_requests` (the rows the run was given) against the rows written, so it
        is needed when more than one shard wrote. Otherwise everything is derived from the
        Parquet parts (results/derive.py)."""
        if self.finalized is not None:
            return self.finalized
        try:
            return self._finalize(
                wall_time_s, simulated_span_ns, extra, check_unique, shard_stats, expected_requests
            )
        except OSError as exc:
            raise self._io_failure(exc) from None

    def _finalize(
        self,
        wall_time_s: float | None,
        simulated_span_ns: int | None,
        extra: Mapping[str, Any] | None,
        check_unique: bool,
        shard_stats: Mapping[str, ShardStats] | None,
        expected_requests: int | None,
    ) -> Path:
        left = list(self.tmp.rglob("*" + INPROGRESS))
        if left:
            raise UserError("a shard writer was not closed", file=left[0])
        d = self._derive(simulated_span_ns, check_unique, shard_stats, expected_requests)
        pq.write_table(
            d.regions, self.tmp / "regions" / "part-final-000000.parquet", compression="zstd"
        )
        with_autoscale(d.summary, (extra or {}).get("autoscale"), d.span_ns)
        write_json(self.tmp / SUMMARY, {"format_version": FORMAT_VERSION, **d.summary})
        counts = {**d.counts, "shards_closed": len(list((self.tmp / SHARDS_DIR).glob("*.json")))}
        wall = wall_time_s if wall_time_s is not None else time.monotonic() - self._started
        self._final_manifest(counts, d.span_ns, wall, d.regions.num_rows, extra)
        return self._publish()

    def _derive(
        self,
        span_ns: int | None,
        check_unique: bool,
        shard_stats: Mapping[str, ShardStats] | None,
        expected: int | None,
    ) -> Derived:
        """From the shards' statistics when they cover every closed shard, else from disk."""
        t = self.target
        stats = dict(shard_stats or {})
        stats.update({w.shard: w.stats for w in self._local if w.stats is not None})
        closed = {p.stem for p in (self.tmp / SHARDS_DIR).glob("*.json")}
        devices = dataset_or_none(self.tmp / "devices")
        common: dict[str, Any] = {"services": t.services, "regions": t.regions}
        common.update(slos=self.slos, rules=self.rules, interval_ns=self.interval_ns)
        common.update(span_ns=span_ns)
        if set(stats) == closed and (expected is not None or len(closed) <= 1 or not check_unique):
            merged = merge_stats([stats[name] for name in sorted(stats)])
            if check_unique and expected is not None and merged.rows != expected:
                raise UserError(
                    f"the shards wrote {merged.rows} requests for {expected} in the trace",
                    field="request_id",
                )
            self.derived_from = "shard statistics"
            return derive_from_stats(merged, devices, requests=request_dataset(self.tmp), **common)
        self.derived_from = "requests read back"
        return derive(request_dataset(self.tmp), devices, check_unique=check_unique, **common)

    def _final_manifest(
        self,
        counts: dict[str, Any],
        span_ns: int,
        wall_s: float,
        region_rows: int,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """Fill the counts, timings and trace hash; status complete."""
        m = self.manifest
        m.update(dict(extra or {}))
        if self.trace_path is not None:
            m["trace"] = {
                "path": str(self.trace_path),
                "sha256": sha256_of(self.trace_path),
                **trace_start(self.trace_path),
            }
        m["counts"] = {**counts, "region_interval_rows": region_rows}
        m["simulated_span_ns"] = span_ns
        m["wall_time_s"] = wall_s
        m["speed"] = {
            "simulated_s_per_wall_s": (span_ns / 1e9) / wall_s if wall_s > 0 else None,
            "requests_per_wall_s": counts["requests"] / wall_s if wall_s > 0 else None,
        }
        m["status"] = "complete"
        m.pop("error", None)
        m["contents"] = contents_of(self.tmp)  # what makes the directory recognisably ours
        write_json(self.tmp / MANIFEST, m)

    def _publish(self) -> Path:
        """Rename onto `out` (mtia_cluster.output: re-checks the target, removes the marker
        last, replaces an earlier run only when --overwrite allowed it)."""
        assert self.stage is not None
        self.stage.publish()
        self.finalized = self.out
        return self.out

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            if self.finalized is None:
                self.finalize()
            return
        if self.finalized is not None or isinstance(exc, OutputIOError) or exc is None:
            return
        if os_error_of(exc) is not None:
            raise self._io_failure(exc) from None
        if self.discard_if_interrupted and self.stage is not None and is_interrupt(exc):
            self.stage.discard()  # nothing half-written stays behind
            return
        self.mark_incomplete(f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__)
