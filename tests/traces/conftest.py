"""Helpers for trace tests: small valid tables and a way to run the CLI expecting exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mtia_cluster.cli.main import cli


def small_table(n: int = 20) -> pa.Table:
    """A valid mixed R&R/LLM trace of n rows."""
    is_rr = np.arange(n) % 2 == 0
    return pa.table(
        {
            "request_id": pa.array(np.arange(n, dtype=np.int64)),
            "arrival_ns": pa.array(np.arange(n, dtype=np.int64) * 1_000_000),
            "service": pa.array(np.where(is_rr, "rr", "llm")).dictionary_encode(),
            "region": pa.array(np.where(np.arange(n) < n // 2, "east", "west")).dictionary_encode(),
            "items": pa.array(np.full(n, 200, np.int32), mask=~is_rr),
            "input_tokens": pa.array(np.full(n, 100, np.int32), mask=is_rr),
            "output_tokens": pa.array(np.full(n, 10, np.int32), mask=is_rr),
        }
    )


def expect_user_error(runner: CliRunner, args: list[str], *needles: str) -> str:
    """Run the CLI, assert exit 2 with a one-line error containing every needle."""
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def only_files(directory: Path) -> list[str]:
    """Names in `directory` (to check no output or temporary file was left)."""
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture()
def table() -> pa.Table:
    return small_table()


@pytest.fixture()
def make_table():
    return small_table


@pytest.fixture()
def user_error():
    return expect_user_error


@pytest.fixture()
def files_in():
    return only_files
