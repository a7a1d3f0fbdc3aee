"""The README's main job runs and answers for every chip and workload it lists."""

from __future__ import annotations

import json

from mtia_cluster.cli.estimate_table import DEMO_CHIPS, DEMO_RR
from mtia_cluster.cli.main import cli


def test_demo_estimate_covers_every_chip_and_rr_workload(runner):
    res = runner.invoke(cli, ["demo", "--estimate", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    pairs = {(r["workload"], r["chip"]) for r in rows}
    assert {(w, c) for w in DEMO_RR for c in DEMO_CHIPS} <= pairs
    for r in rows:
        assert r["throughput_per_s"] > 0 and r["power_w"] > 0
        assert r["per_watt"] == r["throughput_per_s"] / r["power_w"]
    # The published qualitative fact: MTIA 2i cannot meet LLM decode latency (LPDDR-bound).
    mtia_llm = [r for r in rows if r["chip"] == "mtia-2i" and "llama" in r["workload"]]
    assert mtia_llm and all(r["bound"] == "lpddr" for r in mtia_llm)
