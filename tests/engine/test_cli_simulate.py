"""`mtia-cluster simulate`: end to end on a generated trace, and bad input -> exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RR_SMALL = ROOT / "configs" / "scenarios" / "rr-small.yaml"


@pytest.fixture(scope="module")
def rr_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from mtia_cluster.cli.main import cli

    path = tmp_path_factory.mktemp("trace") / "rr.parquet"
    res = CliRunner().invoke(
        cli,
        [
            "trace",
            "generate",
            "--service",
            "feed-ranking",
            "--rate",
            "5000",
            "--duration",
            "1",
            "--seed",
            "3",
            "-o",
            str(path),
        ],
    )
    assert res.exit_code == 0, res.output
    return path


def test_simulate_prints_summary_and_writes_results(runner, rr_trace: Path, tmp_path: Path) -> None:
    from mtia_cluster.cli.main import cli

    out = tmp_path / "run"
    res = runner.invoke(
        cli,
        [
            "simulate",
            str(RR_SMALL),
            "--trace",
            str(rr_trace),
            "--json",
            "-o",
            str(out),
            "--shards",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    # --json prints the summary.json document itself (one schema with `replay --json`)
    assert data == json.loads((out / "summary.json").read_text())
    (row,) = data["groups"]
    assert row["region"] == "us-east" and row["service"] == "feed-ranking"
    assert row["completed"] == row["offered"] > 4000
    assert 0 < row["latency_ns"]["p50"] <= row["latency_ns"]["p99"]
    assert 0 < row["utilization"] < 1
    # a 1 s run is under LoadGen's 600 s minimum: INVALID, in the file and on the console
    assert row["verdict"]["result"] == "INVALID"
    assert (out / "manifest.json").is_file() and (out / "requests").is_dir()
    assert not list(tmp_path.glob(".run.tmp-*"))  # renamed into place
    table = runner.invoke(cli, ["simulate", str(RR_SMALL), "--trace", str(rr_trace)])
    assert table.exit_code == 0 and "feed-ranking" in table.output
    line = next(x for x in table.output.splitlines() if x.startswith("us-east"))
    assert line.split()[-1] == "INVALID" and "VALID" not in line.split()[:-1]
    failing = runner.invoke(
        cli, ["simulate", str(RR_SMALL), "--trace", str(rr_trace), "--fail-on-invalid"]
    )
    assert failing.exit_code == 1 and "us-east/feed-ranking" in failing.stderr


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(RR_SMALL.read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = [
    (lambda d: d["regions"][0]["pools"][0].update(model="nope"), "regions[0].pools[0].model"),
    (
        lambda d: d["regions"][0]["pools"][0]["batching"].update(max_items=0),
        "regions[0].pools[0].batching.max_items",
    ),
    (lambda d: d["router"].update(policy="fastest"), "router.policy"),
    (
        lambda d: d["regions"][0]["pools"][0].update(platform="tpu-pod"),
        "regions[0].pools[0].platform",
    ),
    (lambda d: d.update(metrics_interval_ms=7), "metrics_interval_ms"),
    (lambda d: d["regions"][0]["pools"][0].update(service="other"), "service"),
    (lambda d: d["slo"].update(ghost={"p99_ms": 1}), "slo.ghost"),
    (lambda d: d["regions"][0]["pools"][0].update(hosts=2), "regions[0].pools[0].racks"),
]


@pytest.mark.parametrize(("mutate", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_input_is_one_line_exit_2(
    runner, rr_trace: Path, tmp_path: Path, mutate, field: str
) -> None:
    from mtia_cluster.cli.main import cli

    res = runner.invoke(cli, ["simulate", str(_write(tmp_path, mutate)), "--trace", str(rr_trace)])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert "Traceback" not in res.output


def test_llm_kv_cache_too_small_is_a_user_error(runner, tmp_path: Path) -> None:
    from mtia_cluster.cli.main import cli

    cfg = {
        "name": "llm",
        "regions": [
            {
                "name": "r",
                "pools": [
                    {
                        "service": "chat",
                        "model": "llama-2-70b",
                        "platform": "hgx-h100",
                        "accelerators": 1,
                        "accelerators_per_replica": 1,
                    }
                ],
            }
        ],
    }
    path = tmp_path / "llm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    trace = tmp_path / "chat.parquet"
    gen = runner.invoke(
        cli,
        [
            "trace",
            "generate",
            "--service",
            "chat",
            "--kind",
            "llm",
            "--requests",
            "10",
            "-o",
            str(trace),
        ],
    )
    assert gen.exit_code == 0, gen.output
    res = runner.invoke(cli, ["simulate", str(path), "--trace", str(trace)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("where", ["write_devices", "write_completed", "numba"])
def test_ctrl_c_exits_130_in_one_line_and_leaves_nothing_behind(
    runner, rr_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C during `simulate -o`: exit 130, one line, no output directory and no
    temporary beside it (also when it lands inside a compiled kernel); a file already in
    the parent directory stays."""
    from mtia_cluster.cli.main import cli
    from mtia_cluster.results.shard import ShardWriter

    def interrupted(self, *a, **k):  # type: ignore[no-untyped-def]
        if where == "numba":
            _numba_style_interrupt()
        raise KeyboardInterrupt

    monkeypatch.setattr(
        ShardWriter, "write_completed" if where != "write_devices" else where, interrupted
    )
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path / "run"
    res = runner.invoke(cli, ["simulate", str(RR_SMALL), "--trace", str(rr_trace), "-o", str(out)])
    assert res.exit_code == 130, res.output
    assert res.output.splitlines() == ["interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _numba_style_interrupt() -> None:
    """What numba's dispatcher raises when Ctrl-C lands inside a compiled function."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise SystemError(
            "CPUDispatcher(<function emit_rows>) returned a result with an exception set"
        ) from None


@pytest.mark.parametrize("chained", [True, False])
def test_ctrl_c_inside_a_compiled_kernel_exits_130_only_when_interrupted(
    runner, rr_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chained: bool
) -> None:
    """A SystemError chained to a KeyboardInterrupt is Ctrl-C (130, one line); any other
    SystemError stays an error (not swallowed as an interruption)."""
    from mtia_cluster.cli.main import cli
    from mtia_cluster.output import interrupted_within
    from mtia_cluster.results.shard import ShardWriter

    def raising(self, table):  # type: ignore[no-untyped-def]
        if chained:
            _numba_style_interrupt()
        raise SystemError("some other internal error")

    monkeypatch.setattr(ShardWriter, "write_devices", raising)
    out = tmp_path / "run"
    res = runner.invoke(cli, ["simulate", str(RR_SMALL), "--trace", str(rr_trace), "-o", str(out)])
    if chained:
        assert res.exit_code == 130, res.output
        assert res.output.strip().splitlines()[-1] == "interrupted"
    else:
        assert res.exit_code == 1 and isinstance(res.exception, SystemError)
        assert not interrupted_within(res.exception)


@pytest.mark.parametrize("with_output", [True, False])
def test_simulate_header_says_where_it_wrote(
    runner, rr_trace: Path, tmp_path: Path, with_output: bool
) -> None:
    """The console's first line names the results directory `-o` wrote (and nothing when
    the run was not written)."""
    from mtia_cluster.cli.main import cli

    out = tmp_path / "run"
    argv = ["simulate", str(RR_SMALL), "--trace", str(rr_trace)]
    res = runner.invoke(cli, argv + (["-o", str(out)] if with_output else []))
    assert res.exit_code == 0, res.output
    header = res.stdout.splitlines()[0]
    assert header.startswith("rr-small: ") and "simulated in" in header
    assert header.endswith(f"; written to {out}") == with_output
    assert (out / "summary.json").is_file() == with_output
