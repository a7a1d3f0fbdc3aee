"""Splitwise simulator and Vidur trace CSVs.

splitwise-sim (Mutinifni/splitwise-sim, traces/*.csv): `request_id, request_type,
application_id, arrival_timestamp, batch_size, prompt_size, token_size`, arrival in seconds.
Vidur (microsoft/vidur, data/processed_traces/*.csv): `arrived_at` (seconds),
`num_prefill_tokens`, `num_decode_tokens` (other columns ignored). The header says which.
(The Splitwise paper's raw Azure 2023 CSVs are the azure-llm format.)
"""

from __future__ import annotations

from pathlib import Path

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
    seconds_to_ns,
)

VARIANTS = {
    "splitwise-sim": ("arrival_timestamp", "prompt_size", "token_size"),
    "vidur": ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
}


def import_splitwise(
    path: Path,
    output: Path,
    service: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> pa.Table:
    """Import a splitwise-sim or Vidur trace CSV."""
    check_file(path)
    header = csv_header(path)
    variant = next((v for v, cols in VARIANTS.items() if all(c in header for c in cols)), None)
    if variant is None:
        raise UserError(
            "CSV header does not match the splitwise format: expected "
            "arrival_timestamp,prompt_size,token_size (splitwise-sim) or "
            "arrived_at,num_prefill_tokens,num_decode_tokens (Vidur)",
            file=path,
            field="header",
            value=header,
        )
    t_col, in_col, out_col = VARIANTS[variant]
    table = read_csv(
        path,
        [t_col, in_col, out_col],
        {t_col: pa.float64(), in_col: pa.float64(), out_col: pa.float64()},
        progress=progress,
    )
    t_ns = seconds_to_ns(table, t_col, path)
    extra = {
        "input_tokens": counts(table, in_col, path),
        "output_tokens": counts(table, out_col, path),
    }
    meta = {
        "source": f"{variant} trace ({path.name})",
        "licence": "MIT for the splitwise-sim and Vidur repositories; traces derived "
        "from Azure data are CC-BY-4.0",
        "generator": "mtia_cluster.traces.importers.splitwise",
        "parameters": {"format": "splitwise", "variant": variant},
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
