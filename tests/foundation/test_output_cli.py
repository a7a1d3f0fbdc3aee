"""Every command with -o, against whatever already exists there (issue #11, item 1).

Property: over random existing contents at -o (files, symlinks, nested directories, stray
manifest.json files, earlier outputs of the tool with and without foreign files, dangling
links, lookalike temporaries beside it), a command either writes its output where the rules
allow it or refuses with one line and exit 2; nothing outside the tool's own output is ever
deleted or modified (every entry of the sandbox is hashed before and after). Commands run
in-process (CliRunner); replay uses `--address inprocess` (no Ray).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster import output
from mtia_cluster.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "configs" / "scenarios" / "rr-small.yaml"
PLAN = ROOT / "configs" / "rollouts" / "model-regression-rollback.yaml"
AZURE_CSV = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:15:46.6805900,10,2\n2023-11-16 18:15:47.6805900,11,3\n"
)


def _ok(res: Any) -> Any:
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trace, a CSV to import, a results and a rollout directory to plot."""
    d = tmp_path_factory.mktemp("inputs")
    r = CliRunner()
    trace = d / "t.parquet"
    gen = ["trace", "generate", "--service", "feed-ranking", "--requests", "200"]
    _ok(r.invoke(cli, [*gen, "--rate", "1000", "-o", str(trace)]))
    (d / "in.csv").write_text(AZURE_CSV)
    _ok(r.invoke(cli, ["simulate", str(SCENARIO), "--trace", str(trace), "-o", str(d / "run")]))
    _ok(r.invoke(cli, ["rollout", str(PLAN), "-o", str(d / "roll"), "--fast"]))
    return {"trace": trace, "csv": d / "in.csv", "run": d / "run", "roll": d / "roll"}


# name: (output kind, file suffix, argv for an output path)
COMMANDS: dict[str, tuple[output.OutputKind, str, Callable[[dict[str, Path], str], list[str]]]] = {
    "simulate": (
        output.RESULTS_DIR,
        "",
        lambda i, o: ["simulate", str(SCENARIO), "--trace", str(i["trace"]), "-o", o],
    ),
    "replay": (
        output.RESULTS_DIR,
        "",
        lambda i, o: [
            "replay",
            str(SCENARIO),
            "--trace",
            str(i["trace"]),
            "-o",
            o,
            "--address",
            "inprocess",
        ],
    ),
    "rollout": (output.ROLLOUT_DIR, "", lambda i, o: ["rollout", str(PLAN), "-o", o, "--fast"]),
    "trace-generate": (
        output.TRACE_FILE,
        ".parquet",
        lambda i, o: ["trace", "generate", "--requests", "50", "--rate", "100", "-o", o],
    ),
    "trace-import": (
        output.TRACE_FILE,
        ".parquet",
        lambda i, o: ["trace", "import", "--format", "azure-llm", str(i["csv"]), "-o", o],
    ),
    "trace-transform": (
        output.TRACE_FILE,
        ".parquet",
        lambda i, o: ["trace", "transform", str(i["trace"]), "--sample", "0.5", "-o", o],
    ),
    "analyze-plot": (
        output.PLOT_FILE,
        ".html",
        lambda i, o: ["analyze", str(i["run"]), "--plot", o],
    ),
    "analyze-rollout-plot": (
        output.PLOT_FILE,
        ".html",
        lambda i, o: ["analyze", str(i["roll"]), "--plot", o],
    ),
}

