"""Test helpers around the compiled LLM fleet (engine/llm/fleet.py): run without it, or
count the spans it runs (tests/engine_llm/test_fleet_kernel.py, tests/engine/test_warm.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mtia_cluster.engine.llm.fleet import CompiledFleet


@contextmanager
def python_path() -> Iterator[None]:
    """The window loop without the compiled fleet."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CompiledFleet, "of", classmethod(lambda cls, *args: None))
        yield


@contextmanager
def counting_spans(span_rows: int | None = None) -> Iterator[list[int]]:
    """The compiled fleet (with spans of at most `span_rows` rows when given); yields a
    one-element list holding the count of spans that ran."""
    spans = [0]
    call = CompiledFleet.__call__

    def counted(self: CompiledFleet, *args: object) -> bool:
        ran = call(self, *args)
        spans[0] += ran
        return ran

    with pytest.MonkeyPatch.context() as mp:
        if span_rows is not None:
            mp.setattr(CompiledFleet, "span_rows", span_rows)
        mp.setattr(CompiledFleet, "__call__", counted)
        yield spans
