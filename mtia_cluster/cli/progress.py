"""The one progress display of every long command (replay, simulate, capacity, rollout,
trace generate/import/inspect/transform, demo).

On a terminal it is click's progress bar (click is already the CLI's library, so no new
dependency) with percent, ETA and a rate column (``740k requests/s``); off a terminal (a log
file, CI, a pipe) it writes at most one plain line per minute (none for runs shorter than
that), and with ``--json`` on stdout it writes nothing. The library code below the CLI never
sees any of this: it is handed ``progress.update``, a plain callable
``(done, total, note="") -> None`` (the engine imports neither click nor this module).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

import click

LOG_INTERVAL_S = 60.0  # off a terminal: at most one line per this many seconds
Callback = Callable[..., None]  # (done, total, note="")


def _si(value: float) -> str:
    """1234567 -> '1.23M' (rates in a short column)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress of one long step: ``with Progress("replaying", "rows") as p: work(p.update)``.

    `update(done, total, note)` takes absolute counts (done of total units), so callers that
    only know where they are need no bookkeeping; `total` may change (e.g. a search that
    adds rounds). `note` is shown after the rate (e.g. "simulated 300 s").
    """

    def __init__(
        self,
        label: str,
        unit: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s, self.clock = interval_s, clock
        self.started = self.last_line = clock()
        self.done, self.total, self.note = 0, 0, ""
        self._first: tuple[float, int] | None = None  # (time, done) of the first report
        self._bar: Any = None

    # -- the callable handed to library code ------------------------------------------------
    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Record that `done` of `total` units are complete."""
        if total is not None:
            self.total = max(int(total), 0)
        self.done, self.note = max(int(done), 0), note
        if self._first is None:
            self._first = (self.clock(), self.done)
        if not self.enabled:
            return
        if self.tty:
            self._draw()
            return
        now = self.clock()
        if now - self.last_line >= self.interval_s:
            self.last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    # -- text ------------------------------------------------------------------------------
    def rate(self) -> float:
        """Units per wall second, measured from the first report on (so that start-up before
        it, such as starting Ray, does not inflate the ETA); from the start until then."""
        now = self.clock()
        if self._first is not None and now > self._first[0] and self.done > self._first[1]:
            return (self.done - self._first[1]) / (now - self._first[0])
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far (None before any progress)."""
        r = self.rate()
        if r <= 0 or self.total <= 0:
            return None
        return max(self.total - self.done, 0) / r

    def rate_text(self) -> str:
        """Rate, ETA and note: the bar's item text and the tail of the log line."""
        eta = self.eta_s()
        parts = [
            f"{_si(self.rate())} {self.unit}/s",
            f"ETA {_duration(eta)}" if eta is not None else "ETA --:--",
        ]
        return ", ".join([*parts, self.note] if self.note else parts)

    def line(self) -> str:
        """The plain line written off a terminal."""
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (
            f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{pct}, "
            f"elapsed {_duration(self.clock() - self.started)}, {self.rate_text()}"
        )

    # -- terminal bar ----------------------------------------------------------------------
    def _draw(self) -> None:
        if self._bar is None:
            self._bar = click.progressbar(
                length=max(self.total, 1),
                label=self.label,
                file=self.stream,
                show_eta=False,  # ours (rate_text) is the same figure as the log line's
                show_percent=True,
                item_show_func=lambda text: text,
            )
            self._bar.__enter__()
        bar = self._bar
        bar.length = max(self.total, 1)
        bar.update(max(self.done - bar.pos, 0), self.rate_text())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            self._bar = None


def progress(label: str, unit: str, *, as_json: bool = False) -> Progress:
    """The command's progress display; silent when --json output goes to stdout."""
    return Progress(label, unit, enabled=not as_json)