NAMES = st.sampled_from(["a", "b.txt", "manifest.json", "summary.json", "requests", ".hidden"])
MANIFESTS = st.sampled_from(
    [
        b"{}",
        b"not json",
        b'{"format_version": "1", "status": "complete"}',  # a run of an older version
        json.dumps({"format": output.RESULTS_DIR.format}).encode(),  # no contents list
    ]
)
LEAF = st.one_of(st.binary(max_size=16), st.just("LINK_OUT"), st.just("DANGLING"))
TREE = st.dictionaries(
    NAMES,
    st.recursive(LEAF, lambda kids: st.dictionaries(NAMES, kids, max_size=3), max_leaves=5),
    min_size=1,
    max_size=3,
)
SETUPS = st.one_of(
    st.tuples(st.sampled_from(["absent", "empty", "dangling", "earlier", "earlier+foreign"])),
    st.tuples(st.just("tree"), TREE, MANIFESTS, st.booleans()),
    st.tuples(st.just("file"), st.binary(max_size=32)),
    st.tuples(st.just("link_to_tree"), TREE | st.just({})),
    st.tuples(st.just("link_to_file"), st.binary(max_size=32)),
)


def _build(path: Path, tree: Any, box: Path) -> None:
    if isinstance(tree, dict):
        path.mkdir()
        for name, sub in tree.items():
            _build(path / name, sub, box)
    elif tree == "LINK_OUT":
        path.symlink_to(box / "outside")
    elif tree == "DANGLING":
        path.symlink_to(box / "no-such-thing")
    else:
        path.write_bytes(tree)


