"""The cost model's attention kernel against Vidur's measured attention tables (not a check).

Not a speed benchmark: it prints the comparison docs/validation.md quotes ("Decode attention
against Vidur's attention profiles"). Inputs are Vidur ``attention.csv`` files
(microsoft/vidur ``data/profiling/compute/<gpu>/<org>/<model>/attention.csv``, one layer's
kernel on one GPU, medians in ms): the first file is fitted on, the others held out. For
decode rows it prints, per file and (TP, context) group and per KV-size bin, the rows, MAPE
and signed mean error of ``floor + KV bytes / (BW x fraction)`` under the catalog's
``attention.decode_bw_fraction`` / ``decode_floor_us`` and under the fitted pair
(``calibrate/attention.py fit_decode``, the ``calibrate fit`` procedure); for prefill rows
the same for the full kernel (``predict_attention_s``: the roofline of its FLOP side at
``prefill_peak_fraction`` and its decode side).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/vidur_attention.py FIT.csv [HELD.csv ...] \\
        [--chip a100]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from mtia_cluster.calibrate.attention import (
    AttnRow,
    fit_decode,
    predict_attention_s,
    predict_decode_s,
    read_attention_csv,
)
from mtia_cluster.catalog import Chip, load_catalog

Predict = Callable[[list[AttnRow]], np.ndarray]
BINS_MB = (0.0, 50.0, 200.0, 500.0, 1000.0, 3000.0, 1e9)


def _line(label: str, rows: list[AttnRow], preds: Sequence[Predict]) -> str:
    meas = np.array([r.time_s for r in rows])
    cells = []
    for p in preds:
        e = p(rows) / meas - 1.0
        cells.append(f"MAPE {100 * np.mean(np.abs(e)):5.1f}%  mean {100 * np.mean(e):+6.1f}%")
    return f"  {label:34s} n={len(rows):3d}  " + "   |   ".join(cells)


def _groups(rows: list[AttnRow], key: Callable[[AttnRow], object]) -> dict[object, list[AttnRow]]:
    out: dict[object, list[AttnRow]] = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def _size_bin(r: AttnRow) -> str:
    mb = r.kv_bytes / 1e6
    i = int(np.searchsorted(BINS_MB, mb, side="right")) - 1
    hi = "" if i + 2 == len(BINS_MB) else f"{BINS_MB[i + 1]:g}"
    return f"KV {BINS_MB[i]:5g}-{hi} MB/layer/GPU"  # padded: the groups sort by size


def _prefill(chip: Chip, fraction: float, floor_s: float) -> Predict:
    p = replace(chip.op_params, attn_decode_bw_fraction=fraction, attn_floor_s=floor_s)
    return lambda rows: predict_attention_s(rows, chip, p)


def report(files: Sequence[str], chip_name: str) -> None:
    chip = load_catalog().chip(chip_name)
    p = chip.op_params
    data = {f: read_attention_csv(f) for f in files}
    fit = fit_decode(data[files[0]], chip)
    print(
        f"chip {chip_name}: catalog decode_bw_fraction {p.attn_decode_bw_fraction:.4f}, "
        f"decode_floor_us {p.attn_floor_s * 1e6:.2f}"
    )
    print(
        f"fit on {files[0]}: fraction {fit.fraction:.4f}, floor {fit.floor_us:.2f} us "
        f"({fit.rows} decode rows, in-sample MAPE {100 * fit.mape:.1f}%)"
    )
    cat: Predict = lambda rs: predict_decode_s(rs, chip, p.attn_decode_bw_fraction, p.attn_floor_s)  # noqa: E731
    new: Predict = lambda rs: predict_decode_s(rs, chip, fit.fraction, fit.floor_us * 1e-6)  # noqa: E731
    for f, rows in data.items():
        role = "fitted" if f == files[0] else "held out"
        dec = [r for r in rows if not r.prefill]
        print(f"\n{f} ({role}) -- decode: catalog   |   fitted")
        print(_line("all decode rows", dec, (cat, new)))
        for k, g in _groups(dec, lambda r: (r.tp, r.context)).items():
            b = [r.batch for r in g]
            print(_line(f"tp{k[0]} ctx {k[1]} batch {min(b)}-{max(b)}", g, (cat, new)))  # type: ignore[index]
        for k, g in _groups(dec, _size_bin).items():
            print(_line(str(k), g, (cat, new)))
        pre = [r for r in rows if r.prefill]
        if pre:
            pc, pn = (
                _prefill(chip, p.attn_decode_bw_fraction, p.attn_floor_s),
                _prefill(chip, fit.fraction, fit.floor_us * 1e-6),
            )
            print("  prefill:")
            for k, g in _groups(pre, lambda r: (r.tp, r.chunk)).items():
                c = [r.context for r in g]
                label = f"tp{k[0]} chunk {k[1]} prior {min(c)}-{max(c)}"  # type: ignore[index]
                print(_line(label, g, (pc, pn)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="Vidur attention.csv files; the first is fitted on")
    ap.add_argument("--chip", default="a100")
    a = ap.parse_args()
    report(a.files, a.chip)


if __name__ == "__main__":
    main()
