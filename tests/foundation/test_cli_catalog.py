"""`chips`, `models`, `estimate` through click's runner, including bad input."""
# ruff: noqa: E501  (the parametrized cases quote catalog lines verbatim)

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtia_cluster.catalog.loader import _load
from mtia_cluster.cli.main import cli
from mtia_cluster.paths import configs_dir

from .test_catalog import REQUIRED_CHIPS


def test_chips_json_lists_all(runner):
    res = runner.invoke(cli, ["chips", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert {r["name"] for r in rows} >= REQUIRED_CHIPS
    assert all(r["provenance"] for r in rows)


def test_models_json_kinds(runner):
    rows = json.loads(runner.invoke(cli, ["models", "--json"]).output)
    assert rows and all(r["kind"] in {"rr", "llm", "synthetic"} and r["name"] for r in rows)


def test_estimate_rr_json(runner):
    res = runner.invoke(
        cli, ["estimate", "--chip", "mtia-2i", "--model", "lc1", "--batch", "1024", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("latency_s", "throughput_per_s", "bound", "power_w", "energy_per_sample_j"):
        assert key in out
    assert out["throughput_per_s"] * out["energy_per_sample_j"] == pytest.approx(
        out["power_w"], rel=1e-9
    )


def test_estimate_llm_prefill_vs_decode(runner):
    args = [
        "estimate",
        "--chip",
        "h100",
        "--model",
        "llama-3.1-8b",
        "--batch",
        "8",
        "--context",
        "2048",
        "--json",
    ]
    pre = json.loads(runner.invoke(cli, [*args, "--phase", "prefill"]).output)
    dec = json.loads(runner.invoke(cli, [*args, "--phase", "decode"]).output)
    assert pre["bound"] == "compute" and dec["bound"] == "hbm"
    assert pre["throughput_per_s"] > dec["throughput_per_s"]
    assert "energy_per_token_j" in dec


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--chip", "nope", "--model", "lc1"], "unknown chip"),
        (["--chip", "h100", "--model", "nope"], "unknown model"),
        (["--chip", "mtia-1", "--model", "lc1", "--dtype", "bf16"], "mtia-1.yaml"),
        (["--chip", "h100", "--model", "llama-3.1-405b"], "does not fit"),
        (["--chip", "h100", "--model", "svc-exp-1ms"], "synthetic"),
    ],
)
def test_estimate_bad_input_exits_2_with_one_line(runner, args, needle):
    res = runner.invoke(cli, ["estimate", *args])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        (
            "    capacity_mb: {value: 256, status: published, source: isca25}",
            "    capacity_mb: {value: -256, status: published, source: isca25}",
            "must be > 0",
        ),
        (
            '  tdp_w: {value: 85, status: published, source: isca25, note: "2024 blog / Hot Chips say '
            '90 W; paper value used"}',
            "",
            "power.tdp_w: missing required field",
        ),
        (
            'clock_mhz: {value: 1350, status: published, source: isca25, note: "design spec 1100 MHz, '
            'raised fleet-wide (§5.2)"}',
            "clock_mhz: {value: 1350, status: rumour, source: isca25}",
            "must be one of",
        ),
    ],
)
def test_broken_catalog_entry_names_file_and_field(
    runner, tmp_path, monkeypatch, field, value, needle
):
    root = tmp_path / "configs"
    shutil.copytree(configs_dir(), root)
    chip_file = root / "catalog" / "chips" / "mtia-2i.yaml"
    text = chip_file.read_text()
    assert field in text
    chip_file.write_text(text.replace(field, value))
    monkeypatch.setenv("MTIA_CLUSTER_CONFIGS", str(root))
    _load.cache_clear()
    try:
        res = runner.invoke(cli, ["chips"])
    finally:
        _load.cache_clear()
    assert res.exit_code == 2, res.output
    assert str(Path("chips") / "mtia-2i.yaml") in res.output and needle in res.output
    assert len(res.output.strip().splitlines()) == 1
