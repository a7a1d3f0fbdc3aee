"""MoE cost terms (perf/moe.py): expert hits, all-to-all sizes, monotonicity, `ep` checks."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.moe import (
    all_to_all_bytes,
    expected_experts_hit,
    route_probabilities,
)
from mtia_cluster.perf.ops import ACT_BYTES
from mtia_cluster.workloads import LLMModel

CAT = load_catalog()
# (model, chip, tp, ep): every MoE model of the catalog, with and without expert parallelism
SYSTEMS = [
    ("mixtral-8x7b", "h100", 1, 1),
    ("mixtral-8x7b", "h100", 1, 2),
    ("mixtral-8x7b", "h100", 2, 4),
    ("deepseek-v3", "h200", 8, 1),
    ("deepseek-v3", "h200", 2, 4),
    ("deepseek-v3", "h200", 1, 8),
    ("llama-4-maverick", "h200", 4, 2),
]


def _moe(name: str, skew: float = 0.0, capacity: float | None = None) -> LLMModel:
    model = CAT.model(name)
    assert isinstance(model, LLMModel) and model.moe is not None
    moe = dataclasses.replace(model.moe, router_skew=skew, capacity_factor=capacity)
    return dataclasses.replace(model, moe=moe)


def _it(system, skew=0.0, capacity=None, chip=None):
    name, chip_name, tp, ep = system
    return llm_iteration_model(
        chip or CAT.chip(chip_name), _moe(name, skew, capacity), tp=tp, ep=ep, dtype="fp8"
    )


@settings(max_examples=40, deadline=None)
@given(
    system=st.sampled_from(SYSTEMS),
    t1=st.integers(0, 8192),
    t2=st.integers(0, 8192),
    decode_share=st.floats(0, 1),
    skew=st.sampled_from([0.0, 0.8, 2.0]),
    capacity=st.sampled_from([None, 1.0, 1.25]),
)
def test_more_tokens_never_faster(system, t1, t2, decode_share, skew, capacity):
    it = _it(system, skew, capacity)
    lo, hi = sorted((t1, t2))
    d_lo, d_hi = round(lo * decode_share), round(hi * decode_share)
    assert float(it.time_s(hi - d_hi, d_hi, 1000)) >= float(it.time_s(lo - d_lo, d_lo, 1000))


@settings(max_examples=30, deadline=None)
@given(
    system=st.sampled_from(SYSTEMS),
    tokens=st.integers(1, 4096),
    ctx=st.integers(0, 500_000),
    scale=st.floats(1.0, 4.0),
    skew=st.sampled_from([0.0, 1.0]),
)
def test_more_bandwidth_flops_or_links_never_slower(system, tokens, ctx, scale, skew):
    base = CAT.chip(system[1])
    faster = [
        dataclasses.replace(
            base,
            offchip=dataclasses.replace(
                base.offchip, bandwidth_bytes_per_s=base.offchip.bandwidth_bytes_per_s * scale
            ),
        ),
        dataclasses.replace(
            base, gemm_dense_flops={k: v * scale for k, v in base.gemm_dense_flops.items()}
        ),
        dataclasses.replace(
            base,
            scale_up_bytes_per_s=base.scale_up_bytes_per_s * scale,
            scale_out_bytes_per_s=base.scale_out_bytes_per_s * scale,
        ),
    ]
    pairs = ctx + tokens * tokens // 2
    t0 = float(_it(system, skew).time_s(tokens, 0, ctx, pairs))
    for chip in faster:
        assert float(_it(system, skew, chip=chip).time_s(tokens, 0, ctx, pairs)) <= t0 * (1 + 1e-12)


@pytest.mark.parametrize(("experts", "top_k"), [(4, 1), (4, 2), (5, 3), (6, 2)])
def test_expected_experts_hit_equals_brute_force(experts, top_k):
    """Every way n tokens can each pick top_k distinct experts, equally likely (uniform
    router): the mean number of distinct experts hit is what the closed form says."""
    choices = list(itertools.combinations(range(experts), top_k))
    for n in (1, 2, 3):
        hits = [len(set().union(*pick)) for pick in itertools.product(choices, repeat=n)]
        assert expected_experts_hit(n, experts, top_k)[0] == pytest.approx(np.mean(hits))


def test_expected_experts_hit_monte_carlo_large():
    rng = np.random.default_rng(5)
    experts, top_k, n = 256, 8, 40
    draws = [
        len(np.unique(np.concatenate([rng.permutation(experts)[:top_k] for _ in range(n)])))
        for _ in range(2000)
    ]
    assert expected_experts_hit(n, experts, top_k)[0] == pytest.approx(np.mean(draws), rel=0.01)


@given(
    experts=st.integers(1, 300),
    top_k=st.integers(1, 8),
    skew=st.floats(0.0, 3.0),
)
def test_route_probabilities_are_a_top_k_routing(experts, top_k, skew):
    top_k = min(top_k, experts)
    q = route_probabilities(experts, top_k, skew)
    assert q.sum() == pytest.approx(top_k)
    assert np.all((q >= 0) & (q <= 1 + 1e-12))
    assert np.all(np.diff(q) <= 1e-12)  # most popular first
    if skew == 0.0:
        assert np.allclose(q, top_k / experts)


@pytest.mark.parametrize("ep", [1, 2, 4, 8])
def test_all_to_all_bytes_are_the_tokens_routed_to_other_groups(ep):
    """A group's tokens x top_k copies, of which those bound for experts on other groups
    (expert e lives on group e % ep; uniform router) leave it: counted expert by expert."""
    experts, top_k, hidden, tokens = 64, 4, 1024, 3000.0
    q = route_probabilities(experts, top_k)
    own = tokens / ep
    for g in range(ep):
        away = sum(own * q[e] for e in range(experts) if e % ep != g)
        assert all_to_all_bytes(tokens, top_k, hidden, ep) == pytest.approx(
            away * hidden * ACT_BYTES
        )
        for tp in (2, 8):  # the group's tp chips each send their slice over their own link
            assert all_to_all_bytes(tokens, top_k, hidden, ep, tp) == pytest.approx(
                away * hidden * ACT_BYTES / tp
            )


def test_expert_parallelism_shares_the_expert_weights():
    """ep groups hold the non-expert weights each and the experts once, so KV room shrinks
    with ep at a fixed replica size."""
    its = [_it(("deepseek-v3", "h200", 8 // ep, ep)) for ep in (1, 2, 8)]
    caps = [it.kv_capacity_tokens for it in its]
    assert caps == sorted(caps, reverse=True)
    weights = [it.weight_bytes for it in its]
    assert weights == sorted(weights)


def test_router_skew_loads_one_group_but_hits_fewer_experts():
    """A skewed router makes the busiest EP group slower when compute-bound (many tokens),
    and reads fewer distinct experts' weights when memory-bound (few tokens)."""
    uniform = _it(("deepseek-v3", "h200", 1, 8))
    skewed = _it(("deepseek-v3", "h200", 1, 8), skew=1.0)
    t = np.array([64.0, 8192.0])
    fast_few, slow_many = uniform.time_s(t, 0, t), skewed.time_s(t, 0, t)
    assert slow_many[1] > fast_few[1]
    assert slow_many[0] < fast_few[0]
    assert expected_experts_hit(64, 256, 8, 1.0)[0] < expected_experts_hit(64, 256, 8)[0]


