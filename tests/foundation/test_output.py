"""mtia_cluster.output: who may write at -o, staging, temporaries, OS errors."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from mtia_cluster import output as out
from mtia_cluster.errors import OutputIOError, UserError


def _write_dir_output(target: Path, overwrite: bool = False, files: int = 2) -> Path:
    """A small directory output of the tool (the rollout format)."""
    claim = out.claim_output(target, out.ROLLOUT_DIR, overwrite=overwrite)
    with out.staged(claim) as tmp:
        (tmp / "sub").mkdir()
        for i in range(files):
            (tmp / "sub" / f"f{i}.bin").write_bytes(b"x" * (i + 1))
        manifest = {"format": out.ROLLOUT_DIR.format, "contents": out.contents_of(tmp)}
        (tmp / out.MANIFEST).write_text(json.dumps(manifest))
    return target


def test_staged_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    claim = out.claim_output(target, out.PLOT_FILE)
    with pytest.raises(RuntimeError), out.staged(claim) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with out.staged(out.claim_output(target, out.PLOT_FILE)) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with out.staged(out.claim_output(tmp_path / "f.html", out.PLOT_FILE)) as tmp:
            tmp.write_text("x")
        with out.staged(out.claim_output(tmp_path / "d", out.ROLLOUT_DIR)) as tmp:
            (tmp / "inner").write_text("y")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.html").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_tool_directory_is_recognised_and_replaced_only_with_overwrite(tmp_path: Path) -> None:
    target = _write_dir_output(tmp_path / "run")
    assert out.foreign_reason(target) is None
    with pytest.raises(UserError, match="pass --overwrite"):
        out.claim_output(target, out.RESULTS_DIR)
    _write_dir_output(target, overwrite=True, files=3)
    assert sorted(p.name for p in (target / "sub").iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside it


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("add", "changed since mtia-cluster wrote it (e.g. sub/notes.txt)"),
        ("grow", "changed since mtia-cluster wrote it (e.g. sub/f0.bin)"),
        ("link", "changed since mtia-cluster wrote it (e.g. sub/link)"),
        ("dir", "changed since mtia-cluster wrote it (e.g. extra)"),
        ("format", "did not write (e.g. sub)"),
        ("old", "an older mtia-cluster"),
    ],
)
def test_changed_tool_directory_is_never_replaced(tmp_path: Path, change: str, needle: str) -> None:
    target = _write_dir_output(tmp_path / "run")
    if change == "add":
        (target / "sub" / "notes.txt").write_text("mine")
    elif change == "grow":
        (target / "sub" / "f0.bin").write_bytes(b"edited by hand")
    elif change == "link":
        (target / "sub" / "link").symlink_to(tmp_path)
    elif change == "dir":
        (target / "extra").mkdir()
    else:
        m = json.loads((target / out.MANIFEST).read_text())
        m = {"format": "something-else"} if change == "format" else {"format_version": "1"}
        m["status"] = "complete"
        (target / out.MANIFEST).write_text(json.dumps(m))
    before = sorted(str(p) for p in target.rglob("*"))
    with pytest.raises(UserError) as err:
        out.claim_output(target, out.RESULTS_DIR, overwrite=True)
    assert needle in str(err.value) and "nothing was changed" in str(err.value)
    assert sorted(str(p) for p in target.rglob("*")) == before


def test_current_directory_and_its_parents_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for given in (".", "..", str(tmp_path)):
        with pytest.raises(UserError, match="current directory"):
            out.claim_output(given, out.RESULTS_DIR, overwrite=True)


def test_symlinks_dangling_refused_and_followed(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"symlink to .* which does not exist"):
        out.claim_output(tmp_path / "dangling", out.RESULTS_DIR)
    real = _write_dir_output(tmp_path / "real")
    (tmp_path / "link").symlink_to("real")
    _write_dir_output(tmp_path / "link", overwrite=True, files=1)
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == "real"
    assert sorted(p.name for p in (real / "sub").iterdir()) == ["f0.bin"]


def test_files_foreign_or_wrong_kind_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.html").write_text("<html>mine</html>")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="not a plot mtia-cluster wrote"):
        out.claim_output(tmp_path / "notes.html", out.PLOT_FILE, overwrite=True)
    with pytest.raises(UserError, match="is a directory"):
        out.claim_output(tmp_path / "adir", out.TRACE_FILE, overwrite=True)
    with pytest.raises(UserError, match="not a directory"):
        out.claim_output(tmp_path / "afile", out.RESULTS_DIR, overwrite=True)
    with pytest.raises(UserError, match="parent is not a directory"):
        out.claim_output(tmp_path / "afile" / "x", out.RESULTS_DIR)
    (tmp_path / "mine.html").write_text(f"<html><head>{out.HTML_GENERATOR}</head></html>")
    with pytest.raises(UserError, match="pass --overwrite"):
        out.claim_output(tmp_path / "mine.html", out.PLOT_FILE)
    assert out.claim_output(tmp_path / "mine.html", out.PLOT_FILE, overwrite=True).replaces


def _stale_dir_temp(target: Path, token: str = "abcdef123456") -> Path:
    """A temporary as an interrupted run leaves it: marked, nobody holding its lock."""
    claim = out.claim_output(target, out.RESULTS_DIR)
    stage = out.Staging(claim, token=token)
    (stage.path / "requests").mkdir()
    stage.write_marker("failed", "KeyboardInterrupt")
    stage.release()
    return stage.path


def test_stale_temporaries_are_removed_and_reported_live_ones_refuse(tmp_path: Path) -> None:
    target = tmp_path / "run"
    stale = _stale_dir_temp(target)
    lookalike = tmp_path / ".run.tmp-0123456789ab"  # right name, no marker: not ours
    lookalike.mkdir()
    (lookalike / "x").write_text("keep")
    claim = out.claim_output(target, out.RESULTS_DIR)
    assert not stale.exists() and (lookalike / "x").exists()
    assert any("removed" in n and "KeyboardInterrupt" in n for n in claim.notes)
    assert any("left" in n and lookalike.name in n for n in claim.notes)
    live = out.Staging(claim)  # holds its lock, like a run in progress
    with pytest.raises(UserError, match="another mtia-cluster run is writing here"):
        out.claim_output(target, out.RESULTS_DIR)
    live.release()
    out.claim_output(target, out.RESULTS_DIR)
    assert not live.path.exists()


def test_clean_removes_only_unlocked_tool_temporaries(tmp_path: Path) -> None:
    stale = _stale_dir_temp(tmp_path / "a")
    interrupted = out.Staging(out.claim_output(tmp_path / "t.parquet", out.TRACE_FILE))
    interrupted.path.write_bytes(b"PAR1 half")
    interrupted.release()  # as when its process died
    held = out.Staging(out.claim_output(tmp_path / "u.parquet", out.TRACE_FILE))
    lookalike = tmp_path / ".v.parquet.tmp-0123456789abcdef"  # right shape, not the tool's
    lookalike.write_text("keep")
    precious = tmp_path / ".notes.tmp-x"  # not even a temporary's name
    precious.write_text("keep")
    dry = out.clean(tmp_path, dry_run=True)
    assert stale.exists() and interrupted.path.exists() and len(dry) == 4
    lines = out.clean(tmp_path)
    assert not stale.exists() and not interrupted.path.exists()
    assert held.path.exists() and lookalike.exists() and precious.exists()
    assert sum("removed" in line for line in lines) == 2
    assert any("running mtia-cluster process" in line for line in lines)
    assert any("not a name the tool makes" in line for line in lines)
    held.discard()


def test_os_error_removes_the_temporary_and_is_one_line(tmp_path: Path) -> None:
    claim = out.claim_output(tmp_path / "run", out.ROLLOUT_DIR)
    with pytest.raises(OutputIOError) as err, out.staged(claim) as tmp:
        (tmp / "part").write_bytes(b"x" * 5000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "part"))
    text = str(err.value)
    assert "\n" not in text and "ENOSPC" in text and " KB written before the error" in text
    assert text.startswith(f"{tmp_path / 'run'}: no space left on device")
    assert err.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_errno_is_found_in_pyarrow_style_messages_and_ray_causes() -> None:
    plain = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    e = OutputIOError.from_os_error(plain, "out")
    assert e.errno == errno.ENOSPC and "ENOSPC" in str(e)

    class TaskError(RuntimeError):  # how ray.exceptions.RayTaskError carries the cause
        def __init__(self, cause: BaseException) -> None:
            super().__init__("multi\nline traceback")
            self.cause = cause

    cause = OSError(errno.EROFS, "Read-only file system")
    assert out.os_error_of(TaskError(cause)) is cause
    assert out.os_error_of(RuntimeError("no")) is None
    try:  # a user error raised while handling an OSError stays a user error (exit 2)
        try:
            raise OSError(errno.EIO, "unreadable")
        except OSError:
            raise UserError("not a readable Parquet file") from None
    except UserError as user:
        assert out.os_error_of(user) is None


def test_parent_that_cannot_be_written_fails_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(OutputIOError, match="EACCES"):
        out.claim_output(tmp_path / "new" / "run", out.RESULTS_DIR)
    assert list(tmp_path.iterdir()) == []
