"""The R&R best-throughput estimator and the DLRM-v2 checks' batch caps (issue #12)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.perf.estimators import rr_best_throughput
from mtia_cluster.perf.validation import (
    DLRM_OFFLINE_BATCH,
    check_h100_dlrm_offline,
    check_h100_dlrm_server,
)

CAT = load_catalog()
RR_MODELS = sorted(n for n, m in CAT.models.items() if m.kind == "rr")


@settings(max_examples=40, deadline=None)
@given(
    chip=st.sampled_from(["h100", "mtia-2i", "mtia-1"]),
    model=st.sampled_from(RR_MODELS),
    c1=st.integers(1, 1 << 20),
    c2=st.integers(1, 1 << 20),
)
def test_a_larger_batch_cap_never_lowers_the_best_throughput(chip, model, c1, c2):
    """The best over a superset of batch sizes is at least the best over the subset (the
    powers of two below a cap are shared; each cap adds itself)."""
    lo, hi = sorted((c1, c2))
    hi_sizes_cover_lo = lo == hi or lo == 2 ** int(math.log2(lo))
    a = rr_best_throughput(CAT.chip(chip), CAT.model(model), None, max_batch=lo)
    b = rr_best_throughput(CAT.chip(chip), CAT.model(model), None, max_batch=hi)
    if hi_sizes_cover_lo:
        assert b.items_per_s_per_chip >= a.items_per_s_per_chip * (1 - 1e-12)
    assert a.batch <= lo and b.batch <= hi


def test_default_cap_is_the_model_file_max_batch():
    model = CAT.model("dlrm-dcnv2")
    best = rr_best_throughput(CAT.chip("h100"), model, None)
    assert best.batch <= model.max_batch
    assert best == rr_best_throughput(CAT.chip("h100"), model, None, max_batch=model.max_batch)


def test_dlrm_offline_uses_its_own_larger_batch_and_is_not_below_server():
    """MLPerf Offline batches 600,000 pairs per GPU, Server 51,200 (NVIDIA's configs): the
    Offline estimate may use the larger batch and can never fall below the Server one."""
    server, offline = check_h100_dlrm_server(CAT), check_h100_dlrm_offline(CAT)
    assert CAT.model("dlrm-dcnv2").max_batch < DLRM_OFFLINE_BATCH
    assert offline.simulated >= server.simulated
    assert f"{DLRM_OFFLINE_BATCH:,}" in offline.method
    assert f"{CAT.model('dlrm-dcnv2').max_batch:,}" in server.method
