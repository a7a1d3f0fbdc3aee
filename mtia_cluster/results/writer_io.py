"""File helpers shared by the writer and the reader: JSON, datasets, the id check."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from mtia_cluster.results.schema import DEVICE_SCHEMA, REGION_SCHEMA, REQUEST_FILE_SCHEMA

REQUEST_PARTITIONING = ds.partitioning(pa.schema([("region", pa.string())]), flavor="hive")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to a temporary name beside `path`, then rename (readers never see half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n")
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    """numpy scalars in JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def request_dataset(root: Path) -> ds.Dataset:
    """`requests/` as a dataset with `region` from the hive partition path."""
    return ds.dataset(
        root / "requests",
        format="parquet",
        partitioning=REQUEST_PARTITIONING,
        schema=REQUEST_FILE_SCHEMA.append(pa.field("region", pa.string())),
    )


def dataset_or_none(path: Path) -> ds.Dataset | None:
    """A Parquet dataset of the devices or regions directory, None when it has no files."""
    if not path.is_dir() or not any(p.suffix == ".parquet" for p in path.iterdir()):
        return None
    schema = DEVICE_SCHEMA if path.name == "devices" else REGION_SCHEMA
    return ds.dataset(path, format="parquet", schema=schema)
