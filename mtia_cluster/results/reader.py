"""Open a finished results directory, refusing anything else with one clear message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from mtia_cluster.errors import UserError
from mtia_cluster.results.schema import (
    FORMAT_VERSION,
    MANIFEST,
    MARKER_INCOMPLETE,
    REGION_SCHEMA,
    SUMMARY,
)
from mtia_cluster.results.writer_io import dataset_or_none, request_dataset
from mtia_cluster.slo import ServiceSLO


@dataclass(frozen=True)
class Results:
    """A complete run: its manifest, summary and the three Parquet datasets."""

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]

    @property
    def requests(self) -> ds.Dataset:
        """`requests/` (hive partition `region` as a string column)."""
        return request_dataset(self.path)

    @property
    def devices(self) -> ds.Dataset | None:
        """`devices/`, None when the run recorded no accelerators."""
        return dataset_or_none(self.path / "devices")

    @property
    def regions(self) -> ds.Dataset:
        """`regions/` interval rows (always written by finalize)."""
        return ds.dataset(self.path / "regions", format="parquet", schema=REGION_SCHEMA)

    @property
    def slos(self) -> dict[str, ServiceSLO]:
        """The SLOs the run was judged against."""
        return {k: ServiceSLO.from_dict(v) for k, v in self.manifest.get("slos", {}).items()}


def _incomplete_sibling(path: Path) -> Path | None:
    """A temporary directory of an unfinished run that would have become `path`."""
    from mtia_cluster.output import temporaries_of

    found = temporaries_of(path.absolute())
    return found[-1] if found else None


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable {what}: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise UserError(f"{what} is not a JSON object", file=path)
    return data


def open_results(path: str | Path) -> Results:
    """The results at `path`; UserError naming the directory when it is not a complete run."""
    p = Path(path)
    if not p.exists():
        tmp = _incomplete_sibling(p)
        hint = f" (an incomplete run is at {tmp})" if tmp else ""
        raise UserError(f"results directory does not exist{hint}", file=p)
    if not p.is_dir():
        raise UserError("not a results directory (a file, not a directory)", file=p)
    if (p / MARKER_INCOMPLETE).exists():
        raise UserError(
            f"incomplete run ({MARKER_INCOMPLETE} present: interrupted or still running)", file=p
        )
    if not (p / MANIFEST).is_file():
        raise UserError(f"not a results directory (no {MANIFEST})", file=p)
    manifest = _load_json(p / MANIFEST, MANIFEST)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"incompatible results format_version (this version reads {FORMAT_VERSION!r})",
            file=p,
            field="format_version",
            value=version,
        )
    if manifest.get("status") != "complete":
        raise UserError(
            "incomplete run (manifest status is not complete)",
            file=p,
            field="status",
            value=manifest.get("status"),
        )
    if not (p / SUMMARY).is_file() or not (p / "requests").is_dir():
        raise UserError(f"not a results directory (no {SUMMARY} or requests/)", file=p)
    return Results(p, manifest, _load_json(p / SUMMARY, SUMMARY))
