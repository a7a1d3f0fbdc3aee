"""Atomic run directories, shard restarts and the reader's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from results_synth import REGIONS, SERVICES, SLOS, make_completed, write_run

from mtia_cluster.errors import UserError
from mtia_cluster.results import ResultsWriter, ServiceSLO, open_results


def _writer(out: Path, **kw: object) -> ResultsWriter:
    return ResultsWriter(
        out,
        manifest={"seed": 1},
        services=SERVICES,
        regions=REGIONS,
        slos=SLOS,
        **kw,  # type: ignore[arg-type]
    )


def test_exception_inside_the_run_leaves_only_a_marked_tmp_dir(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), _writer(out) as run:
        with run.shard(0) as shard:
            shard.write_completed(make_completed(100, seed=1))
        raise RuntimeError("boom")
    assert not out.exists()
    (tmp,) = tmp_path.glob(".out.tmp-*")
    assert (tmp / "_INCOMPLETE").is_file()
    manifest = json.loads((tmp / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "boom" in manifest["error"]
    assert not (tmp / "summary.json").exists()
    with pytest.raises(UserError, match="incomplete run is at"):
        open_results(out)
    with pytest.raises(UserError, match="incomplete run"):
        open_results(tmp)


def test_exception_inside_a_shard_drops_its_uncommitted_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _writer(out, row_group_rows=10) as run:
        with run.shard(0) as shard:
            shard.write_completed(make_completed(50, seed=1))
        with pytest.raises(ValueError), run.shard(1) as shard:
            shard.write_completed(make_completed(50, seed=2).take(slice(0, 50)))
            raise ValueError("shard failed")
        assert not list(run.tmp.rglob("*.inprogress"))
    assert open_results(out).manifest["counts"]["requests"] == 50


def test_unclosed_shard_blocks_finalize(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _writer(out, row_group_rows=10)
    shard = run.shard(0)
    shard.write_completed(make_completed(50, seed=1))
    with pytest.raises(UserError, match="not closed"):
        run.finalize()
    assert not out.exists()


def test_restarted_shard_resumes_after_its_last_checkpoint(tmp_path: Path) -> None:
    """Rows after the checkpoint are written again by the restarted shard: none duplicated."""
    c = make_completed(300, seed=5)
    out = tmp_path / "out"
    with _writer(out, row_group_rows=16) as run:
        first = run.target.open_shard("s0")
        first.write_completed(c.take(slice(0, 100)))
        first.checkpoint()
        first.write_completed(c.take(slice(100, 200)))  # flushed to an in-progress part
        assert list(run.tmp.rglob(".part-s0-*.inprogress"))
        # the actor dies here; a new incarnation replays from the checkpoint
        again = run.target.open_shard("s0")
        assert not list(run.tmp.rglob(".part-s0-*.inprogress"))
        again.write_completed(c.take(slice(100, 300)))
        again.close()
    ids = open_results(out).requests.to_table(columns=["request_id"])["request_id"].to_numpy()
    assert sorted(ids.tolist()) == sorted(c.request_id.tolist())


def test_duplicate_request_fails_finalize(tmp_path: Path) -> None:
    c = make_completed(20, seed=1)
    run = _writer(tmp_path / "out")
    for s in ("a", "b"):
        with run.shard(s) as shard:
            shard.write_completed(c.take(slice(0, 5 if s == "a" else 20)))
    with pytest.raises(UserError, match="more than once"):
        run.finalize()


def test_rerun_replaces_an_earlier_results_dir_only_with_overwrite(tmp_path: Path) -> None:
    out = write_run(tmp_path / "out", make_completed(30, seed=1), shards=[np.arange(30)])
    with pytest.raises(UserError, match="pass --overwrite"):
        write_run(out, make_completed(40, seed=2), shards=[np.arange(40)])
    assert open_results(out).manifest["counts"]["requests"] == 30
    write_run(out, make_completed(40, seed=2), shards=[np.arange(40)], overwrite=True)
    assert open_results(out).manifest["counts"]["requests"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_that_is_not_a_results_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    with pytest.raises(UserError, match=r"did not write \(e.g. thesis.tex\)"):
        _writer(tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_bad_names_and_slo_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="region name"):
        ResultsWriter(tmp_path / "o", manifest={}, services=["s"], regions=["us/east"])
    with pytest.raises(UserError, match="percentile"):
        ServiceSLO(percentile=100.0, latency_ns=1)
    with pytest.raises(UserError, match="positive integer"):
        ServiceSLO(latency_ns=-5)
    with pytest.raises(UserError, match="kind"):
        ServiceSLO(kind="batch")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("file", "a file, not a directory"),
        ("empty", "no manifest.json"),
        ("marker", "incomplete run"),
        ("version", "incompatible results format_version"),
        ("status", "manifest status is not complete"),
        ("garbage", "unreadable manifest.json"),
    ],
)
def test_open_results_refuses_with_the_dir_and_reason(
    tmp_path: Path, setup: str, message: str
) -> None:
    out = write_run(tmp_path / "good", make_completed(10, seed=1), shards=[np.arange(10)])
    target = tmp_path / "bad"
    if setup == "file":
        target.write_text("x")
    elif setup == "empty":
        target.mkdir()
    elif setup != "missing":
        out.rename(target)
        manifest = json.loads((target / "manifest.json").read_text())
        if setup == "marker":
            (target / "_INCOMPLETE").write_text("")
        elif setup == "version":
            manifest["format_version"] = "999"
        elif setup == "status":
            manifest["status"] = "incomplete"
        (target / "manifest.json").write_text(
            "{not json" if setup == "garbage" else json.dumps(manifest)
        )
    with pytest.raises(UserError, match=message) as err:
        open_results(target)
    assert str(target) in str(err.value)


def test_relative_output_path_is_made_absolute_for_other_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = _writer(Path("rel") / "out")
    assert Path(run.target.tmp_dir).is_absolute()
    monkeypatch.chdir("/")
    with run.shard(0) as shard:
        shard.write_completed(make_completed(5, seed=1))
    assert run.finalize() == tmp_path / "rel" / "out"
    assert open_results(tmp_path / "rel" / "out").manifest["counts"]["requests"] == 5


def test_output_taken_during_the_run_keeps_the_run_marked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = _writer(out)
    with run.shard(0) as shard:
        shard.write_completed(make_completed(5, seed=1))
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    with pytest.raises(UserError, match=r"did not write \(e.g. notes.txt\)"):
        run.finalize()
    assert (run.tmp / "_INCOMPLETE").exists()
    assert (out / "notes.txt").exists()
