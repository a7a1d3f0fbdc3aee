"""Writes of a streamed run done on a second thread, in order, with bounded memory; and
`Prefetch`, the trace read one chunk ahead on a third.

`simulate -o` spends about half its CPU turning finished rows and device samples into Arrow
tables, accumulating their statistics and compressing them into Parquet. Those calls run
here on one background thread while the engine simulates the next windows: pyarrow's
conversion, compression and file writing and numpy's array work release the GIL, and so do
the engine's compiled kernels (``nogil=True``), so on two cores both run at once.

Exact by construction: one thread runs the submitted calls one at a time, in the order they
were submitted, so every file, row group and statistic is the one the calls would have
produced in the caller's thread. Submitted arguments must not change afterwards (the caller
hands over fresh arrays: the engine's released rows, copies of device counters).

Bounded: at most `depth` calls wait; `submit` blocks when the queue is full (the engine
waits for the writer, memory does not grow). Errors: the first exception a call raises is
raised again in the caller's thread, at the next `submit` or at `close` (the run fails with
the writer's error, e.g. a full disk, and the results writer handles it as if it had been
raised in place); later calls are skipped. An exception or Ctrl-C in the caller's thread
(`__exit__`) drops the calls still queued and waits for the one running, so nothing writes
into the run's temporary directory after the results writer discards or marks it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

DEPTH = 4  # calls waiting at most (each: ~131k rows or one device sample, ~10-15 MB)

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...]]


class BackgroundWriter:
    """Runs submitted calls in order on one daemon thread (see the module doc)."""

    def __init__(self, depth: int = DEPTH, name: str = "results-writer") -> None:
        self._queue: queue.Queue[_Call | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            if self._error is not None or self._cancelled:
                continue  # drained, not run: the run has failed
            fn, args = call
            try:
                fn(*args)
            except BaseException as exc:
                self._error = exc

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` (blocks while `depth` calls wait); raises the error of an
        earlier call, if one failed."""
        self._raise_error()
        self._queue.put((fn, args))

    def close(self) -> None:
        """Wait until every submitted call has run; raise the first error one raised."""
        self._stop()
        self._raise_error()

    def cancel(self) -> None:
        """Drop the queued calls and wait for the running one to end."""
        self._cancelled = True
        self._stop()

    def _stop(self) -> None:
        """End the thread after the queued calls; a Ctrl-C meanwhile cancels them, waits for
        the running one (nothing may write after this returns) and is raised again."""
        interrupted: KeyboardInterrupt | None = None
        sent = False
        while self._thread.is_alive():
            try:
                if not sent:
                    self._queue.put(None)
                    sent = True
                self._thread.join()
            except KeyboardInterrupt as exc:
                self._cancelled, interrupted = True, exc
        if interrupted is not None:
            raise interrupted

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """Normal end: wait for every call (raising the writer's error); an exception in
        the with-block: `cancel`."""
        (self.close if exc_type is None else self.cancel)()


class Prefetch(Generic[T]):
    """The items of `items` (e.g. a trace's window-aligned chunks) produced on a background
    thread, at most `depth` ahead of the consumer: reading and converting the next chunk
    (Parquet decoding releases the GIL) overlaps the engine's work on this one. Items come
    in their order, unchanged; an exception raised while producing is raised at the item
    where it happened. Use as a context manager: leaving it stops the thread (an unfinished
    consumer drops what was read ahead)."""

    def __init__(self, items: Iterable[T], depth: int = 1, name: str = "prefetch") -> None:
        self._items = items
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[bool, Any]) -> bool:
        """Queue `entry` unless the consumer has gone; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # raised again in the consumer's thread
            self._put((False, exc))
            return
        self._put((False, None))

    def __iter__(self) -> Iterator[T]:
        while True:
            more, item = self._queue.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item

    def close(self) -> None:
        """Stop the producer (after the item it is making) and drop what it read ahead."""
        self._stop.set()
        self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
