"""The typed config models: one source for enums, catalog files checked, one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner

from mtia_cluster.catalog import DTYPE_BYTES, load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config.models import Dtype, RouterPolicy
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.engine.kv_router import AFFINITY_POLICIES
from mtia_cluster.engine.router import POLICIES, POLICY_FUNCTIONS
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
MULTI = ROOT / "configs" / "scenarios" / "multi-region.yaml"


def test_router_policies_and_dtypes_are_defined_once() -> None:
    assert get_args(RouterPolicy) == POLICIES
    assert set(POLICY_FUNCTIONS) | set(AFFINITY_POLICIES) == set(POLICIES)
    assert set(get_args(Dtype)) == set(DTYPE_BYTES)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            ("chips/h100.yaml", "  tdp_w:", "  tdp:"),
            "h100.yaml: power.tdp: unknown key (did you mean 'tdp_w'?)",
        ),
        (
            ("chips/h100.yaml", "vendor:", "vendr:"),
            "h100.yaml: vendr: unknown key (did you mean 'vendor'?)",
        ),
        (("hosts/hgx-8gpu.yaml", "sockets:", "socket:"), "hgx-8gpu.yaml: socket: unknown key"),
        (
            ("platforms/hgx-h100.yaml", "hosts: 1", "hosts: one"),
            "hgx-h100.yaml: hosts: expected an integer",
        ),
        (
            ("../models/llama-3.1-8b.yaml", "kv_heads:", "kv_head:"),
            "llama-3.1-8b.yaml: kv_head: unknown key (did you mean 'kv_heads'?)",
        ),
        (
            ("../models/hc1.yaml", "embedding:", "embeding:"),
            "hc1.yaml: embeding: unknown key (did you mean 'embedding'?)",
        ),
        (
            ("op_models/nvidia-gpu.yaml", "  data_sha256:", "  data_sha:"),
            "nvidia-gpu.yaml: fitted_on.data_sha: unknown key (did you mean 'data_sha256'?)",
        ),
        (
            ("op_models/mtia.yaml", "  emb:", "  embb:"),
            "mtia.yaml: elementwise.embb: unknown key (did you mean 'emb'?)",
        ),
        (
            ("op_models/nvidia-gpu.yaml", "collectives_by_interconnect:", "collectives_by_ic:"),
            "nvidia-gpu.yaml: collectives_by_ic: unknown key",
        ),
        # Range and provenance rules the types cannot express: still one line, file and field.
        (
            ("op_models/nvidia-gpu.yaml", "source: fit_h100", "source: fit_h200"),
            "nvidia-gpu.yaml: collectives_by_interconnect.nvlink4-nvswitch.all_reduce.scale_up"
            ".latency_us.source: unknown source key",
        ),
        (
            ("op_models/mtia.yaml", "overlap_p: {value: 3.0", "overlap_p: {value: 0.5"),
            "mtia.yaml: gemm.overlap_p.value: must be >= 1 (got 0.5)",
        ),
        (
            (
                "chips/h100.yaml",
                "idle_w: {value: 75, status: estimated, note:",
                "idle_w: {value: 75, status: estimated, source:",
            ),
            "h100.yaml: power.idle_w.note: an estimated number needs its reasoning",
        ),
        (
            ("hosts/hgx-8gpu.yaml", "sockets: {value: 2", "sockets: {value: 0"),
            "hgx-8gpu.yaml: sockets.value: must be > 0 (got 0)",
        ),
        (
            ("../models/svc-lognormal-1ms.yaml", "cv: 1.5", "cv: null"),
            "svc-lognormal-1ms.yaml: cv: missing required field",
        ),
    ],
)
def test_catalog_files_refuse_unknown_keys(tmp_path: Path, edit, needle: str) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    rel, old, new = edit
    path = tmp_path / "configs" / "catalog" / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(UserError) as err:
        load_catalog(tmp_path / "configs")
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["regions.0.pools.0.tp=2"], "regions[0].pools[0].tp: not a key of pool kind 'rr'"),
        (
            ["regions.0.pools.1.batching={max_items: 8}"],
            "pools[1].batching: not a key of pool kind 'llm'",
        ),
        (
            ["router.policy=p2"],
            "router.policy: must be one of least_outstanding, p2c, prefix_affinity, random, "
            "round_robin, session_affinity, weighted (did you mean 'p2c'?) (got 'p2')",
        ),
        (["regions.0.pools.1.dtype=fp9"], "pools[1].dtype: must be one of"),
        (["regions.0.pools.1.tp=16"], "pools[1].accelerators_per_replica: must divide"),
        (["regions.0.pools.1.tp=3"], "pools[1].tp: must divide llama-3.1-8b's 32 attention heads"),
        (
            [
                "regions.0.pools.1.disaggregation={prefill_accelerators: 1}",
                "regions.0.pools.1.accelerators_per_replica=2",
            ],
            "pools[1].tp: does not apply to a disaggregated replica",
        ),
        (["regions.0.pools.0.model=hc9"], "pools[0].model: unknown model (did you mean"),
        (
            ["events=[{at_s: 1, kind: fail, region: us-east, accelerators: [3]}]"],
            "events[0].accelerators: unknown key",
        ),
        (
            ["events=[{at_s: 1, kind: fail, region: us-east, service: rr-rankin}]"],
            "events[0].service: unknown service (did you mean 'rr-ranking'?)",
        ),
        (["slo.llm-chat={ttft_p99_ms: -1}"], "slo.llm-chat.ttft_p99_ms: must be > 0"),
        (["seed=1.5"], "seed: expected an integer (got 1.5)"),
        (["report_interval_ms='5'"], "report_interval_ms: expected a number (got '5')"),
    ],
)
def test_scenario_errors_are_one_line_with_path(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError) as err:
        load_scenario(MULTI, overrides)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_trace_generate_set_path_is_checked(tmp_path: Path) -> None:
    spec = ROOT / "configs" / "traces" / "demo.yaml"
    out = tmp_path / "t.parquet"
    r = CliRunner().invoke(
        cli,
        ["trace", "generate", "--spec", str(spec), "--set", "router.policy=p2c", "-o", str(out)],
    )
    assert r.exit_code == 2 and "--set: unknown path 'router'" in r.output, r.output
    assert not out.exists()
