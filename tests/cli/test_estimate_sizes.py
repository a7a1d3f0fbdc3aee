"""`estimate` refuses an LLM batch whose KV cache cannot fit beside the weights (batch x
context tokens above the replica's `kv_capacity_tokens`): one line naming the option and
value, exit 2, instead of a latency for an impossible batch (`--batch 64 --context 10**11`
on 2 x H100 printed 375,444 s)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli

BASE = ["estimate", "--chip", "h100", "--model", "llama-2-70b", "--tp", "2"]


def _capacity(runner: CliRunner) -> int:
    res = runner.invoke(cli, [*BASE, "--batch", "1", "--context", "1", "--json"])
    assert res.exit_code == 0, res.output
    return int(json.loads(res.output)["kv_capacity_tokens"])


@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_kv_at_capacity_runs_and_one_token_more_is_refused(phase: str) -> None:
    runner = CliRunner()
    cap = _capacity(runner)
    assert cap > 1
    fits = runner.invoke(cli, [*BASE, "--phase", phase, "--batch", "1", "--context", str(cap)])
    assert fits.exit_code == 0, fits.output
    over = runner.invoke(cli, [*BASE, "--phase", phase, "--batch", "1", "--context", str(cap + 1)])
    assert over.exit_code == 2, over.output
    line = over.output.strip()
    assert "\n" not in line and line.startswith("error: --context: "), line
    assert f"{cap + 1:,}" in line and f"{cap:,}" in line and "2 x h100" in line, line


def test_the_issue_example_is_refused() -> None:
    res = CliRunner().invoke(
        cli, [*BASE, "--phase", "decode", "--batch", "64", "--context", str(10**11)]
    )
    assert res.exit_code == 2 and "(got 100000000000)" in res.output, res.output
    assert "latency" not in res.output
