"""User-facing errors.

A :class:`UserError` is a mistake in something the user gave us (a config file, a trace, a
command-line value). The CLI prints it as one line and exits with status 2; it never shows a
traceback. Library code raises it with the file, the field and the offending value so the
message always says *where* and *what*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UserError(Exception):
    """A problem in user input: printed as one line, exit status 2."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        value: Any = None,
        has_value: bool | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.value = value
        self.reason = message
        show_value = has_value if has_value is not None else value is not None
        parts: list[str] = []
        if self.file:
            parts.append(self.file)
        if field:
            parts.append(field)
        head = ": ".join(parts)
        text = message
        if show_value:
            text = f"{message} (got {value!r})"
        super().__init__(f"{head}: {text}" if head else text)


class OutputIOError(Exception):
    """An operating-system error while writing an output (disk full, permission, read-only
    file system): printed as one line, exit status 1. Raised after the temporary output was
    removed, so the message says which output, why, and how much had been written."""

    def __init__(self, message: str, *, path: str | Path, errno_code: int | None = None) -> None:
        self.path = str(path)
        self.errno = errno_code
        super().__init__(f"{path}: {message}")

    @classmethod
    def from_os_error(
        cls,
        err: OSError,
        target: str | Path,
        *,
        temp: Path | None = None,
        written: int | None = None,
    ) -> OutputIOError:
        """One line from an OSError (also pyarrow's, whose errno is only in its text)."""
        import errno as errno_mod
        import os
        import re

        code = err.errno
        if code is None:
            found = re.search(r"errno (\d+)", str(err), flags=re.IGNORECASE)
            code = int(found.group(1)) if found else None
        what = os.strerror(code).lower() if code else str(err).splitlines()[0]
        name = errno_mod.errorcode.get(code or -1)
        text = f"{what}{f' ({name})' if name else ''}"
        if err.filename is not None and str(err.filename) != str(target):
            text += f" at {err.filename}"
        if temp is not None:
            text += (
                f"; nothing was published, the temporary {temp.name} was removed "
                f"({_human(written or 0)} written before the error{_free_text(Path(target))})"
            )
        return cls(text, path=target, errno_code=code)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _free_text(path: Path) -> str:
    import shutil

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"; {_human(shutil.disk_usage(probe).free)} free there now"
    except OSError:
        return ""


def did_you_mean(
    word: str, choices: list[str] | tuple[str, ...], lead: str = "expected one of"
) -> str:
    """`` (did you mean 'x'?)`` for a near miss (difflib), else `` (lead a, b, c)``; for the
    end of a UserError message about an unknown key or name."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" ({lead} {', '.join(map(str, choices))})" if choices else ""


class RunFailed(Exception):
    """A run that could not finish for a reason outside the user's input (a shard that
    exhausted its restarts, Ray that would not start): printed as one line, exit status 1.
    The run's directory stays temporary and marked incomplete."""
