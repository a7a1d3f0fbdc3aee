"""`analyze` on an LLM run: the LLM serving table (console) is its --json `llm_serving`, and
both are summary.json's figures (issue #15 item 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner

from mtia_cluster import fmt
from mtia_cluster.cli.main import cli
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.traces.io import write_trace

SCENARIO: dict[str, Any] = {
    "name": "llm-serving",
    "seed": 1,
    "report_interval_ms": 5,
    "metrics_interval_ms": 2000,
    "router": {"policy": "least_outstanding"},
    "regions": [
        {
            "name": "r1",
            "pools": [
                {"service": "chat", "model": "llama-2-7b", "platform": "hgx-h100",
                 "accelerators": 4, "accelerators_per_replica": 2,
                 "disaggregation": {"prefill_accelerators": 1}},
                {"service": "qa", "model": "llama-2-7b", "platform": "hgx-h100",
                 "accelerators": 1, "max_num_seqs": 64},
            ],
        }
    ],
}  # fmt: skip


def trace(n: int = 240) -> pa.Table:
    """A burst of long requests over 3 s for two services (preemptions on the small one)."""
    rng = entity_rng(5, 3)
    return pa.table(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "arrival_ns": np.sort(rng.integers(0, 3 * 10**9, n)).astype(np.int64),
            "service": pa.array(rng.choice(["chat", "qa"], n)).dictionary_encode(),
            "items": np.zeros(n, dtype=np.int32),
            "input_tokens": rng.integers(300, 3000, n).astype(np.int32),
            "output_tokens": rng.integers(50, 900, n).astype(np.int32),
        }
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("llm")
    config = tmp / "s.yaml"
    config.write_text(yaml.safe_dump(SCENARIO))
    path = write_trace(trace(), tmp / "t.parquet", {"source": "test"})
    out = tmp / "out"
    args = ["simulate", str(config), "--trace", str(path), "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def _cell(v: Any) -> str:
    return fmt.number(v)


def test_console_table_is_the_json_and_summary_json(runner: CliRunner, run: Path) -> None:
    doc = json.loads(runner.invoke(cli, ["analyze", str(run), "--json"]).stdout)
    serving = doc["llm_serving"]
    summary = json.loads((run / "summary.json").read_text())
    assert serving["replicas"] == summary["llm_replicas"]
    for s in serving["services"]:
        (fleet,) = [g for g in summary["services"] if g["service"] == s["service"]]
        assert {k: v for k, v in s.items() if k not in ("region", "service")} == fleet[
            "llm_serving"
        ]
    text = runner.invoke(cli, ["analyze", str(run)]).stdout.splitlines()
    start = text.index("LLM serving (per service, then per replica)")
    table = text[start + 3 :]
    end = next((i for i, ln in enumerate(table) if not ln.strip()), len(table))
    body = [ln.split() for ln in table[:end]]  # the table ends at its first blank line
    body = [r for r in body if not r[0].startswith("INVALID")]
    rows = [*serving["services"], *serving["replicas"]]
    assert len(body) == len(rows) == 2 + 5  # 2 services; 2 cells x 2 instances + 1 replica
    for line, r in zip(body, rows, strict=True):
        expected = [
            r["service"],
            r["region"],
            str(r.get("accelerator_id", "*")),
            *(_cell(fmt.pct(r[k])) for k in ("kv_utilization_mean", "kv_utilization_peak")),
            _cell(fmt.pct(r["prefix_lookup_hit_rate"])),
            str(r["preemptions"]),
            str(r["kv_transfers"]),
        ]
        assert line == expected


def test_rows_carry_the_groups_llm_serving_and_counts_add_up(runner: CliRunner, run: Path) -> None:
    doc = json.loads(runner.invoke(cli, ["analyze", str(run), "--json"]).stdout)
    summary = json.loads((run / "summary.json").read_text())
    rows = {(r["region"], r["service"]): r for r in doc["rows"] if r["level"] == "region,service"}
    for g in summary["groups"]:
        assert rows[(g["region"], g["service"])]["llm_serving"] == g["llm_serving"]
        assert g["llm_serving"]["preemptions"] == g["preemptions"]  # replicas = requests
    chat = next(g for g in summary["groups"] if g["service"] == "chat")["llm_serving"]
    assert chat["kv_transfers"] > 0 and chat["kv_transfer_bytes"] > 0
    qa = next(g for g in summary["groups"] if g["service"] == "qa")["llm_serving"]
    assert qa["kv_transfers"] == 0 and qa["replicas"] == 1
