"""Every bad input from issue 3: one error line naming file, row/column and value; exit 2;
nothing written under the output name (no temporary file left either)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _bad_tables(t: pa.Table) -> dict[str, tuple[pa.Table, tuple[str, ...]]]:
    n = t.num_rows
    arrival = t.column("arrival_ns").to_numpy().copy()
    neg = arrival.copy()
    neg[0] = -5
    back = arrival.copy()
    back[7] = back[6] - 1
    ids = t.column("request_id").to_numpy().copy()
    ids[9] = ids[3]
    tokens = t.column("input_tokens").to_pylist()
    nan_tokens = [float(x) if x is not None else None for x in tokens]
    nan_tokens[5] = float("nan")
    neg_tokens = list(tokens)
    neg_tokens[3] = -3
    null_service = pa.array(["rr"] * (n - 1) + [None]).dictionary_encode()
    i_arr, i_id, i_tok, i_svc = (
        t.schema.get_field_index(c) for c in ("arrival_ns", "request_id", "input_tokens", "service")
    )
    return {
        "missing-column": (t.drop(["service"]), ("service", "missing required column")),
        "wrong-type": (
            t.set_column(i_arr, "arrival_ns", pa.array([str(x) for x in arrival])),
            ("arrival_ns", "wrong type", "string"),
        ),
        "negative-arrival": (
            t.set_column(i_arr, "arrival_ns", pa.array(neg)),
            ("row 0", "arrival_ns", "negative", "-5"),
        ),
        "non-monotonic": (
            t.set_column(i_arr, "arrival_ns", pa.array(back)),
            ("row 7", "arrival_ns", "non-decreasing", str(back[7])),
        ),
        "duplicate-id": (
            t.set_column(i_id, "request_id", pa.array(ids)),
            ("row 9", "request_id", "duplicate", str(ids[3])),
        ),
        "null-required": (
            t.set_column(i_svc, "service", null_service),
            (f"row {n - 1}", "service", "null"),
        ),
        "nan-tokens": (
            t.set_column(i_tok, "input_tokens", pa.array(nan_tokens, pa.float64())),
            ("row 5", "input_tokens", "nan"),
        ),
        "negative-tokens": (
            t.set_column(i_tok, "input_tokens", pa.array(neg_tokens, pa.int32())),
            ("row 3", "input_tokens", "-3"),
        ),
        "no-rows": (t.slice(0, 0), ("no requests",)),
    }


CASES = [
    "missing-column",
    "wrong-type",
    "negative-arrival",
    "non-monotonic",
    "duplicate-id",
    "null-required",
    "nan-tokens",
    "negative-tokens",
    "no-rows",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["inspect", "transform"])
def test_bad_parquet_trace(
    tmp_path: Path,
    runner,
    table: pa.Table,
    user_error: Callable,
    files_in: Callable,
    case: str,
    command: str,
) -> None:
    bad, needles = _bad_tables(table)[case]
    path = tmp_path / f"{case}.parquet"
    pq.write_table(bad, path)  # bypasses our writer's validation on purpose
    out = tmp_path / "out.parquet"
    args = (
        ["trace", "inspect", str(path)]
        if command == "inspect"
        else ["trace", "transform", str(path), "-o", str(out)]
    )
    line = user_error(runner, args, str(path), *needles)
    assert line.startswith(f"error: {path}")
    assert files_in(tmp_path) == [path.name]


def _write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
def test_unreadable_files(
    tmp_path: Path, runner, table: pa.Table, user_error: Callable, files_in: Callable, kind: str
) -> None:
    if kind == "empty":
        path, needle = _write_bytes(tmp_path, "e.parquet", b""), "empty file"
    elif kind == "text":
        path, needle = _write_bytes(tmp_path, "t.parquet", b"TIMESTAMP,a\n1,2\n"), "Parquet"
    else:
        good = tmp_path / "good.parquet"
        pq.write_table(table, good)
        data = good.read_bytes()
        good.unlink()
        path, needle = _write_bytes(tmp_path, "cut.parquet", data[: len(data) // 2]), "Parquet"
    user_error(runner, ["trace", "inspect", str(path)], str(path), needle)
    user_error(
        runner,
        ["trace", "transform", str(path), "-o", str(tmp_path / "o.parquet")],
        str(path),
        needle,
    )
    assert files_in(tmp_path) == [path.name]


def test_missing_file(tmp_path: Path, runner, user_error: Callable) -> None:
    user_error(runner, ["trace", "inspect", str(tmp_path / "nope.parquet")], "not found")


def test_unknown_import_format(
    tmp_path: Path, runner, user_error: Callable, files_in: Callable
) -> None:
    src = _write_bytes(tmp_path, "x.csv", b"a,b\n1,2\n")
    user_error(
        runner,
        ["trace", "import", "--format", "nope", str(src), "-o", str(tmp_path / "o.parquet")],
        "--format",
        "unknown import format",
        "'nope'",
    )
    assert files_in(tmp_path) == ["x.csv"]


CSV_CASES = {
    "header": (
        b"time,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1,2\n",
        ("header", "TIMESTAMP"),
    ),
    "nan-tokens": (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
        b"2023-11-16 18:15:46.6805900,10,2\n2023-11-16 18:15:47.0000000,nan,2\n",
        ("line 3", "ContextTokens", "nan"),
    ),
    "negative-tokens": (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,10,-2\n",
        ("line 2", "GeneratedTokens", "-2"),
    ),
    "missing-tokens": (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,,2\n",
        ("line 2", "ContextTokens"),
    ),
    "bad-timestamp": (b"TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", ("yesterday",)),
    "only-header": (b"TIMESTAMP,ContextTokens,GeneratedTokens\n", ("no data rows",)),
    "empty": (b"", ("empty file",)),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_azure_csv(
    tmp_path: Path, runner, user_error: Callable, files_in: Callable, case: str
) -> None:
    data, needles = CSV_CASES[case]
    src = _write_bytes(tmp_path, "in.csv", data)
    user_error(
        runner,
        ["trace", "import", "--format", "azure-llm", str(src), "-o", str(tmp_path / "o.parquet")],
        str(src),
        *needles,
    )
    assert files_in(tmp_path) == ["in.csv"]


@pytest.mark.parametrize("fmt", ["burstgpt", "splitwise"])
def test_header_mismatch_other_formats(
    tmp_path: Path, runner, user_error: Callable, files_in: Callable, fmt: str
) -> None:
    src = _write_bytes(
        tmp_path,
        "in.csv",
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1,2\n",
    )
    user_error(
        runner,
        ["trace", "import", "--format", fmt, str(src), "-o", str(tmp_path / "o.parquet")],
        str(src),
        "header does not match",
        fmt,
    )
    assert files_in(tmp_path) == ["in.csv"]


def test_mooncake_missing_key_and_bad_json(
    tmp_path: Path, runner, user_error: Callable, files_in: Callable
) -> None:
    src = _write_bytes(tmp_path, "a.jsonl", b'{"timestamp": 1, "input_length": 5}\n')
    user_error(
        runner,
        ["trace", "import", "--format", "mooncake", str(src), "-o", str(tmp_path / "o.parquet")],
        str(src),
        "output_length",
    )
    src2 = _write_bytes(tmp_path, "b.jsonl", b'{"timestamp": 1, "input_length": 5\n')
    user_error(
        runner,
        ["trace", "import", "--format", "mooncake", str(src2), "-o", str(tmp_path / "o.parquet")],
        str(src2),
        "JSON",
    )
    assert files_in(tmp_path) == ["a.jsonl", "b.jsonl"]


def test_generate_bad_spec_values(
    tmp_path: Path, runner, user_error: Callable, files_in: Callable
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("duration_s: 10\nservices:\n  - {name: a, kind: rr, rate_per_s: -1}\n")
    user_error(
        runner,
        ["trace", "generate", "--spec", str(spec), "-o", str(tmp_path / "o.parquet")],
        str(spec),
        "services[0].rate_per_s",
        "-1",
    )
    spec.write_text(
        "duration_s: 10\nservices:\n  - {name: a, kind: rr, rate_per_s: 1,\n"
        "     arrivals: {process: gamma, cv: 0}}\n"
    )
    user_error(
        runner, ["trace", "generate", "--spec", str(spec), "-o", str(tmp_path / "o.parquet")], "cv"
    )
    assert files_in(tmp_path) == ["s.yaml"]
