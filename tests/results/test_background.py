"""The background writer of `simulate -o` (results/background.py): calls run in submission
order, memory is bounded (a full queue blocks the caller), an error in the writer thread is
raised in the caller's thread, and an exception in the caller drops what is queued and
returns only once nothing runs any more. `simulate -o`'s own outputs are compared with the
in-memory run by tests/results/test_stream_run.py; disk-full and Ctrl-C inside the writer's
calls by tests/foundation/test_output_cli.py and tests/engine/test_cli_simulate.py."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.results.background import BackgroundWriter, Prefetch


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.integers(), max_size=60), depth=st.integers(1, 5))
def test_calls_run_in_submission_order(values: list[int], depth: int) -> None:
    seen: list[tuple[int, str]] = []
    with BackgroundWriter(depth=depth) as writer:
        for v in values:
            writer.submit(seen.append, (v, threading.current_thread().name))
    assert [v for v, _ in seen] == values
    assert all(name == "MainThread" for _, name in seen)  # the argument, made by the caller
    assert not writer._thread.is_alive()


def test_a_full_queue_blocks_the_caller_until_the_writer_catches_up() -> None:
    gate, started = threading.Event(), threading.Event()
    done: list[int] = []

    def slow(i: int) -> None:
        started.set()
        gate.wait()
        done.append(i)

    writer = BackgroundWriter(depth=2)
    writer.submit(slow, 0)
    started.wait()  # call 0 runs; the queue holds up to 2 more
    writer.submit(done.append, 1)
    writer.submit(done.append, 2)
    blocked = threading.Thread(target=writer.submit, args=(done.append, 3))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive() and done == []  # cannot enqueue while call 0 holds the writer
    gate.set()
    blocked.join()
    writer.close()
    assert done == [0, 1, 2, 3]


def test_an_error_in_the_writer_is_raised_in_the_caller_and_later_calls_are_skipped() -> None:
    ran: list[int] = []
    disk_full = OSError(errno.ENOSPC, "no space left on device")

    def write(i: int) -> None:
        if i == 3:
            raise disk_full
        ran.append(i)

    writer = BackgroundWriter(depth=1)
    with pytest.raises(OSError) as caught:
        for i in range(100):
            writer.submit(write, i)
        writer.close()
    assert caught.value is disk_full
    assert ran == [0, 1, 2]
    writer.cancel()
    assert not writer._thread.is_alive()


def test_an_exception_in_the_caller_drops_the_queue_and_waits_for_the_running_call(
    tmp_path: Path,
) -> None:
    gate, started = threading.Event(), threading.Event()
    written: list[int] = []

    def write(i: int) -> None:
        if i == 0:
            started.set()
            gate.wait()
        (tmp_path / f"{i}.txt").write_text(str(i))
        written.append(i)

    with pytest.raises(KeyboardInterrupt), BackgroundWriter(depth=4) as writer:
        for i in range(4):
            writer.submit(write, i)
        started.wait()
        threading.Timer(0.2, gate.set).start()  # the running call ends later
        raise KeyboardInterrupt
    assert not writer._thread.is_alive()  # __exit__ returned after the running call ended
    assert written == [0]  # queued calls 1-3 were dropped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt"]


@settings(max_examples=20, deadline=None)
@given(values=st.lists(st.integers(), max_size=40), depth=st.integers(1, 4))
def test_prefetch_yields_every_item_in_order(values: list[int], depth: int) -> None:
    with Prefetch(iter(values), depth=depth) as ahead:
        assert list(ahead) == values


def test_prefetch_raises_the_producers_error_at_its_item() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad row group")

    got: list[int] = []
    with Prefetch(items()) as ahead, pytest.raises(ValueError, match="bad row group"):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_a_prefetch_early_stops_its_thread() -> None:
    made: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    with Prefetch(endless(), depth=2) as ahead:
        first = [x for x, _ in zip(ahead, range(3), strict=False)]
    assert first == [0, 1, 2]
    assert not ahead._thread.is_alive()
    assert len(made) <= 3 + 2 + 2  # read ahead at most `depth` (+ the one being put)
