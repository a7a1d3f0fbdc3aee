"""Output ownership: what a command may write at `-o`, and writing it atomically.

Every command that writes (simulate, replay, demo, rollout, plan, trace generate/import/transform,
analyze --plot) goes through :func:`claim_output` before any work, then writes through a
:class:`Staging` (a temporary beside the target, renamed onto it when complete). The rules:

* absent or empty target: written;
* a directory the tool recognises (its `manifest.json` names a tool format and lists every
  file and directory in it, with sizes, and nothing else is there) or a file the tool
  recognises (a trace with the tool's Parquet metadata, a plot with its generator tag) is
  replaced only with ``--overwrite``;
* anything else is refused with one line (exit 2) and never touched, ``--overwrite`` or not;
* a symlink is followed: the output replaces the link's target, the link stays a link; a
  dangling link is refused; the current directory (or one containing it) is refused.

Temporaries are ``.<name>.tmp-<token>`` beside the target. The process writing one holds an
advisory lock on it (on the ``_INCOMPLETE`` marker of a directory), so a temporary whose lock
is free belongs to a run that ended without publishing: the next claim of the same target
removes it and reports it (``clean`` does the same on demand); a locked one belongs to a live
run, and the claim is refused. An OS error while writing (disk full, permission, read-only
file system) removes the temporary and raises :class:`OutputIOError` (one line, exit 1).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mtia_cluster.errors import OutputIOError, UserError

MANIFEST = "manifest.json"
MARKER = "_INCOMPLETE"
TOOL = "mtia-cluster"
HTML_GENERATOR = f'<meta name="generator" content="{TOOL}">'
PNG_SOFTWARE = TOOL  # PNG tEXt "Software" value the tool's plots carry
TRACE_METADATA_KEY = b"mtia_cluster.trace_format"
_TOKEN = re.compile(r"^[0-9a-z]{6,32}(-old)?$")


def _is_tool_trace(path: Path) -> bool:
    """A Parquet file whose key-value metadata has the tool's trace-format key."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path).metadata or {}
    except Exception:  # not Parquet, truncated, unreadable: not ours
        return False
    return TRACE_METADATA_KEY in meta


def _is_tool_plot(path: Path) -> bool:
    """An HTML page with the tool's generator tag, or a PNG whose Software text is the tool."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    if head.startswith(b"\x89PNG"):
        return b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head
    return HTML_GENERATOR.encode() in head


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: a directory of a tool format, or a single recognisable file."""

    label: str
    directory: bool
    format: str | None = None  # directory kinds: the manifest's "format"
    recognise: Callable[[Path], bool] | None = None  # file kinds


RESULTS_DIR = OutputKind("results directory", True, format="mtia-cluster-results")
ROLLOUT_DIR = OutputKind("rollout directory", True, format="mtia-cluster-rollout")
PLAN_DIR = OutputKind("plan directory", True, format="mtia-cluster-plan")
TRACE_FILE = OutputKind("trace", False, recognise=_is_tool_trace)
PLOT_FILE = OutputKind("plot", False, recognise=_is_tool_plot)
DIR_FORMATS = (RESULTS_DIR.format, ROLLOUT_DIR.format, PLAN_DIR.format)


@dataclass(frozen=True)
class Claim:
    """A checked output target. `target` is absolute with symlinks resolved."""

    requested: Path
    target: Path
    kind: OutputKind
    overwrite: bool
    replaces: bool  # an earlier output of the tool is there (and overwrite was given)
    notes: tuple[str, ...] = ()  # temporaries removed or left alone, for the user


def claim_output(path: str | Path, kind: OutputKind, *, overwrite: bool = False) -> Claim:
    """Check `path` may be written as `kind` and clean its interrupted temporaries.

    Raises UserError (exit 2) when the target is refused, OutputIOError (exit 1) when its
    parent cannot be written. Call it before any work; the writers call it again."""
    requested = Path(path)
    target = _resolve(requested)
    _check_not_cwd(requested, target)
    replaces = _check_target(target, kind, overwrite, requested)
    _check_parent_writable(target, requested)
    notes = _clean_temporaries(target, requested)
    return Claim(requested, target, kind, overwrite, replaces, tuple(notes))


def _resolve(requested: Path) -> Path:
    """Absolute, symlinks followed; a dangling link (or a loop) is refused."""
    p = Path(os.path.abspath(requested))
    if p.is_symlink():
        try:
            return p.resolve(strict=True)
        except (OSError, RuntimeError):
            raise UserError(
                f"is a symlink to {os.readlink(p)!r}, which does not exist; "
                "point -o at a real location",
                file=requested,
            ) from None
    parent = p.parent.resolve()
    if parent.exists() and not parent.is_dir():
        raise UserError("its parent is not a directory", file=requested)
    return parent / p.name