@pytest.mark.parametrize(
    ("model", "tp", "ep", "needle"),
    [
        ("llama-2-70b", 2, 2, "no experts"),
        ("mixtral-8x7b", 1, 3, "must divide"),
        ("deepseek-v3", 1, 0, "must be >= 1"),
    ],
)
def test_iteration_model_refuses_bad_ep(model, tp, ep, needle):
    with pytest.raises(UserError, match=needle):
        llm_iteration_model(CAT.chip("h200"), CAT.model(model), tp=tp, ep=ep)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "pool", "needle"),
    [
        ("mixtral-8x7b", "ep: 3\n        tp: 1\n        accelerators_per_replica: 3", "experts"),
        ("llama-2-7b", "ep: 2\n        accelerators_per_replica: 2", "no experts"),
        ("mixtral-8x7b", "ep: 2\n        tp: 2\n        accelerators_per_replica: 2", "tp x ep"),
        ("mixtral-8x7b", "ep: two", "ep"),
        ("mixtral-8x7b", "capacity_policy: greedy", "capacity_policy"),
        ("mixtral-8x7b", "max_tokens: 0", "max_tokens"),
    ],
)
def test_bad_ep_in_a_scenario_exits_2_with_one_line(tmp_path: Path, model, pool, needle):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "name: s\nregions:\n  - name: r\n    pools:\n      - service: chat\n"
        f"        model: {model}\n        platform: hgx-h100\n        accelerators: 8\n"
        f"        {pool}\n"
    )
    trace = tmp_path / "t.parquet"
    trace.write_bytes(b"")  # the scenario is refused before the trace is read
    res = CliRunner().invoke(cli, ["simulate", str(cfg), "--trace", str(trace)])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0] and "s.yaml" in lines[0], res.output
