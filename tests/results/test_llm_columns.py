"""Per-request LLM columns (ttft_ns, tpot_ns, queue_ns, preemptions, cached_tokens) and the
LLM summary fields (preemptions, KV-allocation failures, prefix-cache hit rate) on a real
LLM run with KV pressure, a prompt that can never fit, and session reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_OK, STATUS_REJECTED, make_requests
from mtia_cluster.engine.output import RunOutput
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.results import FORMAT_VERSION, open_results, summarize, write_run


@pytest.fixture(scope="module")
def run() -> RunOutput:
    """One Llama 3.1 8B replica on an H100 with prefix caching: 300 long prompts at t = 0
    (their KV exceeds the cache: preemptions), one 2 M-token prompt (never fits: rejected by
    the replica), then 100 requests of 5 sessions spread over a minute (prefix hits)."""
    sc = parse_scenario(
        {
            "regions": [
                {
                    "name": "r",
                    "pools": [
                        {"service": "chat", "model": "llama-3.1-8b", "platform": "hgx-h100",
                         "accelerators": 1, "tp": 1, "accelerators_per_replica": 1,
                         "prefix_caching": True},
                    ],
                }
            ],
            "slo": {"chat": {"ttft_p99_ms": 2000, "tpot_p99_ms": 100}},
        }
    )  # fmt: skip
    rng = np.random.default_rng(1)
    n = 400
    arrival = np.concatenate([np.zeros(300), np.linspace(60e9, 120e9, 100)]).astype(np.int64)
    prompt = rng.integers(2000, 4000, n).astype(np.int32)
    prompt[5] = 2_000_000
    session = np.concatenate([np.arange(300), rng.integers(0, 5, 100)]).astype(np.int64)
    trace = make_requests(
        arrival,
        items=0,
        input_tokens=prompt,
        output_tokens=rng.integers(300, 600, n).astype(np.int32),
        session_id=session,
    )
    return Simulation(sc).run(trace)


def test_request_columns_follow_the_engine_rows(run: RunOutput) -> None:
    s = summarize(run)
    assert s.requests is not None
    t = s.requests.sort_by("request_id")
    c = run.requests
    ok = c.status == STATUS_OK
    ttft = np.array(t["ttft_ns"].to_pylist(), dtype=object)
    assert all(v is None for v in ttft[~ok])
    assert np.array_equal(ttft[ok].astype(np.int64), (c.first_token_ns - c.arrival_ns)[ok])
    tpot = np.array(t["tpot_ns"].to_pylist(), dtype=object)
    steps = c.output_tokens.astype(np.int64) - 1
    want = (c.finish_ns - c.first_token_ns)[ok] / steps[ok]
    assert np.allclose(tpot[ok].astype(float), want, rtol=0, atol=0)
    queue = np.array(t["queue_ns"].to_pylist(), dtype=object)
    assert np.array_equal(queue[ok].astype(np.int64), (c.start_ns - c.arrival_ns)[ok])
    assert t["preemptions"].to_pylist() == c.preemptions.tolist()
    assert t["cached_tokens"].to_pylist() == c.cached_tokens.tolist()
    assert int(c.preemptions.sum()) > 0 and int(c.cached_tokens.sum()) > 0


def test_llm_summary_fields(run: RunOutput) -> None:
    (g,) = summarize(run).summary["groups"]
    c = run.requests
    ok = c.status == STATUS_OK
    assert g["kind"] == "llm"
    assert g["preemptions"] == int(c.preemptions.sum()) > 0
    assert g["kv_allocation_failures"] == int((c.status == STATUS_REJECTED).sum()) == 1
    hit = int(c.cached_tokens[ok].sum()) / int(c.input_tokens[ok].sum())
    assert g["prefix_cache_hit_rate"] == hit and 0 < hit < 1


def test_written_run_and_analyze_carry_the_same_fields(run: RunOutput, tmp_path: Path) -> None:
    from mtia_cluster.results.analysis import analyze

    out = write_run(run, tmp_path / "run", manifest={}, trace_path=None, wall_time_s=1.0)
    doc = open_results(out).summary
    assert doc == json.loads(
        json.dumps({"format_version": FORMAT_VERSION, **summarize(run).summary})
    )
    files = ds.dataset(out / "requests", format="parquet").to_table()
    for col in ("ttft_ns", "tpot_ns", "queue_ns", "preemptions", "cached_tokens"):
        assert col in files.column_names
    (row,) = [r for r in analyze(out)["rows"] if r["level"] == "region,service"]
    (g,) = doc["groups"]
    for key in ("preemptions", "kv_allocation_failures", "prefix_cache_hit_rate", "input_tokens"):
        assert row[key] == g[key], key
