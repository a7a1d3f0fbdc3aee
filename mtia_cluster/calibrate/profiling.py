"""Read a Vidur-format profiling directory (measured operator and collective times).

Layout (microsoft/vidur ``data/profiling/``): ``compute/<gpu>/<org>/<model>/mlp.csv`` with one
row per (model shape, tokens, TP degree) and ``time_stats.<op>.median`` in milliseconds, and
``network/<gpu>_<system>/{all_reduce,send_recv}.csv`` with message ``size`` in bytes,
``num_workers``, ``devices_per_node`` and ``time_stats.<collective>.median`` in ms, and
``compute/<gpu>/<org>/<model>/attention.csv`` (one layer's attention kernel, decode and prefill
rows; read by :func:`mtia_cluster.calibrate.attention.read_attention_csv`).

Every ``mlp.csv`` / ``attention.csv`` / collective CSV below the given directory is read.
When a path names its GPU (the folder after ``compute/``, or the prefix of a ``network/``
system folder) only the files of the requested chip are kept, so the whole upstream tree can
be passed as is.
Systems whose name says ``pairwise`` (GPU pairs bridged by NVLink, not a switched scale-up
domain the catalog describes) are counted as skipped, not compared.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtia_cluster.calibrate.attention import AttnRow, read_attention_csv
from mtia_cluster.errors import UserError
from mtia_cluster.perf.layer import OPS, LayerShape

MS = 1e-3
SHAPE_COLUMNS = (
    "n_head",
    "n_kv_head",
    "n_embd",
    "n_expanded_embd",
    "use_gated_mlp",
    "num_tokens",
    "num_tensor_parallel_workers",
)


@dataclass(frozen=True)
class OpRow:
    """One measured operator time."""

    model: str
    op: str
    shape: LayerShape
    tokens: int
    time_s: float


@dataclass(frozen=True)
class CollectiveRow:
    """One measured collective: kind ('all_reduce'/'send_recv'), fabric ('scale_up'/'out')."""

    system: str
    kind: str
    fabric: str
    ranks: int
    size_bytes: float
    time_s: float


@dataclass
class Profile:
    """All rows read for one chip, with the files they came from."""

    ops: list[OpRow] = field(default_factory=list)
    collectives: list[CollectiveRow] = field(default_factory=list)
    attention: list[AttnRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped_rows: int = 0

    @property
    def models(self) -> list[str]:
        return sorted({r.model for r in self.ops} | {r.source for r in self.attention})

    def digest(self) -> str:
        """sha256 over the files read (names and bytes), first 16 hex digits."""
        h = hashlib.sha256()
        for f in sorted(self.files):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()[:16]


def _gpu_of(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    for i, part in enumerate(parts[:-1]):
        if part == "compute" and i + 1 < len(parts) - 1:
            return parts[i + 1]
        if part == "network" and i + 1 < len(parts) - 1:
            return parts[i + 1].split("_")[0]
    return None


def _number(row: dict[str, str], key: str, path: Path) -> float:
    raw = row.get(key)
    try:
        value = float(raw) if raw not in (None, "") else math.nan
    except ValueError:
        raise UserError("expected a number", file=path, field=key, value=raw) from None
    return value


def _shape(row: dict[str, str], path: Path) -> LayerShape:
    missing = [c for c in SHAPE_COLUMNS if c not in row]
    if missing:
        raise UserError("missing shape column", file=path, field=missing[0])
    heads = int(_number(row, "n_head", path))
    hidden = int(_number(row, "n_embd", path))
    if heads < 1 or hidden % heads:
        raise UserError("n_embd must be a multiple of n_head", file=path, field="n_head")
    return LayerShape(
        hidden=hidden,
        heads=heads,
        kv_heads=int(_number(row, "n_kv_head", path)),
        head_dim=hidden // heads,
        ffn=int(_number(row, "n_expanded_embd", path)),
        gated=row["use_gated_mlp"].strip().lower() == "true",
        tp=int(_number(row, "num_tensor_parallel_workers", path)),
    )


def _read_mlp(path: Path, model: str, out: Profile) -> None:
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            shape = _shape(row, path)
            tokens = int(_number(row, "num_tokens", path))
            for op in OPS:
                t = _number(row, f"time_stats.{op}.median", path) * MS
                if np.isfinite(t) and t > 0:
                    out.ops.append(OpRow(model, op, shape, tokens, t))


def _read_collective(path: Path, system: str, out: Profile) -> None:
    kind = path.stem
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if "pairwise" in system:
                out.skipped_rows += 1
                continue
            ranks = int(_number(row, "num_workers", path))
            per_node = int(_number(row, "devices_per_node", path))
            t = _number(row, f"time_stats.{kind}.median", path) * MS
            if not (np.isfinite(t) and t > 0):
                continue
            fabric = "scale_up" if per_node >= ranks else "scale_out"
            size = _number(row, "size", path)
            out.collectives.append(CollectiveRow(system, kind, fabric, ranks, size, t))


def read_profile(data_dir: str | Path, chip: str, models: list[str] | None = None) -> Profile:
    """Rows of `data_dir` for `chip` (optionally only the named model folders)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError("profiling directory not found", file=root)
    prof = Profile()
    mlps = sorted(root.rglob("mlp.csv"))
    attns = sorted(root.rglob("attention.csv"))
    nets = sorted([*root.rglob("all_reduce.csv"), *root.rglob("send_recv.csv")])
    labelled = {g for g in (_gpu_of(p, root) for p in [*mlps, *attns, *nets]) if g}
    if labelled and chip not in labelled:
        raise UserError(
            f"no measurements for this chip (the directory has {', '.join(sorted(labelled))})",
            file=root,
            field="--chip",
            value=chip,
        )
    for p in mlps:
        if _gpu_of(p, root) not in (None, chip):
            continue
        model = p.parent.name
        if models and model not in models:
            continue
        prof.files.append(p)
        _read_mlp(p, model, prof)
    for p in attns:
        if _gpu_of(p, root) in (None, chip) and (not models or p.parent.name in models):
            prof.files.append(p)
            prof.attention.extend(read_attention_csv(p, source=p.parent.name))
    if not models:  # collectives are fitted / checked with the full set only
        for p in nets:
            if _gpu_of(p, root) not in (None, chip):
                continue
            prof.files.append(p)
            _read_collective(p, p.parent.name, prof)
    if models:
        unknown = sorted(set(models) - set(prof.models))
        if unknown:
            raise UserError("no such model folder in the data", field="--models", value=unknown[0])
    if not prof.ops and not prof.collectives and not prof.attention:
        raise UserError(
            "no Vidur-format rows (mlp.csv, attention.csv, all_reduce.csv, send_recv.csv)",
            file=root,
        )
    return prof
