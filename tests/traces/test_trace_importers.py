"""Importers: the real Azure 2023 files (../shared/data) and small fixtures written in the
documented public formats of Azure 2024/2025, BurstGPT, Mooncake and splitwise-sim/Vidur."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.traces.generators.tables import AZURE_2023, fit_quantile_table
from mtia_cluster.traces.importers import import_trace
from mtia_cluster.traces.inspect import inspect_trace
from mtia_cluster.traces.io import read_metadata, read_trace


def test_azure_conv_import_figures(shared_data: Path, tmp_path: Path, runner) -> None:
    src = shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    out = tmp_path / "conv.parquet"
    result = runner.invoke(
        cli, ["trace", "import", "--format", "azure-llm", str(src), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    s = inspect_trace(out)
    assert s["rows"] == 19_366
    assert round(s["rate_per_s"], 2) == 5.53
    assert round(s["sizes"]["input_tokens"]["mean"]) == 1155
    assert round(s["sizes"]["output_tokens"]["mean"]) == 211
    assert round(s["iat_cv"], 2) == 1.09
    t = read_trace(out)
    assert t.column("arrival_ns")[0].as_py() == 0
    # 18:15:46.6805900 is the first request: 7 fractional digits kept to the 100 ns
    meta = read_metadata(out)
    assert meta["parameters"]["start_utc"].startswith("2023-11-16T18:15:46.68059")
    assert "CC-BY-4.0" in meta["licence"]


def test_azure_code_import_figures(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    import_trace("azure-llm", src, tmp_path / "code.parquet", service="code")
    s = inspect_trace(tmp_path / "code.parquet")
    assert s["rows"] == 8_819 and round(s["rate_per_s"], 2) == 2.57
    assert round(s["sizes"]["input_tokens"]["mean"]) == 2048
    assert list(s["services"]) == ["code"]


@pytest.mark.parametrize("name", ["code", "conv"])
def test_shipped_azure_tables_refit_from_data(shared_data: Path, name: str) -> None:
    t = pacsv.read_csv(shared_data / "azure_llm_2023" / f"AzureLLMInferenceTrace_{name}.csv")
    q_in, q_out = AZURE_2023[f"azure-2023-{name}"]
    assert fit_quantile_table(t.column("ContextTokens").to_numpy()) == q_in
    assert fit_quantile_table(t.column("GeneratedTokens").to_numpy()) == q_out


def test_azure_2024_timezone_aware_mixed_fractions(tmp_path: Path) -> None:
    src = tmp_path / "AzureLLMInferenceTrace_conv_1week.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.004000+00:00,1024,128\n"
        "2024-05-10 00:00:01+00:00,512,64\n"
        "2024-05-10 00:00:01.5+00:00,256,32\n"
        "2024-05-10 02:00:02.123456+02:00,100,10\n"
    )
    import_trace("azure-llm", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    # +02:00 at 02:00:02.123456 is 00:00:02.123456 UTC: sorted last
    assert t.column("arrival_ns").to_pylist() == [0, 996_000_000, 1_496_000_000, 2_119_456_000]
    assert t.column("input_tokens").to_pylist() == [1024, 512, 256, 100]
    assert read_metadata(tmp_path / "o.parquet")["parameters"]["variant"] == "2024"


def test_azure_2025_multimodal_num_images(tmp_path: Path) -> None:
    src = tmp_path / "mm.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens,NumImages\n"
        "2025-01-01 00:00:00.000000+00:00,2000,50,2\n"
        "2025-01-01 00:00:00.250000+00:00,900,20,0\n"
    )
    import_trace("azure-llm", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    assert t.column("num_images").to_pylist() == [2, 0]
    assert "2025" in read_metadata(tmp_path / "o.parquet")["source"]


def test_unsorted_rows_are_sorted_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "u.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:50.0000000,2,2\n2023-11-16 18:15:46.0000000,1,1\n"
    )
    import_trace("azure-llm", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    assert t.column("input_tokens").to_pylist() == [1, 2]
    assert read_metadata(tmp_path / "o.parquet")["parameters"]["rows_out_of_order"] == 1


def test_burstgpt_failed_requests_flagged_not_dropped(tmp_path: Path) -> None:
    src = tmp_path / "BurstGPT_1.csv"
    src.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "5,ChatGPT,472,18,490,Conversation log\n"
        "45,ChatGPT,1087,0,1087,Conversation log\n"
        "118,GPT-4,417,276,693,API log\n"
    )
    import_trace("burstgpt", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    assert t.num_rows == 3
    assert t.column("failed").to_pylist() == [False, True, False]
    assert t.column("service").to_pylist() == ["ChatGPT", "ChatGPT", "GPT-4"]
    assert t.column("arrival_ns").to_pylist() == [0, 40_000_000_000, 113_000_000_000]
    assert t.column("log_type").to_pylist()[2] == "API log"
    assert inspect_trace(tmp_path / "o.parquet")["failed"] == 1


def test_mooncake_keeps_prefix_blocks(tmp_path: Path) -> None:
    src = tmp_path / "mooncake_trace.jsonl"
    rows = [
        {"timestamp": 0, "input_length": 6755, "output_length": 500, "hash_ids": list(range(14))},
        {"timestamp": 27, "input_length": 1200, "output_length": 12, "hash_ids": [0, 1, 99]},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_trace("mooncake", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    assert t.column("arrival_ns").to_pylist() == [0, 27_000_000]
    assert t.column("prefix_blocks").to_pylist() == [list(range(14)), [0, 1, 99]]
    assert t.column("input_tokens").to_pylist() == [6755, 1200]


@pytest.mark.parametrize("variant", ["splitwise-sim", "vidur"])
def test_splitwise_and_vidur(tmp_path: Path, variant: str) -> None:
    src = tmp_path / "trace.csv"
    if variant == "splitwise-sim":
        src.write_text(
            "request_id,request_type,application_id,arrival_timestamp,batch_size,"
            "prompt_size,token_size\n0,2,0,0.5,1,1020,129\n1,2,0,1.25,1,380,44\n"
        )
    else:
        src.write_text(
            "arrived_at,num_prefill_tokens,num_decode_tokens,num_total_tokens\n"
            "0.5,1020,129,1149\n1.25,380,44,424\n"
        )
    import_trace("splitwise", src, tmp_path / "o.parquet")
    t = read_trace(tmp_path / "o.parquet")
    assert t.column("arrival_ns").to_pylist() == [0, 750_000_000]
    assert t.column("output_tokens").to_pylist() == [129, 44]
    assert read_metadata(tmp_path / "o.parquet")["parameters"]["variant"] == variant


def test_azure_timestamps_match_independent_parse(shared_data: Path, tmp_path: Path) -> None:
    """Every arrival equals numpy's own parse of the 7-digit timestamps, rebased."""
    src = shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
    import_trace("azure-llm", src, tmp_path / "o.parquet")
    got = read_trace(tmp_path / "o.parquet").column("arrival_ns").to_numpy()
    raw = (
        pacsv.read_csv(
            src, convert_options=pacsv.ConvertOptions(column_types={"TIMESTAMP": "string"})
        )
        .column("TIMESTAMP")
        .to_pylist()
    )
    ref = np.array([s.replace(" ", "T") for s in raw], dtype="datetime64[ns]").astype(np.int64)
    assert np.array_equal(got, np.sort(ref - ref.min()))


def test_streamed_import_matches_one_shot(shared_data: Path, tmp_path: Path) -> None:
    """The CLI path (streamed, with progress) and the library path give the same trace."""
    src = shared_data / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
    seen: list[int] = []
    a = import_trace("azure-llm", src, tmp_path / "a.parquet", progress=seen.append)
    b = import_trace("azure-llm", src, tmp_path / "b.parquet")
    assert a.equals(b)
    assert read_trace(tmp_path / "a.parquet").equals(read_trace(tmp_path / "b.parquet"))
    assert sum(seen) == src.stat().st_size and all(n >= 0 for n in seen)
