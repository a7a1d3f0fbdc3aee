"""ServeGen fits (../shared/data/servegen) as arrival and length sources."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from mtia_cluster.config.trace_spec import ServeGenLengths
from mtia_cluster.errors import UserError
from mtia_cluster.traces.generators import generate_table
from mtia_cluster.traces.generators.servegen import sample_servegen_lengths, servegen_arrivals


def _rng() -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(0, spawn_key=(1,))))


def test_arrivals_follow_window_rates(shared_data: Path) -> None:
    path = shared_data / "servegen" / "language" / "m-large" / "chunk-0-trace.csv"
    fits = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(
            column_names=["t", "rate", "cv", "pattern", "shape", "scale"]
        ),
    ).to_pydict()
    dur = 6 * 3600.0
    expected = sum(r * 600 for t, r in zip(fits["t"], fits["rate"], strict=True) if t < dur)
    t = servegen_arrivals(_rng(), path, 0.0, dur)
    assert np.all(np.diff(t) >= 0) and t.max() < dur * 1e9
    # bursty windows (CV up to ~9) make counts noisy: 15 % over 36 windows
    assert abs(len(t) / expected - 1) < 0.15


def test_lengths_sample_the_pmf(shared_data: Path) -> None:
    path = shared_data / "servegen" / "reason" / "deepseek-r1" / "chunk-0-dataset.json"
    data = json.loads(path.read_text())
    pmf = ast.literal_eval(data["0"]["input_tokens"])
    values = np.array(list(pmf), dtype=float)
    probs = np.array(list(pmf.values()))
    mean = float((values * probs).sum() / probs.sum())
    inp, out = sample_servegen_lengths(
        _rng(), ServeGenLengths(dist="servegen", path=str(path), window=0), 200_000
    )
    assert set(np.unique(inp).tolist()) <= set(int(v) for v in values)
    sd = float(np.sqrt(((values - mean) ** 2 * probs).sum() / probs.sum()))
    assert abs(inp.mean() - mean) < 5 * sd / np.sqrt(200_000)
    assert out.min() >= 1


def test_servegen_in_a_mix(shared_data: Path) -> None:
    base = shared_data / "servegen" / "reason" / "deepseek-r1"
    spec = {
        "duration_s": 3600,
        "services": [
            {
                "name": "r1",
                "kind": "llm",
                "rate_per_s": 1.0,
                "arrivals": {
                    "process": "servegen",
                    "path": str(base / "chunk-0-trace.csv"),
                    "start_s": 0,
                },
                "lengths": {"dist": "servegen", "path": str(base / "chunk-0-dataset.json")},
            }
        ],
    }
    t, meta = generate_table(spec, 0)
    assert t.num_rows > 0 and "ServeGen" in meta["source"]


def test_missing_servegen_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        servegen_arrivals(_rng(), tmp_path / "nope.csv", 0, 10)
