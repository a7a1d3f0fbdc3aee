"""How far the MTIA 2i / MTIA 1 ratios and the H100 DLRM-v2 rows move with their
least-certain inputs (docs/validation.md, "MTIA and DLRM-v2 checks: audit").

Not a speed benchmark: the figures are deterministic and are the ones the audit quotes.
Each row changes ONE input (catalog chip, host or model field, or the dtype) in memory and
recomputes what the check computes; nothing is written and no catalog file changes.

* chip ratio: geometric mean over the chip check's models of the best items/s per chip
  (`rr_best_throughput`, each chip with its own host), as `mtia2i-vs-mtia1-chip`;
* DLRM-v2: the Server and Offline rows' relative errors, as `h100-dlrmv2-*`;
* with ``--platform``: one `capacity` search per model and chip (as the platform checks, a
  minute or two), then perf/W recomputed for other host powers and TDP bases from each
  replay's own accelerator utilization.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/mtia_sensitivity.py [--platform]
"""

from __future__ import annotations

import argparse
import dataclasses as dc
from collections.abc import Callable

import numpy as np

from mtia_cluster.catalog import Catalog, load_catalog
from mtia_cluster.perf.estimators import rr_best_throughput
from mtia_cluster.perf.validation import (
    CHIP_CHECK_MODELS,
    DLRM_OFFLINE_BATCH,
    DLRM_PAIRS_PER_SAMPLE,
    DLRM_SERVER_BOUND_S,
)
from mtia_cluster.planning.capacity import capacity
from mtia_cluster.planning.validation import PLATFORM_SLO_S, PLATFORM_SPAN_S
from mtia_cluster.slo import ServiceSLO

PUBLISHED = {"server": 63769.0, "offline": 74457.0}  # MLPerf v4.1 DGX H100, per GPU


def host_of(cat: Catalog, chip: str):
    """The host of the first platform deploying `chip` (what the checks use)."""
    return next(cat.host(p.host) for p in cat.platforms.values() if p.chip == chip)


def geomean(xs: list[float]) -> float:
    return float(np.exp(np.mean(np.log(xs))))


def chip_ratio(cat: Catalog, chips: dict, hosts: dict, mfn: Callable, models=CHIP_CHECK_MODELS):
    """The chip check's figure with the given chips, hosts and model transform."""
    out = []
    for name in models:
        m = mfn(cat.model(name))
        new, old = (rr_best_throughput(chips[c], m, hosts[c]) for c in ("mtia-2i", "mtia-1"))
        out.append(new.items_per_s_per_chip / old.items_per_s_per_chip)
    return geomean(out)


