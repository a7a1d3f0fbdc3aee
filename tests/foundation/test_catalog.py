"""The catalog: every chip present, every number sourced, platforms composed as published."""

from __future__ import annotations

import pytest

from mtia_cluster.catalog import load_catalog
from mtia_cluster.catalog.quantity import STATUSES

REQUIRED_CHIPS = {
    "mtia-1",
    "mtia-2i",
    "mtia-300",
    "mtia-400",
    "mtia-450",
    "mtia-500",
    "h100",
    "h200",
    "b200",
    "gb200",
    "mi300x",
    "mi355x",
}


def test_all_required_chips_present():
    assert set(load_catalog().chips) >= REQUIRED_CHIPS


@pytest.mark.parametrize("name", sorted(REQUIRED_CHIPS))
def test_every_chip_number_has_provenance(name):
    chip = load_catalog().chip(name)
    assert chip.provenance, "no sourced numbers recorded"
    for path, p in chip.provenance.items():
        assert p.status in STATUSES, path
        if p.status == "estimated":
            assert len(p.note) > 10, f"{path}: an estimate needs its reasoning"
        else:
            assert p.source, f"{path}: a {p.status} number needs a source"
    for key in (
        "memory.sram.capacity_mb",
        "memory.offchip.bandwidth_gb_s",
        "power.tdp_w",
        "power.idle_w",
        "host_link.bandwidth_gb_s",
        "network.scale_up_gb_s",
        "efficiency.gemm",
    ):
        assert key in chip.provenance, key


def test_published_mtia_numbers_match_facts():
    cat = load_catalog()
    m2 = cat.chip("mtia-2i")
    assert m2.gemm_dense_flops["int8"] == pytest.approx(354e12)
    assert m2.sram.capacity_bytes == pytest.approx(256e6)
    assert m2.offchip.bandwidth_bytes_per_s == pytest.approx(204.8e9)
    assert m2.host_link_bytes_per_s == pytest.approx(32e9)
    m1 = cat.chip("mtia-1")
    assert m1.gemm_dense_flops["fp16"] == pytest.approx(51.2e12)
    assert "bf16" not in m1.gemm_dense_flops  # MTIA 1 has FP16 only
    # Inherited files override just what differs: MTIA 500 keeps MTIA 400's scale-up domain.
    m5 = cat.chip("mtia-500")
    assert m5.scale_up_domain == 72 and m5.offchip.bandwidth_bytes_per_s == pytest.approx(27.6e12)
    assert "clock_mhz" not in m5.provenance  # removed with null: not published for 500


def test_platform_composition():
    cat = load_catalog()
    rack = cat.platform("mtia-2i-rack")
    assert (rack.hosts, rack.accelerators_per_host, rack.accelerators) == (3, 24, 72)
    for g in ("400", "450", "500"):
        assert cat.platform(f"mtia-{g}-rack").accelerators == 72
    assert cat.platform("gb200-nvl72").accelerators == 72
    assert cat.platform("mtia-1-server").accelerators == 12
    assert cat.platform("hgx-h100").accelerators == 8
    # A platform's host must have room for its accelerators.
    for p in cat.platforms.values():
        assert cat.host(p.host).accelerators == p.accelerators_per_host, p.name


def test_grand_teton_per_accelerator_share():
    host = load_catalog().host("grand-teton-mtia2i")
    assert host.cores_per_accelerator == 8  # published: 8 cores per accelerator
    assert host.dram_bandwidth_per_accelerator == pytest.approx(38e9, rel=0.02)  # 38 GB/s
    assert host.nic_bytes_per_s_per_socket / 12 == pytest.approx(4.17e9, rel=0.01)


@pytest.mark.parametrize(
    ("name", "kv_bytes"),
    [
        ("llama-3.1-8b", 131072),
        ("llama-3.1-70b", 327680),
        ("llama-3.1-405b", 516096),
        ("llama-2-70b", 327680),
        ("mixtral-8x7b", 131072),
        ("llama-4-maverick", 196608),
        ("deepseek-v3", 70272),
    ],
)
def test_kv_bytes_per_token_matches_facts(name, kv_bytes):
    assert load_catalog().model(name).kv_bytes_per_token == kv_bytes


@pytest.mark.parametrize(
    "name",
    [
        "llama-2-7b",
        "llama-2-70b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "llama-3.1-405b",
        "mixtral-8x7b",
        "llama-4-maverick",
        "deepseek-v3",
    ],
)
def test_parameter_counts_from_dimensions_match_published(name):
    m = load_catalog().model(name)
    assert m.params == pytest.approx(m.published_params, rel=0.02)
    if m.published_active_params:
        assert m.active_params == pytest.approx(m.published_active_params, rel=0.03)


def test_model_kinds():
    kinds = {m.kind for m in load_catalog().models.values()}
    assert kinds == {"rr", "llm", "synthetic"}
    rr = {n for n, m in load_catalog().models.items() if m.kind == "rr"}
    assert {
        "lc1",
        "lc2",
        "lc3",
        "lc4",
        "lc5",
        "hc1",
        "hc2",
        "hc3",
        "hc4",
        "dlrm-dcnv2",
        "rmc1",
        "rmc2",
        "rmc3",
    } <= rr
