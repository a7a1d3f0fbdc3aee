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