def _check_not_cwd(requested: Path, target: Path) -> None:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return
    if cwd == target or target in cwd.parents:
        raise UserError(
            "is the current directory or contains it; write to a new directory, "
            "e.g. -o results/run1",
            file=requested,
        )


def _check_target(target: Path, kind: OutputKind, overwrite: bool, shown: Path) -> bool:
    """True when an earlier output of the tool is there (and may be replaced)."""
    if not os.path.lexists(target):
        return False
    what = kind.label
    if kind.directory:
        if not target.is_dir():
            raise UserError(
                f"exists and is not a directory; give a new path for the {what}", file=shown
            )
        if not any(os.scandir(target)):
            return False
        why = foreign_reason(target)
        if why is not None:
            raise UserError(
                f"{why}; nothing was changed: choose another -o, or move them away yourself",
                file=shown,
            )
    else:
        if target.is_dir():
            raise UserError(f"is a directory; give a file name for the {what}", file=shown)
        if not target.is_file() or kind.recognise is None or not kind.recognise(target):
            raise UserError(
                f"exists and is not a {what} mtia-cluster wrote; nothing was changed: "
                "choose another name, or remove it yourself",
                file=shown,
            )
    if not overwrite:
        verb = "holds" if kind.directory else "is"
        raise UserError(
            f"{verb} an earlier {what} of mtia-cluster; pass --overwrite to replace it",
            file=shown,
        )
    return True


def _check_parent_writable(target: Path, shown: Path) -> None:
    """Fail before any work when the directory the output goes into cannot be written."""
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only_fs(parent) else errno.EACCES
        raise OutputIOError.from_os_error(OSError(code, os.strerror(code), str(parent)), shown)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# -- recognising the tool's directories ---------------------------------------------------


def _load_manifest(directory: Path) -> dict[str, Any] | None:
    m = directory / MANIFEST
    if m.is_symlink() or not m.is_file():
        return None
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def foreign_reason(directory: Path) -> str | None:
    """None when `directory` is a complete output of the tool, else why not ("holds ...")."""
    data = _load_manifest(directory)
    if data is None or data.get("format") not in DIR_FORMATS:
        if data is not None and "format_version" in data and "status" in data:
            return "holds a run of an older mtia-cluster, without the list of its files"
        names = sorted(os.listdir(directory))
        first = next((n for n in names if n != MANIFEST), None)
        if first is None:
            return "holds a manifest.json that mtia-cluster did not write"
        return f"holds files mtia-cluster did not write (e.g. {first})"
    contents = data.get("contents")
    if not isinstance(contents, dict):
        return "holds a manifest.json without the list of its files"
    files, dirs = contents.get("files") or {}, set(contents.get("dirs") or [])
    for root, dirnames, filenames in os.walk(directory):
        rel_root = os.path.relpath(root, directory)
        for name in dirnames + filenames:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            full = os.path.join(root, name)
            if rel == MANIFEST:
                continue
            st = os.lstat(full)
            if os.path.islink(full):
                ok = False
            elif name in dirnames:
                ok = rel in dirs
            else:
                ok = files.get(rel) == st.st_size and os.path.isfile(full)
            if not ok:
                return f"holds files added or changed since mtia-cluster wrote it (e.g. {rel})"
    return None


def contents_of(directory: Path) -> dict[str, Any]:
    """Every file (with its size) and directory under `directory`, for the manifest; the
    manifest itself and the `_INCOMPLETE` marker are not listed."""
    files: dict[str, int] = {}
    dirs: list[str] = []
    for root, dirnames, filenames in os.walk(directory):
        rel_root = os.path.relpath(root, directory)
        for name in sorted(dirnames):
            dirs.append(name if rel_root == "." else f"{rel_root}/{name}")
        for name in sorted(filenames):
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if rel not in (MANIFEST, MARKER):
                files[rel] = os.lstat(os.path.join(root, name)).st_size
    return {"files": files, "dirs": sorted(dirs)}


# -- temporaries -----------------------------------------------------------------------


def _temp_name(target: Path, token: str) -> Path:
    return target.with_name(f".{target.name}.tmp-{token}")


