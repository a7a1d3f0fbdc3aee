"""BurstGPT (HPMLL/BurstGPT), CC-BY-4.0.

CSV columns: `Timestamp` (seconds since the trace start), `Model` (ChatGPT or GPT-4),
`Request tokens`, `Response tokens`, `Total tokens`, `Log Type` (Conversation log / API log).
A request with zero response tokens failed: it is kept and flagged in the `failed` column,
never dropped. The service is the `Model` value unless a service name is given.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mtia_cluster.traces.importers._common import (
    Progress,
    build_and_write,
    check_file,
    constant_service,
    counts,
    csv_header,
    read_csv,
    require_header,
    seconds_to_ns,
)

REQUIRED = ["Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"]


def import_burstgpt(
    path: Path,
    output: Path,
    service: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> pa.Table:
    """Import a BurstGPT CSV (failed requests flagged, not dropped)."""
    check_file(path)
    require_header(path, csv_header(path), REQUIRED, "burstgpt")
    table = read_csv(
        path,
        REQUIRED,
        {
            "Timestamp": pa.float64(),
            "Model": pa.string(),
            "Request tokens": pa.float64(),
            "Response tokens": pa.float64(),
            "Total tokens": pa.float64(),
            "Log Type": pa.string(),
        },
        progress=progress,
    )
    t_ns = seconds_to_ns(table, "Timestamp", path)
    out_tokens = counts(table, "Response tokens", path)
    extra = {
        "input_tokens": counts(table, "Request tokens", path),
        "output_tokens": out_tokens,
        "failed": pa.array(out_tokens == 0),
        "log_type": pc.dictionary_encode(
            pc.fill_null(table.column("Log Type"), "unknown")
        ).combine_chunks(),
    }
    if service:
        svc = constant_service(service, len(t_ns))
    else:
        svc = pc.dictionary_encode(pc.fill_null(table.column("Model"), "unknown")).combine_chunks()
    meta = {
        "source": f"BurstGPT ({path.name}), github.com/HPMLL/BurstGPT",
        "licence": "CC-BY-4.0 (attribution: BurstGPT, Wang et al.)",
        "generator": "mtia_cluster.traces.importers.burstgpt",
        "parameters": {"format": "burstgpt", "failed_rows": int((out_tokens == 0).sum())},
    }
    return build_and_write(path, output, t_ns, svc, extra, meta, overwrite=overwrite)
