"""`replay` through click's runner: a run, and bad input as one line with exit status 2."""

from __future__ import annotations

import json

import pytest

from mtia_cluster.cli.main import cli

from .conftest import SCENARIO


def test_replay_inprocess_json(runner, short_trace, tmp_path):
    res = runner.invoke(
        cli,
        [
            "replay",
            str(SCENARIO),
            "--trace",
            str(short_trace),
            "-o",
            str(tmp_path / "run"),
            "--address",
            "inprocess",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    groups = {(g["region"], g["service"]) for g in summary["groups"]}
    assert groups == {(r, s) for r in ("us-east", "eu-west") for s in ("rr-ranking", "llm-chat")}
    assert (tmp_path / "run" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--placement", "galaxy"], "galaxy"),
        (["--address", "127.0.0.1:1"], "no Ray cluster answers"),
        (["--set", "regions.0.pools.1.model=llama-3.1-405b"], "does not fit"),
        (["--set", "regions.0.pools.0.batching.max_items=0"], "max_items"),
    ],
)
def test_replay_bad_input(runner, short_trace, tmp_path, args, needle):
    out = tmp_path / "run"
    res = runner.invoke(
        cli, ["replay", str(SCENARIO), "--trace", str(short_trace), "-o", str(out), *args]
    )
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".run.tmp-*"))


def test_replay_trace_with_unknown_service(runner, tmp_path):
    from mtia_cluster.traces.io import read_trace, write_trace

    from .conftest import REPO

    t = read_trace(REPO / "traces" / "demo.parquet", end_ns=10**10)
    import pyarrow as pa

    t = t.set_column(
        t.schema.get_field_index("service"),
        "service",
        pa.array(["search"] * t.num_rows).dictionary_encode(),
    )
    bad = tmp_path / "bad.parquet"
    write_trace(t, bad, {"source": "test"})
    res = runner.invoke(
        cli,
        [
            "replay",
            str(SCENARIO),
            "--trace",
            str(bad),
            "-o",
            str(tmp_path / "run"),
            "--address",
            "inprocess",
        ],
    )
    assert res.exit_code == 2 and "search" in res.output