def _file_token(name: str, rand: str | None = None) -> str:
    """A file temporary's token: random hex plus a check over the output name, so a file
    the tool did not make is not taken for one of its temporaries by its name alone."""
    rand = rand or secrets.token_hex(4)
    return rand + hashlib.sha256(f"{TOOL}:{name}:{rand}".encode()).hexdigest()[:8]


def _is_file_token(name: str, token: str) -> bool:
    return len(token) == 16 and _file_token(name, token[:8]) == token


def temporaries_of(target: Path) -> list[Path]:
    """Entries beside `target` named like its temporaries (``.<name>.tmp-<token>``)."""
    parent, prefix = target.parent, f".{target.name}.tmp-"
    if not parent.is_dir():
        return []
    found = []
    for entry in parent.iterdir():
        if entry.name.startswith(prefix) and _TOKEN.match(entry.name[len(prefix) :]):
            found.append(entry)
    return sorted(found)


def _lock(fh: BinaryIO) -> bool:
    """Take the advisory lock without waiting; False when another open file holds it."""
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _temp_state(entry: Path) -> tuple[str, str]:
    """("stale"|"live"|"foreign", detail) of a temporary-named entry."""
    if entry.is_symlink():
        return "foreign", "a symlink"
    lock_file = entry
    detail = "interrupted"
    if entry.is_dir():
        if entry.name.endswith("-old"):
            ok = foreign_reason(entry) is None
            return ("stale", "an earlier output moved aside") if ok else ("foreign", "unknown")
        marker = entry / MARKER
        info = _read_marker(marker)
        if info is None:
            return "foreign", "no mtia-cluster marker"
        lock_file = marker
        detail = str(info.get("error") or "interrupted")
    elif not entry.is_file():
        return "foreign", "not a file"
    else:
        target_name, _, token = entry.name[1:].rpartition(".tmp-")
        if not _is_file_token(target_name, token):
            return "foreign", "not a name the tool makes"
    try:
        with open(lock_file, "rb") as fh:
            free = _lock(fh)
    except OSError as exc:
        return "foreign", f"cannot check it: {exc.strerror}"
    return ("stale", detail) if free else ("live", "in use")


def _read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_temporaries(target: Path, shown: Path) -> list[str]:
    """Remove the stale temporaries of `target`; describe each one seen."""
    notes = []
    for entry in temporaries_of(target):
        state, detail = _temp_state(entry)
        if state == "live":
            raise UserError(
                f"another mtia-cluster run is writing here (its temporary {entry.name} is "
                "locked); wait for it or choose another -o",
                file=shown,
            )
        if state == "stale":
            _remove(entry)
            notes.append(f"removed {entry}: temporary of an unfinished earlier run ({detail})")
        elif state == "foreign":
            notes.append(f"left {entry} alone: not recognisably mtia-cluster's ({detail})")
    return notes


def clean(path: str | Path, *, dry_run: bool = False) -> list[str]:
    """Remove the unlocked temporaries beside output `path`, and of outputs inside `path`
    when it is a directory. Returns one line per temporary seen."""
    p = Path(os.path.abspath(path))
    targets = {p}
    if p.is_dir() and not p.is_symlink():
        pat = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<tok>[0-9a-z-]+)$")
        for entry in p.iterdir():
            m = pat.match(entry.name)
            if m and _TOKEN.match(m["tok"]):
                targets.add(p / m["name"])
    lines: list[str] = []
    for t in sorted(targets):
        for entry in temporaries_of(t):
            state, detail = _temp_state(entry)
            if state == "stale":
                if not dry_run:
                    _remove(entry)
                verb = "would remove" if dry_run else "removed"
                lines.append(f"{verb} {entry} (unfinished run: {detail})")
            elif state == "live":
                lines.append(f"left {entry}: a running mtia-cluster process holds it")
            else:
                lines.append(f"left {entry}: not recognisably mtia-cluster's ({detail})")
    return lines


# -- staging and publishing ---------------------------------------------------------------


