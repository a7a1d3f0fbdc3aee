"""The bases the MTIA / DLRM-v2 checks rest on (docs/validation.md, "MTIA and DLRM-v2
checks: audit"): dense peaks only, TDP-based power, cited check models, compute-bound
ratios that are the dense-peak ratio, and host power counted once in perf/W."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtia_cluster.catalog import load_catalog
from mtia_cluster.perf import rr_batch_cost
from mtia_cluster.perf.validation import CHIP_CHECK_MODELS
from mtia_cluster.planning.capacity import capacity
from mtia_cluster.slo import ServiceSLO

CAT = load_catalog()
BATCHES = np.array([1, 64, 2048])


@pytest.mark.parametrize("chip", ["mtia-1", "mtia-2i", "h100"])
@pytest.mark.parametrize("model", ["lc1", "hc3", "dlrm-dcnv2"])
def test_rr_cost_never_reads_the_sparse_peaks(chip, model):
    c = CAT.chip(chip)
    wild = dataclasses.replace(
        c, gemm_sparse_flops={d: 10.0 * v for d, v in c.gemm_dense_flops.items()}
    )
    a = rr_batch_cost(c, CAT.model(model), BATCHES)
    b = rr_batch_cost(wild, CAT.model(model), BATCHES)
    np.testing.assert_array_equal(a.compute_s, b.compute_s)
    np.testing.assert_array_equal(a.throughput_per_s, b.throughput_per_s)


@pytest.mark.parametrize("chip", ["mtia-1", "mtia-2i"])
def test_rr_power_is_tdp_at_full_use_and_ignores_typical(chip):
    c = CAT.chip(chip)
    other = dataclasses.replace(c, typical_w=(c.idle_w + c.tdp_w) / 2)
    a = rr_batch_cost(c, CAT.model("hc3"), BATCHES)
    b = rr_batch_cost(other, CAT.model("hc3"), BATCHES)
    np.testing.assert_array_equal(a.power_w, b.power_w)
    assert c.power_w(1.0) == pytest.approx(c.tdp_w)


@pytest.mark.parametrize("name", CHIP_CHECK_MODELS)
def test_chip_check_models_have_the_published_complexity(name):
    prov = CAT.model(name).provenance["dense_mflop_per_sample"]
    assert prov.status == "published" and "ISCA" in prov.source


@pytest.mark.parametrize("name", ["hc1", "hc3"])
def test_compute_bound_ratio_is_the_dense_peak_ratio(name):
    """Without launches or a host, a model compute-bound on both chips runs at the ratio
    of dense peak x GEMM efficiency: the basis of the chip check's ~3.45x."""
    model = CAT.model(name)
    new, old = (
        dataclasses.replace(CAT.chip(c), launch_overhead_s=0.0) for c in ("mtia-2i", "mtia-1")
    )
    a, b = (rr_batch_cost(c, model, [2048]) for c in (new, old))
    assert a.bound[0] == b.bound[0] == "compute"
    peak = [c.gemm_peak(model.dtype) * c.efficiency.gemm for c in (new, old)]
    ratio = float(a.throughput_per_s[0] / b.throughput_per_s[0])
    assert ratio == pytest.approx(peak[0] / peak[1], rel=1e-9)


def test_platform_perf_per_w_counts_host_power_once():
    """The replayed accelerator power holds no host share (it stays within the chips' TDP),
    and perf/W adds the host's non-accelerator power exactly once."""
    res = capacity(
        "hc3", "mtia-1", ServiceSLO(latency_ns=100_000_000), hosts=1, rel_tol=0.1, min_span_s=0.5
    )
    chip, host = CAT.chip("mtia-1"), CAT.host("yosemite-v3-mtia1")
    assert res.accelerators * chip.idle_w <= res.accelerator_power_w
    assert res.accelerator_power_w <= res.accelerators * chip.tdp_w * (1 + 1e-9)
    assert res.host_power_w == pytest.approx(host.power_w)
    total = res.accelerator_power_w + res.host_power_w
    assert res.perf_per_w == pytest.approx(res.work_per_s / total)
