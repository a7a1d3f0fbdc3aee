"""Cross-field checks of a trace mix spec: one UserError naming file and field, before any draw.

The generators read the typed models of config/trace_spec.py; what a model cannot see one
field at a time (unique names, one hash block size, ServeGen needing a duration, a system
prompt length) is refused before the first random stream is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import mix
from mtia_cluster.traces.generators.mix import generate_table

TRACES = Path(mix.__file__).resolve().parents[1]


def _llm(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "llm", "rate_per_s": 1.0, **extra}


CASES = [
    (
        {"duration_s": 10, "services": [_llm("a"), _llm("a")]},
        "services[1].name",
        "duplicate service name",
    ),
    (
        {
            "requests": 10,
            "services": [_llm("a", arrivals={"process": "servegen", "path": "x.csv"})],
        },
        "services[0].arrivals.process",
        "need duration_s",
    ),
    (
        {
            "duration_s": 10,
            "services": [
                _llm("a", prefix_blocks={"block_tokens": 64}),
                _llm("b", prefix_blocks={"block_tokens": 128}),
            ],
        },
        "services[1].prefix_blocks.block_tokens",
        "same for every service",
    ),
    (
        {"duration_s": 10, "services": [_llm("a", prefix_blocks={"system_prompts": 2})]},
        "services[0].prefix_blocks.system_prompt_tokens",
        "positive length",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), CASES)
def test_cross_field_errors_name_file_and_field_before_any_draw(
    spec: dict[str, Any], field: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_draws(*args: Any) -> Any:
        raise AssertionError("a random stream was made before the spec was checked")

    monkeypatch.setattr(mix, "stream_rng", no_draws)
    with pytest.raises(UserError, match=message) as exc:
        generate_table(spec, 0, "spec.yaml")
    assert exc.value.file == "spec.yaml" and exc.value.field == field
    assert "\n" not in str(exc.value)


def test_one_block_size_is_recorded_in_the_metadata() -> None:
    spec = {
        "duration_s": 20,
        "services": [
            _llm("a", prefix_blocks={"block_tokens": 64}),
            _llm(
                "b",
                prefix_blocks={
                    "block_tokens": 64,
                    "system_prompts": 1,
                    "system_prompt_tokens": 100,
                },
            ),
            {"name": "r", "kind": "rr", "rate_per_s": 1.0},
        ],
    }
    table, meta = generate_table(spec, 0)
    assert meta["parameters"]["block_tokens"] == 64 and table.num_rows > 0
