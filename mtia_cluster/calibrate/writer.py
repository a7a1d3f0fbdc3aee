"""Write fitted parameters into the family's catalog file (status: calibrated, with sources)."""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mtia_cluster.calibrate.fit import FitResult
from mtia_cluster.calibrate.profiling import Profile
from mtia_cluster.catalog.op_model import OpParams
from mtia_cluster.config import load_yaml

US = 1e6  # seconds -> microseconds


def _set(node: dict[str, Any], key: str, value: float, note: str = "", source: str = "fit") -> None:
    q: dict[str, Any] = {"value": round(float(value), 4), "status": "calibrated", "source": source}
    if note:
        q["note"] = note
    node[key] = q


def write_fit(
    path: Path, fit: FitResult, prof: Profile, chip: str, data_dir: str, interconnect: str = ""
) -> None:
    """Rewrite the fitted entries of `path` (everything else is kept as it was).

    Operator fits also record ``fitted_on``; collectives go to the chip's interconnect entry
    (and to the family default when the operators were fitted on the same chip); attention
    fits go to ``attention:`` under their own source, ``fit_attention``.
    """
    data = load_yaml(path)
    rows = {k: v for k, v in fit.rows.items() if not k.startswith("attention.")}
    if len(rows) < len(fit.rows):
        _set_attention(data, fit, prof, chip, data_dir)
    if not rows:
        _write(path, data)
        return
    _set_operators(data, fit.params, rows)
    key = "fit" if "gemm" in rows else f"fit_{chip}"
    _set_collectives(data, fit.params, rows, key, interconnect)
    models = ", ".join(prof.models)
    data.setdefault("sources", {})[key] = (
        f"mtia-cluster calibrate fit of {data_dir} on chip {chip}: models [{models}], "
        f"{sum(rows.values())} rows, data sha256 {prof.digest()}"
    )
    if key != "fit":
        _write(path, data)
        return
    data["fitted_on"] = {
        "chip": chip,
        "data": str(data_dir),
        "data_sha256": prof.digest(),
        "models": prof.models,
        "rows": dict(rows),
        "in_sample_mape": {k: round(v, 4) for k, v in fit.mape.items() if k in rows},
    }
    _write(path, data)


def _set_attention(
    data: dict[str, Any], fit: FitResult, prof: Profile, chip: str, data_dir: str
) -> None:
    """The attention kernel's fitted numbers (whichever sides had rows) and their source."""
    key, p, att = "fit_attention", fit.params, data.setdefault("attention", {})
    n, err = fit.rows, fit.mape
    if "attention.decode" in n:
        note = f"{n['attention.decode']} decode rows, in-sample MAPE {err['attention.decode']:.4f}"
        _set(att, "decode_bw_fraction", p.attn_decode_bw_fraction, note, source=key)
        _set(att, "decode_floor_us", p.attn_floor_s * US, "fitted with decode_bw_fraction", key)
    if "attention.prefill" in n:
        note = (
            f"{n['attention.prefill']} prefill rows, in-sample MAPE "
            f"{err['attention.prefill']:.4f} (with the decode side above)"
        )
        _set(att, "prefill_peak_fraction", p.attn_prefill_peak_fraction, note, source=key)
    data.setdefault("sources", {})[key] = (
        f"mtia-cluster calibrate fit --part attention of {data_dir} on chip {chip}: "
        f"attention.csv of [{', '.join(sorted({r.source for r in prof.attention}))}], "
        f"{len(prof.attention)} rows, data sha256 {prof.digest()}"
    )


def _set_operators(data: dict[str, Any], p: OpParams, rows: dict[str, int]) -> None:
    """The GEMM and element-wise fits, for the operators that had rows."""
    g = data.setdefault("gemm", {})
    if "gemm" in rows:
        _set(g, "peak_fraction", p.gemm_peak_fraction)
        _set(g, "bw_fraction", p.gemm_bw_fraction)
        _set(g, "overlap_p", p.gemm_overlap_p)
        _set(g, "floor_us", p.gemm_floor_s * US)
    ew = data.setdefault("elementwise", {})
    for kind, e in p.elementwise.items():
        if f"elementwise.{kind}" in rows:
            ew[kind] = {}
            _set(ew[kind], "bw_fraction", e.bw_fraction)
            _set(ew[kind], "floor_us", e.floor_s * US)


def _set_collectives(
    data: dict[str, Any], p: OpParams, rows: dict[str, int], key: str, interconnect: str
) -> None:
    """Collective fits into the family default (when the operators were fitted on this chip)
    and the chip's interconnect entry, each marked with its source `key`."""
    targets = []
    if "gemm" in rows:  # the chip the family's operators are fitted on sets the default
        targets.append(data.setdefault("collectives", {}))
    if interconnect:
        by = data.setdefault("collectives_by_interconnect", {})
        targets.append(by.setdefault(interconnect, copy.deepcopy(data.get("collectives", {}))))
    for kind, fabric, c in (
        ("all_reduce", "scale_up", p.all_reduce_up),
        ("all_reduce", "scale_out", p.all_reduce_out),
        ("send_recv", "scale_up", p.send_recv_up),
        ("send_recv", "scale_out", p.send_recv_out),
    ):
        if f"{kind}.{fabric}" in rows:
            for col in targets:
                node: dict[str, Any] = {}
                _set(node, "latency_us", c.latency_s * US, source=key)
                _set(node, "bw_fraction", c.bw_fraction, source=key)
                col.setdefault(kind, {})[fabric] = node


def _write(path: Path, data: dict[str, Any]) -> None:
    text = (
        f"# Operator-model parameters of family {data.get('name')}. Entries with status: "
        "calibrated are\n# written by `mtia-cluster calibrate fit`; see docs/validation.md.\n"
        + yaml.safe_dump(data, sort_keys=False, width=200, default_flow_style=None)
    )
    _replace_file(path, text)


def _replace_file(path: Path, text: str) -> None:
    """Write `text` beside `path` under a temporary name, then rename it onto `path`: a
    reader never sees half a catalog file, and a failed write leaves the old one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
