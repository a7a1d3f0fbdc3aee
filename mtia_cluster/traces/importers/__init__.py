"""Importers of public LLM traces into the trace format (format notes: docs/traces.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from mtia_cluster.errors import UserError
from mtia_cluster.traces.importers._common import Progress
from mtia_cluster.traces.importers.azure import import_azure
from mtia_cluster.traces.importers.burstgpt import import_burstgpt
from mtia_cluster.traces.importers.mooncake import import_mooncake
from mtia_cluster.traces.importers.splitwise import import_splitwise

FORMATS: dict[str, Callable[[Path, Path, str | None, Progress | None, bool], pa.Table]] = {
    "azure-llm": import_azure,
    "burstgpt": import_burstgpt,
    "mooncake": import_mooncake,
    "splitwise": import_splitwise,
}


def import_trace(
    fmt: str,
    source: str | Path,
    output: str | Path,
    service: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> pa.Table:
    """Import `source` in format `fmt` and write the trace to `output` (atomically;
    `overwrite`: replace an earlier trace of the tool there).

    `progress(n_bytes)` is called as the input is read (the CLI's progress bar).
    """
    importer = FORMATS.get(fmt)
    if importer is None:
        raise UserError(
            f"unknown import format, expected one of {', '.join(FORMATS)}",
            field="--format",
            value=fmt,
        )
    return importer(Path(source), Path(output), service, progress, overwrite)
