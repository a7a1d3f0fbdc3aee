"""An LLM pool's `max_num_batched_tokens` is bounded by the `tokens_per_request` limit, as a
pool's `batching.max_items` is by `items_per_request`: the iteration cost table has
`max_num_batched_tokens + 1` entries, so 10**11 was a 745 GiB MemoryError traceback after the
scenario had been accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli
from mtia_cluster.config.limits import Limits
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.config.scenario_limits import check_scenario
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
LLM_SMALL = ROOT / "configs" / "scenarios" / "llm-small.yaml"
FIELD = "regions.0.pools.0.max_num_batched_tokens"


def test_the_budget_at_the_limit_passes_and_one_more_is_refused() -> None:
    at = load_scenario(LLM_SMALL, [f"{FIELD}=4096"])
    check_scenario(at, Limits(tokens_per_request=4096))
    over = load_scenario(LLM_SMALL, [f"{FIELD}=4097"])
    with pytest.raises(UserError) as err:
        check_scenario(over, Limits(tokens_per_request=4096))
    text = str(err.value)
    assert "regions[0].pools[0].max_num_batched_tokens: max_num_batched_tokens 4,097" in text
    assert "tokens_per_request=4,096" in text and "\n" not in text


def test_simulate_refuses_10_to_the_11_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    never = str(tmp_path / "never-read.parquet")
    args = ["simulate", str(LLM_SMALL), "--trace", never, "--set", f"{FIELD}=100000000000"]
    res = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "exceeds the limit tokens_per_request=10,000,000" in res.output, res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