def chip_rows(cat: Catalog) -> list[tuple[str, dict, dict, Callable]]:
    """(label, chip overrides, host overrides, model transform) per sensitivity row."""
    c1, h1 = cat.chip("mtia-1"), host_of(cat, "mtia-1")

    def m(**kw: float) -> Callable:
        return lambda x: dc.replace(x, **{k: getattr(x, k) * f for k, f in kw.items()})

    def lc(**kw: float) -> Callable:
        return lambda x: m(**kw)(x) if x.name.startswith("lc") else x

    def eff(g: float):
        return dc.replace(c1, efficiency=dc.replace(c1.efficiency, gemm=g))

    dram = h1.dram_bandwidth_bytes_per_s_per_socket
    clock = cat.chip("mtia-2i")
    slow = {d: v * 1100 / 1350 for d, v in clock.gemm_dense_flops.items()}
    ident = m()
    return [
        ("MTIA 1 efficiency.gemm 0.92 -> 0.828 (x0.9)", {"mtia-1": eff(0.828)}, {}, ident),
        ("MTIA 1 efficiency.gemm 0.92 -> 1.0", {"mtia-1": eff(1.0)}, {}, ident),
        (
            "MTIA 1 launch 5 us -> 1 us",
            {"mtia-1": dc.replace(c1, launch_overhead_s=1e-6)},
            {},
            ident,
        ),
        (
            "MTIA 2i at its 1,100 MHz design clock",
            {"mtia-2i": dc.replace(clock, gemm_dense_flops=slow)},
            {},
            ident,
        ),
        (
            "Yosemite host DRAM BW x0.5",
            {},
            {"mtia-1": dc.replace(h1, dram_bandwidth_bytes_per_s_per_socket=dram / 2)},
            ident,
        ),
        (
            "Yosemite cores x0.5",
            {},
            {"mtia-1": dc.replace(h1, cores_per_socket=h1.cores_per_socket // 2)},
            ident,
        ),
        ("no host stages (chips alone)", {}, {"mtia-2i": None, "mtia-1": None}, ident),
        ("embedding lookups x2 (all four models)", {}, {}, m(embedding_lookups_per_sample=2.0)),
        (
            "LC lookups x2 (LC1 becomes LPDDR-bound on 2i)",
            {},
            {},
            lc(embedding_lookups_per_sample=2.0),
        ),
        (
            "LC lookups x4 (LC1, LC5 LPDDR-bound on 2i)",
            {},
            {},
            lc(embedding_lookups_per_sample=4.0),
        ),
        ("kernels per batch x2", {}, {}, m(kernels_per_batch=2.0)),
        ("host CPU per item x2", {}, {}, m(host_cpu_s_per_sample=2.0)),
    ]


def print_chip(cat: Catalog) -> None:
    chips = {c: cat.chip(c) for c in ("mtia-2i", "mtia-1")}
    hosts = {c: host_of(cat, c) for c in chips}
    base = chip_ratio(cat, chips, hosts, lambda x: x)
    print(f"chip ratio (published 3x): base {base:.3f} ({base / 3 - 1:+.1%})")
    nine = ("lc1", "lc2", "lc3", "lc4", "lc5", "hc1", "hc2", "hc3", "hc4")
    rows = [("all nine ISCA'25 Fig. 6 models", chip_ratio(cat, chips, hosts, lambda x: x, nine))]
    for label, c, h, mfn in chip_rows(cat):
        rows.append((label, chip_ratio(cat, {**chips, **c}, {**hosts, **h}, mfn)))
    for label, r in rows:
        print(f"  {label:<50} {r:.3f}  {r / base - 1:+6.1%}  vs 3x {r / 3 - 1:+6.1%}")


def dlrm_errors(
    cat: Catalog, chip=None, dtype: str | None = None, model=None
) -> tuple[float, float]:
    """Relative errors of the Server and Offline rows for an H100 / model variant."""
    c, m, h = chip or cat.chip("h100"), model or cat.model("dlrm-dcnv2"), host_of(cat, "h100")
    s = rr_best_throughput(c, m, h, latency_budget_s=DLRM_SERVER_BOUND_S / 2, dtype=dtype)
    o = rr_best_throughput(c, m, h, max_batch=DLRM_OFFLINE_BATCH, dtype=dtype)
    per = [x.items_per_s_per_chip / DLRM_PAIRS_PER_SAMPLE for x in (s, o)]
    return per[0] / PUBLISHED["server"] - 1, per[1] / PUBLISHED["offline"] - 1


def print_dlrm(cat: Catalog) -> None:
    h = cat.chip("h100")

    def eff(g: float):
        return dc.replace(h, efficiency=dc.replace(h.efficiency, gemm=g))

    base = cat.model("dlrm-dcnv2")
    host2 = dc.replace(
        base,
        host_cpu_s_per_sample=2 * base.host_cpu_s_per_sample,
        host_dram_bytes_per_sample=2 * base.host_dram_bytes_per_sample,
    )
    rows = [
        ("as checked (FP16, efficiency.gemm 0.63)", {}),
        ("INT8 (the submission's precision)", {"dtype": "int8"}),
        ("efficiency.gemm x0.9 (0.567)", {"chip": eff(0.567)}),
        ("efficiency.gemm x1.1 (0.693)", {"chip": eff(0.693)}),
        ("efficiency.gemm 0.63 x 780/989 (500 W-cap basis)", {"chip": eff(0.63 * 780 / 989)}),
        ("launch 4 us -> 8 us", {"chip": dc.replace(h, launch_overhead_s=8e-6)}),
        (
            "embedding access_skew 0.86 -> 0 (uniform)",
            {"model": dc.replace(base, embedding_access_skew=0.0)},
        ),
        ("host CPU and DRAM per pair x2", {"model": host2}),
    ]
    print("H100 DLRM-v2 (published 63,769 Server / 74,457 Offline samples/s per GPU):")
    for label, kw in rows:
        s, o = dlrm_errors(cat, **kw)
        print(f"  {label:<50} Server {s:+6.1%}  Offline {o:+6.1%}")


def platform_runs(cat: Catalog) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, chip) -> (per-host items/s, replayed accelerator W) of the platform checks."""
    slo = ServiceSLO(latency_ns=round(PLATFORM_SLO_S * 1e9))
    out = {}
    for name in CHIP_CHECK_MODELS:
        for chip in ("mtia-2i", "mtia-1"):
            r = capacity(
                name, chip, slo, hosts=1, min_span_s=PLATFORM_SPAN_S, rel_tol=0.05, catalog=cat
            )
            out[name, chip] = (r.per_host, r.accelerator_power_w)
    return out


def ppw(cat: Catalog, runs: dict, over: dict[str, dict[str, float]]) -> float:
    """Platform perf/W ratio with `over` = {chip: {tdp_w|host_w: value}} replacing catalog
    values; each replay's accelerator utilization is kept."""
    ratios = []
    for name in CHIP_CHECK_MODELS:
        v = []
        for chip in ("mtia-2i", "mtia-1"):
            c, h = cat.chip(chip), host_of(cat, chip)
            n = h.accelerators
            thr, acc_w = runs[name, chip]
            util = (acc_w / n - c.idle_w) / (c.tdp_w - c.idle_w)
            o = {"tdp_w": c.tdp_w, "host_w": h.power_w, **over.get(chip, {})}
            v.append(thr / (n * (c.idle_w + (o["tdp_w"] - c.idle_w) * util) + o["host_w"]))
        ratios.append(v[0] / v[1])
    return geomean(ratios)


def print_platform(cat: Catalog) -> None:
    runs = platform_runs(cat)
    thr = geomean([runs[m, "mtia-2i"][0] / runs[m, "mtia-1"][0] for m in CHIP_CHECK_MODELS])
    base = ppw(cat, runs, {})
    print(f"platform throughput {thr:.3f} (6x: {thr / 6 - 1:+.1%}); perf/W {base:.3f}")
    rows = [
        ("Grand Teton host 1,100 W x0.7", {"mtia-2i": {"host_w": 770}}),
        ("Grand Teton host 1,100 W x1.3", {"mtia-2i": {"host_w": 1430}}),
        ("Yosemite host 350 W x0.7", {"mtia-1": {"host_w": 245}}),
        ("Yosemite host 350 W x1.3", {"mtia-1": {"host_w": 455}}),
        ("MTIA 1 TDP 25 W (2023 blog)", {"mtia-1": {"tdp_w": 25}}),
        ("MTIA 2i TDP 90 W (2024 blog, Hot Chips)", {"mtia-2i": {"tdp_w": 90}}),
        ("blog TDPs for both (25 W / 90 W)", {"mtia-1": {"tdp_w": 25}, "mtia-2i": {"tdp_w": 90}}),
        (
            "typical power when busy (25 W / 65 W)",
            {"mtia-1": {"tdp_w": 25}, "mtia-2i": {"tdp_w": 65}},
        ),
        ("accelerators only (no host power)", {"mtia-1": {"host_w": 0}, "mtia-2i": {"host_w": 0}}),
    ]
    for label, over in rows:
        r = ppw(cat, runs, over)
        print(f"  {label:<50} {r:.3f}  {r / base - 1:+6.1%}  vs 1.5x {r / 1.5 - 1:+6.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", action="store_true", help="also the platform perf/W rows")
    args = ap.parse_args()
    cat = load_catalog()
    print_chip(cat)
    print_dlrm(cat)
    if args.platform:
        print_platform(cat)


if __name__ == "__main__":
    main()