class Staging:
    """A locked temporary beside the claimed target; `publish()` renames it into place.

    Directories carry the ``_INCOMPLETE`` marker (JSON naming the tool, the process and,
    after a failure, the error) until just before the rename."""

    def __init__(self, claim: Claim, token: str | None = None) -> None:
        self.claim = claim
        directory = claim.kind.directory
        self.token = token if directory and token else _file_token(claim.target.name)
        self.path = _temp_name(claim.target, self.token)
        self._lock_fh: BinaryIO | None = None
        try:
            claim.target.parent.mkdir(parents=True, exist_ok=True)
            # Locked before anyone can take it for a temporary (no window in which another
            # run's claim would see it unlocked): a directory's marker is locked before it
            # holds the tool's JSON; a file is locked under a name that is no temporary's,
            # then renamed (the lock stays with the file).
            if claim.kind.directory:
                self.path.mkdir()
                fd = os.open(self.path / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                self._lock_fh = os.fdopen(fd, "r+b")
                _lock(self._lock_fh)
                self.write_marker("running")
            else:
                fresh = self.path.with_name(self.path.name + ".new")
                fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                self._lock_fh = os.fdopen(fd, "wb")
                _lock(self._lock_fh)
                os.replace(fresh, self.path)
        except OSError as exc:
            self.discard()
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + ".new").unlink()
            raise OutputIOError.from_os_error(exc, claim.requested) from None

    def write_marker(self, state: str, error: str | None = None) -> None:
        """The directory's `_INCOMPLETE` marker: who writes it, and why it stopped."""
        info: dict[str, Any] = {"tool": TOOL, "state": state, "target": str(self.claim.target)}
        info.update(pid=os.getpid(), host=socket.gethostname(), token=self.token)
        if error is not None:
            info["error"] = error
        (self.path / MARKER).write_text(json.dumps(info) + "\n", encoding="utf-8")

    def release(self) -> None:
        """Drop the lock (the temporary then counts as stale for the next run)."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def discard(self) -> None:
        """Remove the temporary and drop the lock."""
        self.release()
        if os.path.lexists(self.path):
            _remove(self.path)

    def fail(self, exc: BaseException) -> OutputIOError | None:
        """After an exception: an OS error removes the temporary and returns the one-line
        OutputIOError to raise; anything else keeps a directory marked failed (a file
        temporary is removed) and returns None."""
        os_err = os_error_of(exc)
        if os_err is not None:
            io = OutputIOError.from_os_error(
                os_err, self.claim.requested, temp=self.path, written=_size_of(self.path)
            )
            self.discard()
            return io
        if self.claim.kind.directory and self.path.is_dir():
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            try:
                self.write_marker("failed", reason)
            except OSError:
                self.discard()  # cannot even mark it: do not keep the space
                return None
            self.release()
        else:
            self.discard()
        return None

    def publish(self) -> Path:
        """Re-check the target (it may have changed during the run), move an earlier output
        of the tool aside, rename the temporary onto the target, delete the earlier one."""
        c = self.claim
        _check_target(c.target, c.kind, c.overwrite, c.requested)
        aside = None
        try:
            if os.path.lexists(c.target):
                aside = _temp_name(c.target, f"{self.token}-old")
                if c.kind.directory and any(os.scandir(c.target)):
                    os.replace(c.target, aside)
                elif c.kind.directory:
                    aside = None  # an empty directory: the rename replaces it
                else:
                    aside = None  # a file: the rename replaces it atomically
            if c.kind.directory:
                (self.path / MARKER).unlink()
            os.replace(self.path, c.target)
        except OSError as exc:
            if aside is not None and not os.path.lexists(c.target):
                os.replace(aside, c.target)
            err = self.fail(exc)
            raise (err or exc) from None
        self.release()
        if aside is not None:
            _remove(aside)
        return c.target


@contextlib.contextmanager
def staged(claim: Claim) -> Iterator[Path]:
    """Yield a temporary path for `claim`; publish it when the block ends cleanly. On an
    exception the temporary is removed (an OS error becomes OutputIOError)."""
    stage = Staging(claim)
    try:
        yield stage.path
    except BaseException as exc:
        io = stage.fail(exc)
        stage.discard()
        if io is not None:
            raise io from None
        raise
    stage.publish()


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: itself, the cause of a Ray task error, or its explicit
    ``raise ... from`` cause. A UserError is never one (even when raised while handling an
    OSError: that context is not followed)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and not isinstance(cur, UserError):
        seen.add(id(cur))
        cause = getattr(cur, "cause", None)  # ray.exceptions.RayTaskError (even when it is
        if isinstance(cause, BaseException):  # also an OSError: its text is a traceback)
            cur = cause
        elif isinstance(cur, OSError):
            return cur
        else:
            cur = cur.__cause__
    return None


def interrupted_within(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the __cause__/__context__ chain of `exc`."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc.__cause__, exc.__context__]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return False


def is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C: a KeyboardInterrupt, or the SystemError numba's dispatcher raises, chained to
    one, when Ctrl-C lands inside a compiled function (any other SystemError is not)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, SystemError) and interrupted_within(exc)


def _size_of(path: Path) -> int:
    if not os.path.lexists(path):
        return 0
    if not path.is_dir():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total
