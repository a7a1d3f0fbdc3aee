"""Tensor parallelism must shard a model's attention heads evenly (as vLLM requires): a
scenario with `tp: 3` for a 32-head model is one line naming the file, field and value, exit
2, before any work; the cost model refuses it too, so `capacity` and `plan` never pick it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.errors import UserError
from mtia_cluster.perf.llm import check_tp, llm_iteration_model
from mtia_cluster.planning.capacity import replica_tp

ROOT = Path(__file__).resolve().parents[2]
CAT = load_catalog()


@pytest.mark.parametrize(
    ("model", "tp", "refused"),
    [
        ("llama-3.1-8b", 3, "32 attention heads"),  # 32 heads, 8 KV heads
        ("llama-3.1-8b", 16, None),  # KV heads replicated twice
        ("llama-3.1-8b", 4, None),
        ("llama-4-maverick", 16, "40 attention heads"),
        ("llama-4-maverick", 8, None),
        ("llama-2-7b", 64, "32 attention heads"),
    ],
)
def test_check_tp(model: str, tp: int, refused: str | None) -> None:
    why = check_tp(CAT.model(model), tp)
    assert (why is None) == (refused is None)
    if refused is not None:
        assert why is not None and refused in why


def test_the_cost_model_refuses_a_tp_that_splits_a_head() -> None:
    with pytest.raises(UserError) as err:
        llm_iteration_model(CAT.chip("h100"), CAT.model("llama-3.1-8b"), tp=3)
    assert err.value.field == "tp" and err.value.value == 3


def test_capacity_picks_only_tps_that_shard_the_heads() -> None:
    for model in CAT.models.values():
        if model.kind != "llm":
            continue
        for platform in ("hgx-h100", "mtia-2i-rack"):
            try:
                tp = replica_tp(CAT, model, platform)
            except UserError:
                continue  # fits no replica of that platform
            assert check_tp(model, tp) is None, (model.name, platform, tp)


def test_scenario_tp_3_is_one_line_exit_2(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "configs/scenarios/multi-region.yaml").read_text())
    pool = doc["regions"][0]["pools"][1]
    pool.pop("hosts")
    pool.update(tp=3, accelerators_per_replica=3, accelerators=6)
    path = tmp_path / "tp3.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["simulate", str(path), "--trace", "x.parquet", "-o", str(out)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1
    assert "tp3.yaml" in lines[0] and "pools[1].tp" in lines[0] and "(got 3)" in lines[0]
    assert not out.exists()
