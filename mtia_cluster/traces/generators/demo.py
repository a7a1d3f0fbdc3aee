"""The README demo trace: two regions, one R&R service and one LLM service, ~15 minutes.

`configs/traces/demo.yaml` holds the same spec (a test checks they agree); the committed
sample `traces/demo.parquet` is `generate_demo_trace("traces/demo.parquet", seed=0)`, or
`mtia-cluster trace generate --spec configs/traces/demo.yaml --seed 0 -o traces/demo.parquet`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtia_cluster.traces.generators.mix import generate_table
from mtia_cluster.traces.io import write_trace

DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "duration_s": 900,
    "start_hour_utc": 18,
    "regions": {
        "us-east": {"weight": 1.0, "tz_offset_h": -5},
        "eu-west": {"weight": 0.6, "tz_offset_h": 1},
    },
    "services": [
        {
            "name": "rr-ranking",
            "kind": "rr",
            "rate_per_s": 4.0,
            "arrivals": {"process": "poisson"},
            "diurnal": {"peak_to_trough": 3.0, "peak_hour_local": 20},
            "items": {"dist": "mlperf-dlrm-v2"},
        },
        {
            "name": "llm-chat",
            "kind": "llm",
            "rate_per_s": 1.0,
            "arrivals": {"process": "gamma", "cv": 1.5},
            "lengths": {"dist": "azure-2023-conv"},
        },
    ],
}


def generate_demo_trace(path: str | Path, seed: int = 0) -> Path:
    """Write the demo trace to `path` (atomically) and return the path."""
    table, metadata = generate_table(DEMO_SPEC, seed)
    return write_trace(table, path, metadata)
