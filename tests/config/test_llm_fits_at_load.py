"""A model whose weights do not fit an LLM replica's (or a disaggregated instance's) memory,
or a tp beyond the chip's scale-up domain, is refused when the scenario is loaded, naming
the file and the pool's field; it was refused later, when cells were built, as a bare
`error: tp: llama-3.1-405b (812 GB at bf16) does not fit in 1 x h100 ...` (no file, no pool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "configs" / "scenarios"
POOL = "regions[0].pools[0]"


@pytest.mark.parametrize(
    ("scenario", "overrides", "field", "needle"),
    [
        ("llm-small", ["model=llama-3.1-405b"], "tp", "does not fit in 1 x h100"),
        (
            "llm-pd-pools",
            ["model=llama-3.1-405b"],
            "disaggregation.prefill.tp",
            "does not fit in 2 x h100",
        ),
        (
            "llm-small",
            ["accelerators=16", "tp=16"],
            "tp",
            "exceeds h100's scale-up domain (8)",
        ),
    ],
)
def test_refused_at_load_naming_file_and_pool_field(
    scenario: str, overrides: list[str], field: str, needle: str
) -> None:
    path = SCENARIOS / f"{scenario}.yaml"
    with pytest.raises(UserError) as err:
        load_scenario(path, [f"regions.0.pools.0.{o}" for o in overrides])
    text = str(err.value)
    assert text.startswith(f"{path}: {POOL}.{field}: "), text
    assert needle in text and "\n" not in text, text


def test_a_model_that_fits_loads() -> None:
    sc = load_scenario(SCENARIOS / "llm-small.yaml", ["regions.0.pools.0.model=llama-3.1-8b"])
    assert sc.regions[0].pools[0].llm is not None
