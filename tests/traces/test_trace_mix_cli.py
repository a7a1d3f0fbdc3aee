"""Mix specs, determinism, the demo sample, the CLI and transforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.errors import UserError
from mtia_cluster.traces import transforms as tf
from mtia_cluster.traces.generators import DEMO_SPEC, generate_demo_trace, generate_table
from mtia_cluster.traces.io import read_metadata, read_trace, write_trace

REPO = Path(__file__).resolve().parents[2]


def _spec(**over: object) -> dict:
    spec = {
        "duration_s": 120,
        "regions": {"a": {"weight": 1.0}, "b": {"weight": 3.0}},
        "services": [
            {"name": "rr", "kind": "rr", "rate_per_s": 40.0},
            {
                "name": "chat",
                "kind": "llm",
                "rate_per_s": 10.0,
                "arrivals": {"process": "gamma", "cv": 2.0},
            },
        ],
    }
    spec.update(over)
    return spec


def test_mix_columns_shares_and_nulls() -> None:
    t, meta = generate_table(_spec(), seed=3)
    svc = np.array(t.column("service").to_pylist())
    reg = np.array(t.column("region").to_pylist())
    assert abs((svc == "rr").mean() - 0.8) < 0.03
    assert abs((reg == "b").mean() - 0.75) < 0.03
    items, inp = t.column("items").to_pylist(), t.column("input_tokens").to_pylist()
    assert all((i is None) == (s == "chat") for i, s in zip(items, svc, strict=True))
    assert all((i is None) == (s == "rr") for i, s in zip(inp, svc, strict=True))
    assert t.column("request_id").to_pylist() == list(range(t.num_rows))
    assert meta["parameters"]["seed"] == 3 and "CC-BY-4.0" in meta["source"]


def test_adding_a_service_keeps_other_streams() -> None:
    one, _ = generate_table(_spec(services=_spec()["services"][:1]), seed=9)
    two, _ = generate_table(_spec(), seed=9)
    rr = two.filter(pa.compute.equal(two.column("service").cast(pa.string()), "rr"))
    assert rr.column("arrival_ns").to_pylist() == one.column("arrival_ns").to_pylist()
    assert rr.column("items").to_pylist() == one.column("items").to_pylist()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, runner) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(_spec()))
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.parquet"
        r = runner.invoke(
            cli, ["trace", "generate", "--spec", str(spec), "--seed", str(seed), "-o", str(out)]
        )
        assert r.exit_code == 0, r.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    rate=st.floats(0.5, 200),
    dur=st.floats(1, 60),
    process=st.sampled_from(["poisson", "gamma", "weibull", "onoff"]),
    diurnal=st.booleans(),
    kind=st.sampled_from(["rr", "llm"]),
)
def test_generated_traces_are_valid(
    seed: int, rate: float, dur: float, process: str, diurnal: bool, kind: str
) -> None:
    svc: dict = {
        "name": "s",
        "kind": kind,
        "rate_per_s": rate,
        # cv only where it means something (elsewhere it is refused as an unknown key)
        "arrivals": {
            "process": process,
            **({"cv": 1.7} if process in ("gamma", "weibull") else {}),
        },
    }
    if diurnal:
        svc["diurnal"] = {"peak_to_trough": 5.0}
    try:
        t, _ = generate_table({"duration_s": dur, "services": [svc]}, seed)
    except UserError as exc:  # only "no requests" is an acceptable outcome for tiny loads
        assert "no requests" in str(exc)
        return
    arrival = t.column("arrival_ns").to_numpy()
    assert np.all(np.diff(arrival) >= 0) and arrival.min() >= 0 and arrival.max() < dur * 1e9
    ids = t.column("request_id").to_numpy()
    assert len(np.unique(ids)) == len(ids)
    size_col = "items" if kind == "rr" else "output_tokens"
    assert t.column(size_col).null_count == 0 and pa.compute.min(t.column(size_col)).as_py() >= 1


def test_offline_and_request_count(tmp_path: Path) -> None:
    t, _ = generate_table(
        {
            "requests": 1000,
            "services": [
                {"name": "s", "kind": "rr", "rate_per_s": 1.0, "arrivals": {"process": "offline"}}
            ],
        }
    )
    assert t.num_rows == 1000 and set(t.column("arrival_ns").to_pylist()) == {0}


def test_demo_spec_matches_config_and_committed_sample(tmp_path: Path) -> None:
    assert yaml.safe_load((REPO / "configs/traces/demo.yaml").read_text()) == DEMO_SPEC
    out = generate_demo_trace(tmp_path / "demo.parquet", seed=0)
    # same rows and metadata as the committed file (bytes could differ across pyarrow
    # versions: the Parquet footer names the writer version)
    committed = REPO / "traces/demo.parquet"
    assert read_trace(out).equals(read_trace(committed))
    assert read_metadata(out) == read_metadata(committed)
    t = read_trace(out)
    assert set(t.column("service").to_pylist()) == {"rr-ranking", "llm-chat"}
    assert set(t.column("region").to_pylist()) == {"us-east", "eu-west"}
    assert 1000 < t.num_rows < 20_000 and out.stat().st_size < 500_000


def test_example_specs_generate(tmp_path: Path) -> None:
    for name in ("demo", "fleet-day"):
        spec = yaml.safe_load((REPO / f"configs/traces/{name}.yaml").read_text())
        spec["duration_s"] = 60
        t, _ = generate_table(spec, 0)
        assert t.num_rows > 0


def test_cli_generate_options_and_inspect_json(tmp_path: Path, runner) -> None:
    out = tmp_path / "g.parquet"
    r = runner.invoke(
        cli,
        [
            "trace",
            "generate",
            "--rate",
            "200",
            "--duration",
            "300",
            "--region",
            "x",
            "--region",
            "y",
            "--seed",
            "4",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["trace", "inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in (
        "rows",
        "span_s",
        "rate_per_s",
        "iat_cv",
        "services",
        "regions",
        "rate_per_min",
        "peak_to_mean",
        "sizes",
    ):
        assert key in s
    assert abs(s["rate_per_s"] / 200 - 1) < 0.02 and abs(s["iat_cv"] - 1) < 0.03
    assert s["services"]["rr-ranking"]["rows"] == s["rows"]
    assert sum(s["per_minute_counts"]) == s["rows"]
    assert s["sizes"]["items"]["p50"] == 200


def test_cli_generate_set_override(tmp_path: Path, runner) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(_spec()))
    out = tmp_path / "o.parquet"
    r = runner.invoke(
        cli, ["trace", "generate", "--spec", str(spec), "--set", "duration_s=10", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert read_trace(out).column("arrival_ns").to_numpy().max() < 10e9
    assert read_metadata(out)["parameters"]["spec"]["duration_s"] == 10


def test_transforms(table: pa.Table, make_table) -> None:
    scaled = tf.scale_rate(table, 2.0)
    assert scaled.column("arrival_ns").to_pylist() == [i * 500_000 for i in range(20)]
    cut = tf.time_slice(table, 5_000_000, 10_000_000)
    assert cut.column("request_id").to_pylist() == [5, 6, 7, 8, 9]
    assert cut.column("arrival_ns")[0].as_py() == 0
    big = make_table(20_000)
    kept = tf.sample_fraction(big, 0.25, seed=1).num_rows
    assert abs(kept - 5000) < 5 * np.sqrt(20_000 * 0.25 * 0.75)
    assert tf.sample_fraction(big, 0.25, seed=1).equals(tf.sample_fraction(big, 0.25, seed=1))
    renamed = tf.remap_services(table, {"rr": "ranking", "llm": "ranking"})
    assert set(renamed.column("service").to_pylist()) == {"ranking"}
    merged = tf.merge([table, tf.scale_rate(table, 3.0).drop(["region"])])
    assert merged.num_rows == 40
    assert np.all(np.diff(merged.column("arrival_ns").to_numpy()) >= 0)
    assert merged.column("request_id").to_pylist() == list(range(40))
    assert merged.column("region").null_count == 20


def test_cli_transform_round_trip(tmp_path: Path, runner, table: pa.Table) -> None:
    src = write_trace(table, tmp_path / "in.parquet", {"source": "s", "licence": "l"})
    out = tmp_path / "out.parquet"
    r = runner.invoke(
        cli,
        [
            "trace",
            "transform",
            str(src),
            str(src),
            "--remap",
            "rr=x",
            "--scale-rate",
            "2",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    t = read_trace(out)
    assert t.num_rows == 40 and "x" in t.column("service").to_pylist()
    assert read_metadata(out)["parameters"]["scale_rate"] == 2.0


@pytest.mark.parametrize("bad", ["rr", "=x", "rr="])
def test_cli_transform_bad_remap(
    tmp_path: Path, runner, table: pa.Table, user_error, files_in, bad: str
) -> None:
    src = write_trace(table, tmp_path / "in.parquet", {})
    user_error(
        runner,
        ["trace", "transform", str(src), "--remap", bad, "-o", str(tmp_path / "o.parquet")],
        "--remap",
        "OLD=NEW",
    )
    assert files_in(tmp_path) == ["in.parquet"]


def test_cli_spec_with_single_service_option_is_user_error(
    tmp_path: Path, runner, user_error, files_in
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(_spec()))
    user_error(
        runner,
        [
            "trace",
            "generate",
            "--spec",
            str(spec),
            "--rate",
            "5",
            "-o",
            str(tmp_path / "o.parquet"),
        ],
        "--rate",
        "--spec",
    )
    assert files_in(tmp_path) == ["s.yaml"]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    k=st.floats(0.1, 10),
    lo=st.floats(0, 50),
    width=st.floats(1, 100),
    frac=st.floats(0.05, 1.0),
)
def test_transforms_keep_traces_valid(
    seed: int, k: float, lo: float, width: float, frac: float
) -> None:
    a, _ = generate_table(_spec(duration_s=60), seed)
    b, _ = generate_table(_spec(duration_s=30, regions={"c": {}}), seed + 1)
    merged = tf.merge([a, b])
    assert merged.num_rows == a.num_rows + b.num_rows
    out = tf.sample_fraction(
        tf.scale_rate(tf.time_slice(merged, int(lo * 1e9), int((lo + width) * 1e9)), k), frac, seed
    )
    t = out.column("arrival_ns").to_numpy()
    assert np.all(np.diff(t) >= 0) and (len(t) == 0 or t.min() >= 0)
    assert len(t) == 0 or t.max() < width * 1e9 / k + 1
    ids = out.column("request_id").to_numpy()
    assert len(np.unique(ids)) == len(ids)
    assert set(out.column("service").to_pylist()) <= {"rr", "chat"}
