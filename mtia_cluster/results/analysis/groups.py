"""Grouping keys of an analysis: region, service, generation (chip) and rack, plus time windows.

A *level* is a tuple of key dimensions, e.g. ``("region", "service")`` or ``()`` for the
whole fleet. Every request and device row gets one integer group id per level (mixed radix
over the dimensions' codes, then the time window), so accumulators are flat numpy arrays
filled with ``np.bincount``. Requests get their generation and rack from the accelerator that
served them (mapped through `devices/`); a request that never reached an accelerator (dropped
before dispatch) is in the generation/rack ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mtia_cluster.errors import UserError

DIMENSIONS = ("region", "service", "generation", "rack")
NONE_LABEL = "-"
MAX_GROUPS = 5_000_000
_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_MAX_WINDOW_NS = 2**63 - 1
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h)\s*$")


def parse_window(text: str) -> int:
    """A window length such as ``1m``, ``30s``, ``250ms``, ``1.5h`` in integer nanoseconds."""
    match = _WINDOW.match(str(text))
    if not match:
        raise UserError(
            "window must be a number with a unit ns, us, ms, s, m or h (e.g. 1m, 30s)",
            field="--window",
            value=text,
        )
    window = float(match[1]) * _UNITS_NS[match[2]]
    if not window < _MAX_WINDOW_NS:  # also inf: windows are int64 nanoseconds
        raise UserError(
            f"window must be shorter than {_MAX_WINDOW_NS / 1e9:,.0f} s (int64 nanoseconds)",
            field="--window",
            value=text,
        )
    window_ns = round(window)
    if window_ns <= 0:
        raise UserError("window must be positive", field="--window", value=text)
    return int(window_ns)


def parse_by(text: str | Sequence[str]) -> tuple[str, ...]:
    """``region,service`` (or a list) -> a level; unknown or repeated names are a UserError."""
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names = tuple(p.strip() for p in parts if p.strip())
    for name in names:
        if name not in DIMENSIONS:
            raise UserError(
                f"unknown grouping (use {', '.join(DIMENSIONS)})", field="--by", value=name
            )
    if not names or len(set(names)) != len(names):
        raise UserError("--by needs distinct names", field="--by", value=",".join(names))
    return tuple(d for d in DIMENSIONS if d in names)


@dataclass
class Keys:
    """Label tables of every dimension and the accelerator -> generation/rack maps."""

    labels: dict[str, list[str]]
    accel_chip: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    accel_rack: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def size(self, dim: str) -> int:
        """Number of codes of `dim` (its labels)."""
        return len(self.labels[dim])

    def from_accelerator(self, dim: str, accel: np.ndarray) -> np.ndarray:
        """Generation or rack code of each accelerator id (the ``-`` code when unknown)."""
        table = self.accel_chip if dim == "generation" else self.accel_rack
        none = self.size(dim) - 1
        a = accel.astype(np.int64)
        if len(table) == 0:
            return np.full(len(a), none, dtype=np.int64)
        known = (a >= 0) & (a < len(table))
        return np.where(known, table[np.clip(a, 0, max(len(table) - 1, 0))], none)


def build_keys(regions: Sequence[str], services: Sequence[str], devices: ds.Dataset | None) -> Keys:
    """Label tables from the manifest and, for chips and racks, from `devices/`."""
    chips: set[str] = set()
    pairs: dict[int, tuple[str, int]] = {}
    if devices is not None:
        for batch in devices.to_batches(columns=["accelerator_id", "rack_id", "chip"]):
            t = (
                pa.table(
                    {
                        "a": batch["accelerator_id"],
                        "r": batch["rack_id"],
                        "c": batch["chip"].cast(pa.string()),
                    }
                )
                .group_by(["a", "r", "c"])
                .aggregate([])
            )
            for a, r, c in zip(*(t[n].to_pylist() for n in ("a", "r", "c")), strict=True):
                pairs[int(a)] = (c, int(r))
                chips.add(c)
    chip_labels = sorted(chips)
    racks = sorted({r for _, r in pairs.values()})
    size = max(pairs, default=-1) + 1
    accel_chip = np.full(size, len(chip_labels), dtype=np.int64)
    accel_rack = np.full(size, len(racks), dtype=np.int64)
    chip_code = {c: i for i, c in enumerate(chip_labels)}
    rack_code = {r: i for i, r in enumerate(racks)}
    for a, (c, r) in pairs.items():
        if a >= 0:
            accel_chip[a], accel_rack[a] = chip_code[c], rack_code[r]
    labels = {
        "region": [*regions, NONE_LABEL],
        "service": [*services, NONE_LABEL],
        "generation": [*chip_labels, NONE_LABEL],
        "rack": [*(str(r) for r in racks), NONE_LABEL],
    }
    return Keys(labels, accel_chip, accel_rack)


def name_codes(column: pa.Array | pa.ChunkedArray, labels: Sequence[str]) -> np.ndarray:
    """Codes of a name column in `labels` (nulls and unknown names -> the last, ``-``)."""
    names = column.cast(pa.string()) if pa.types.is_dictionary(column.type) else column
    idx = pc.index_in(names, value_set=pa.array(list(labels[:-1]), type=pa.string()))
    return np.asarray(idx.fill_null(len(labels) - 1).to_numpy(zero_copy_only=False), np.int64)


@dataclass(frozen=True)
class Level:
    """One grouping: dimensions, their sizes, and the number of time windows."""

    dims: tuple[str, ...]
    sizes: tuple[int, ...]
    windows: int

    @property
    def groups(self) -> int:
        """Number of group ids (product of sizes times windows)."""
        return int(np.prod(self.sizes, dtype=np.int64)) * self.windows

    def gid(self, codes: dict[str, np.ndarray], window: np.ndarray | int) -> np.ndarray:
        """Group id of each row from its per-dimension codes and window index."""
        out = np.zeros_like(np.asarray(window, dtype=np.int64))
        for dim, size in zip(self.dims, self.sizes, strict=True):
            out = out * size + codes[dim]
        return out * self.windows + window

    def decode(self, gid: int) -> tuple[dict[str, int], int]:
        """Per-dimension codes and window index of a group id."""
        window, rest = gid % self.windows, gid // self.windows
        codes: dict[str, int] = {}
        for dim, size in zip(reversed(self.dims), reversed(self.sizes), strict=True):
            codes[dim], rest = rest % size, rest // size
        return codes, window


def make_levels(by: tuple[str, ...], keys: Keys, windows: int) -> list[Level]:
    """The requested level, its single dimensions when it has several, and the total."""
    dims_list = [by, *([(d,) for d in by] if len(by) > 1 else []), ()]
    levels = [Level(d, tuple(keys.size(x) for x in d), windows) for d in dims_list]
    for level in levels:
        if level.groups > MAX_GROUPS:
            raise UserError(
                f"too many groups ({level.groups:,}); use a longer --window or fewer --by keys",
                field="--by",
                value=",".join(level.dims),
            )
    return levels