def _snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `root`: kind and content hash / link target (links not followed)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                snap[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                snap[rel] = ("dir", "")
            else:
                snap[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return snap


def _setup(box: Path, name: str, setup: tuple[Any, ...], earlier: Path) -> tuple[Path, bool, bool]:
    """Make the sandbox; return (where the output would land, may write, needs --overwrite)."""
    (box / "outside").mkdir()
    (box / "outside" / "precious.txt").write_text("never touch")
    target = box / name
    state = setup[0]
    if state == "empty":
        target.mkdir()
        return target, True, False
    if state == "dangling":
        target.symlink_to(box / "gone")
        return target, False, False
    if state.startswith("earlier"):
        if earlier.is_dir():
            shutil.copytree(earlier, target, symlinks=True)
            foreign = target / "notes.txt"
        else:
            shutil.copy2(earlier, target)
            foreign = None
        if state == "earlier+foreign":
            if foreign is None:  # a single file: edited after the tool wrote it
                with open(target, "ab") as fh:
                    fh.write(b"edited")
                # an edited page keeps the generator tag (still the tool's report); a
                # Parquet file with bytes appended is no longer a trace: never replaced
                return target, earlier.suffix == ".html", True
            foreign.write_text("mine")
            return target, False, False
        return target, True, True
    if state == "tree":
        tree, manifest, add_manifest = setup[1], setup[2], setup[3]
        _build(target, tree, box)
        if add_manifest and (target / "manifest.json").is_dir() is False:
            (target / "manifest.json").unlink(missing_ok=True)
            (target / "manifest.json").write_bytes(manifest)
        return target, False, False
    if state == "file":
        target.write_bytes(setup[1])
        return target, False, False
    if state == "link_to_tree":
        real = box / "real-dir"
        _build(real, setup[1], box)
        target.symlink_to(real)
        return real, not setup[1], False
    if state == "link_to_file":
        (box / "real-file").write_bytes(setup[1])
        target.symlink_to(box / "real-file")
        return box / "real-file", False, False
    return target, True, False  # absent


@pytest.fixture(scope="module")
def earlier_outputs(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One earlier output of each command, to copy in as 'the tool's own'."""
    d = tmp_path_factory.mktemp("earlier")
    made = {}
    for name, (_kind, suffix, argv) in COMMANDS.items():
        path = d / f"{name}{suffix}"
        _ok(CliRunner().invoke(cli, argv(inputs, str(path))))
        made[name] = path
    return made


@pytest.mark.parametrize("command", sorted(COMMANDS))
@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setup=SETUPS, overwrite=st.booleans())
def test_nothing_but_the_tools_output_changes(
    inputs: dict[str, Path],
    earlier_outputs: dict[str, Path],
    command: str,
    setup: tuple[Any, ...],
    overwrite: bool,
) -> None:
    kind, suffix, argv = COMMANDS[command]
    name = f"o{suffix}"
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp)
        landing, allowed, needs_overwrite = _setup(box, name, setup, earlier_outputs[command])
        if allowed and not kind.directory and setup[0] in ("empty", "link_to_tree"):
            allowed = False  # a directory where a file goes
        # strangers' entries named like temporaries of the target: never the tool's to clean
        (box / f".{name}.tmp-0123456789abcdef").write_bytes(b"not the tool's")
        (box / f".{name}.tmp-fedcba987654").mkdir()
        (box / f".{name}.tmp-fedcba987654" / "_INCOMPLETE").write_text("someone else's")
        before = _snapshot(box)
        res = CliRunner().invoke(cli, argv(inputs, str(box / name)) + (["--overwrite"] * overwrite))
        after = _snapshot(box)
        expect_ok = allowed and (overwrite or not needs_overwrite)
        assert "Traceback" not in res.output
        if not expect_ok:
            assert res.exit_code == 2, res.output
            assert res.output.strip().splitlines()[-1].startswith("error: ")
            assert after == before  # refused: nothing changed at all
            return
        assert res.exit_code == 0, res.output
        rel = str(landing.relative_to(box))

        def ours(path: str) -> bool:
            return path == rel or path.startswith(rel + "/")

        assert {k: v for k, v in before.items() if not ours(k)} == {
            k: v for k, v in after.items() if not ours(k)
        }
        if kind.directory:
            assert output.foreign_reason(landing) is None
        else:
            assert kind.recognise is not None and kind.recognise(landing)
        if (box / name).is_symlink() or setup[0].startswith("link"):
            assert (box / name).is_symlink()  # a link stays a link


def test_interrupted_run_is_reported_and_cleaned_by_the_next_run(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a replay writes leaves the run marked incomplete (its shard actors may
    still be writing); the next run reports and removes that temporary; `clean` finds
    nothing left. (`simulate -o` removes its own at once: tests/engine/test_cli_simulate.py.)"""
    from mtia_cluster.results import shard

    out = tmp_path / "run"
    argv = COMMANDS["replay"][2](inputs, str(out))

    def interrupted(self: Any, *a: Any, **k: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(shard.ShardWriter, "write_completed", interrupted)
        res = CliRunner().invoke(cli, argv)
    assert res.exit_code != 0 and not out.exists()
    (tmp,) = output.temporaries_of(out)
    marker = json.loads((tmp / "_INCOMPLETE").read_text())
    assert marker["state"] == "failed" and marker["error"] == "KeyboardInterrupt"
    assert json.loads((tmp / "manifest.json").read_text())["status"] == "incomplete"
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 0, res.output
    assert f"note: removed {tmp}" in res.output and not tmp.exists()
    res = CliRunner().invoke(cli, ["clean", str(tmp_path)])
    assert res.exit_code == 0 and "nothing to clean" in res.output


def _enospc(*a: Any, **k: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("command", "patch"),
    [
        ("simulate", "pyarrow.parquet.ParquetWriter.write_table"),
        ("replay", "pyarrow.parquet.ParquetWriter.write_table"),
        ("trace-generate", "pyarrow.parquet.ParquetWriter.write_table"),
        ("rollout", "pyarrow.parquet.write_table"),
        ("simulate", "mtia_cluster.results.writer.write_json"),
        ("analyze-plot", "pathlib.Path.write_text"),
    ],
)
def test_disk_full_is_one_line_exit_1_and_leaves_nothing(
    inputs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    patch: str,
) -> None:
    _kind, suffix, argv = COMMANDS[command]
    out = tmp_path / f"o{suffix}"
    monkeypatch.setattr(patch, _enospc)
    res = CliRunner().invoke(cli, argv(inputs, str(out)))
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: no space left on device (ENOSPC)"), last
    assert "temporary" in last and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary
