"""Azure LLM inference traces (Azure/AzurePublicDataset), CC-BY-4.0.

2023 (AzureLLMInferenceTrace_{code,conv}.csv): `TIMESTAMP` naive, 7 fractional digits, treated
as UTC; `ContextTokens`, `GeneratedTokens`. 2024 (AzureLLMInferenceTrace_*_1week.csv): same
columns, `TIMESTAMP` timezone-aware with a varying number of fractional digits (none at all on
whole seconds). 2025 multimodal: adds `NumImages`. The timestamp kind is detected from the
first data row and the whole column is parsed by pyarrow.csv in C++ (no Python loop).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtia_cluster.errors import UserError
from mtia_cluster.traces.importers._common import (
    Progress,
    build_and_write,
    check_file,
    constant_service,
    counts,
    csv_header,
    read_csv,
    require_header,
)

REQUIRED = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
_TZ = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def _first_timestamp(path: Path) -> str:
    with path.open("rb") as fh:
        fh.readline()
        line = fh.readline().decode("utf-8", errors="replace").strip()
    if not line:
        raise UserError("no data rows after the header", file=path)
    return line.split(",")[0].strip().strip('"')


def import_azure(
    path: Path,
    output: Path,
    service: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> pa.Table:
    """Import a 2023, 2024 or 2025 Azure LLM trace CSV."""
    check_file(path)
    header = csv_header(path)
    require_header(path, header, REQUIRED, "azure-llm")
    tz_aware = bool(_TZ.search(_first_timestamp(path)))
    ts_type = pa.timestamp("ns", tz="UTC") if tz_aware else pa.timestamp("ns")
    columns = REQUIRED + (["NumImages"] if "NumImages" in header else [])
    table = read_csv(
        path,
        columns,
        {
            "TIMESTAMP": ts_type,
            "ContextTokens": pa.float64(),
            "GeneratedTokens": pa.float64(),
            "NumImages": pa.float64(),
        },
        progress=progress,
    )
    ts = table.column("TIMESTAMP")
    if ts.null_count:
        row = int(np.flatnonzero(ts.is_null().to_numpy(zero_copy_only=False))[0])
        raise UserError("missing timestamp", file=path, field=f"line {row + 2}, column TIMESTAMP")
    t_ns = ts.cast(pa.int64()).to_numpy()
    extra = {
        "input_tokens": counts(table, "ContextTokens", path),
        "output_tokens": counts(table, "GeneratedTokens", path),
    }
    if "NumImages" in columns:
        extra["num_images"] = counts(table, "NumImages", path)
    start = int(t_ns.min())
    year = "2025 multimodal" if "NumImages" in columns else ("2024" if tz_aware else "2023")
    meta = {
        "source": f"Azure LLM inference trace {year} ({path.name}), Azure/AzurePublicDataset",
        "licence": "CC-BY-4.0 (attribution: Microsoft Azure, AzurePublicDataset)",
        "generator": "mtia_cluster.traces.importers.azure",
        "parameters": {
            "format": "azure-llm",
            "variant": year,
            "start_utc": str(np.datetime64(start, "ns")) + "Z",
        },
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
