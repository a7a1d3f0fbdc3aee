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
    PYTHONPATH=$PWD .venv/bin/python benchmarks/vidur_attention.py TABLE.csv --splits

``--splits`` fits the whole kernel (decode and prefill sides, ``fit_attention``) on part of one
table and reports the rest: rows with context <= 2,048 vs longer, and decode batch <= 64 /
prefill chunk <= 1,024 vs larger.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from mtia_cluster.calibrate.attention import (
    AttnRow,
    fit_attention,
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


SPLITS: dict[str, Callable[[AttnRow], bool]] = {
    "context <= 2048": lambda r: r.context <= 2048,
    "decode batch <= 64, prefill chunk <= 1024": lambda r: (
        r.chunk <= 1024 if r.prefill else r.batch <= 64
    ),
}


def splits(path: str, chip_name: str) -> None:
    """Hold-outs inside one table: fit the whole kernel (``fit_attention``) on a subset, report
    MAPE (signed mean) on it and on the rest, per side, and the rest under the catalog."""
    chip = load_catalog().chip(chip_name)
    rows = read_attention_csv(path)
    for name, train in SPLITS.items():
        tr, te = [r for r in rows if train(r)], [r for r in rows if not train(r)]
        q = fit_attention(tr, chip, chip.op_params).params
        print(
            f"\nfit on {name}: decode fraction {q.attn_decode_bw_fraction:.4f}, floor "
            f"{q.attn_floor_s * 1e6:.2f} us, prefill fraction {q.attn_prefill_peak_fraction:.4f}"
        )
        fitted: Predict = lambda rs: predict_attention_s(rs, chip, q)  # noqa: B023, E731
        catalog: Predict = lambda rs: predict_attention_s(rs, chip, chip.op_params)  # noqa: E731
        for side in (False, True):
            label = "prefill" if side else "decode"
            a, b = [r for r in tr if r.prefill is side], [r for r in te if r.prefill is side]
            if a and b:
                print(_line(f"{label}: fitted rows", a, (fitted,)))
                print(_line(f"{label}: held-out rows | catalog", b, (fitted, catalog)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="Vidur attention.csv files; the first is fitted on")
    ap.add_argument("--chip", default="a100")
    ap.add_argument("--splits", action="store_true", help="hold-outs inside the first file instead")
    a = ap.parse_args()
    if a.splits:
        splits(a.files[0], a.chip)
        return
    report(a.files, a.chip)


if __name__ == "__main__":
    main()
