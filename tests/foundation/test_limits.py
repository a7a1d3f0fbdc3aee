"""Limits before work (issue 11 item 4), configuration side: fleet size, batch sizes, window
length, windows and device intervals, event times, zero weights, YAML depth, alias
expansion and recursion, and the MTIA_CLUSTER_LIMITS override. Each refusal is exit 2 with
one line naming the field and the limit, and no traceback (CLI in-process)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config import load_yaml
from mtia_cluster.config.limits import ENV, Limits
from mtia_cluster.config.scenario import load_scenario
from mtia_cluster.config.scenario_limits import check_run
from mtia_cluster.config.yaml_limits import (
    EXPONENT_FLOAT,
    YamlLimitError,
    check_nodes,
    load_limited,
)
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
RR = str(ROOT / "configs" / "scenarios" / "rr-small.yaml")
RR_POOL = (
    "name: t\nreport_interval_ms: 5\nmetrics_interval_ms: 100\nregions:\n"
    "  - name: us-east\n    pools:\n      - service: feed-ranking\n        model: hc1\n"
    "        platform: mtia-2i-rack\n        racks: 1\n"
)


def laughs(levels: int) -> str:
    """A valid scenario plus 10**levels strings behind `levels + 1` anchors."""
    out = ['a0: &a0 "lol"']
    out += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return RR_POOL + "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 R&R requests 1 ms apart (span 49 ms)."""
    path = tmp_path_factory.mktemp("limits") / "t.parquet"
    n = 50
    table = pa.table(
        {
            "request_id": pa.array(range(n), pa.int64()),
            "arrival_ns": pa.array([i * 1_000_000 for i in range(n)], pa.int64()),
            "service": pa.array(["feed-ranking"] * n).dictionary_encode(),
            "items": pa.array([100] * n, pa.int32()),
        }
    )
    pq.write_table(table, path)
    return path


def one_line_error(args: list[str], *needles: str, env: dict[str, str] | None = None) -> str:
    """Run the CLI in-process: exit 2, one `error:` line with every needle, no traceback."""
    result = CliRunner(env={ENV: "", **(env or {})}).invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def simulate(cfg: str | Path, trace: Path, *sets: str) -> list[str]:
    return ["simulate", str(cfg), "--trace", str(trace), *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (
            ["regions.0.pools.0.racks=1000000"],
            ["regions[0].pools[0].racks", "accelerators=1,000,000"],
        ),
        ([f"regions.0.pools.0.racks={10**23}"], ["regions[0].pools[0].racks", "7.2e+24"]),
        (
            [f"regions.0.pools.0.batching.max_items={10**12}"],
            ["batching.max_items", "items_per_request=1,000,000"],
        ),
        (["report_interval_ms=0.000001"], ["report_interval_ms", "report_interval_min_ns=1,000"]),
        (
            ["events=[{at_s: 1.0e+30, kind: fail, region: us-east, hosts: [0]}]"],
            ["events[0].at_s", "trace_span_s="],
        ),
        (["regions.0.weight=0"], ["regions[0].weight", "weight 0"]),
        (["x=" + "[" * 100 + "]" * 100], ["--set", "yaml_depth=64"]),
    ],
)
def test_config_sizes_refused_before_work(trace: Path, sets: list[str], needles: list[str]) -> None:
    one_line_error(simulate(RR, trace, *sets), *needles)


def test_windows_and_device_intervals_need_the_trace_span(trace: Path) -> None:
    # 49 ms at 1 us windows = 49,001 windows: refused by a lowered limit, named with the span
    sets = ("report_interval_ms=0.001", "metrics_interval_ms=1")
    one_line_error(
        simulate(RR, trace, *sets), "report_interval_ms", "windows=1,000", env={ENV: "windows=1000"}
    )
    sc = load_scenario(RR)
    with pytest.raises(UserError, match="device_intervals=100"):
        check_run(sc, 10**9, Limits(device_intervals=100))  # 12 intervals x 72 accelerators
    check_run(sc, 10**9, Limits(device_intervals=12 * 72))  # exactly at the limit: accepted
    with pytest.raises(UserError, match="windows_x_pools=10"):
        check_run(sc, 10**8, Limits(windows_x_pools=10))


def test_streamed_runs_have_the_on_disk_device_bound(tmp_path: Path, trace: Path) -> None:
    # a run that streams devices/ (simulate -o, replay) is bounded by the on-disk limit only
    sc = load_scenario(RR)
    check_run(sc, 10**9, Limits(device_intervals=100), streamed=True)
    with pytest.raises(UserError, match="streamed_device_intervals=100"):
        check_run(sc, 10**9, Limits(streamed_device_intervals=100), streamed=True)
    args = [*simulate(RR, trace), "-o", str(tmp_path / "out")]  # 2 intervals x 72 > 100
    env = {ENV: "streamed_device_intervals=100"}
    one_line_error(args, "metrics_interval_ms", "streamed_device_intervals=100", env=env)
    assert not (tmp_path / "out").exists()
    # `simulate` folds its device samples as they come, with -o or without (no device row
    # is kept in memory): the in-memory bound refuses neither, the streamed one both
    one_line_error(simulate(RR, trace), "streamed_device_intervals=100", env=env)
    for cmd in (simulate(RR, trace), args):
        result = CliRunner(env={ENV: "device_intervals=100"}).invoke(cli, [*cmd, "--json"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "summary.json").is_file()


def test_billion_laughs_and_recursive_alias_refused(tmp_path: Path, trace: Path) -> None:
    cfg = tmp_path / "l.yaml"
    cfg.write_text(laughs(9))
    out = tmp_path / "out"
    one_line_error([*simulate(cfg, trace), "-o", str(out)], "l.yaml", "yaml_nodes=1,000,000")
    rec = tmp_path / "r.yaml"
    rec.write_text(RR_POOL + "a: &a [*a]\n")
    one_line_error([*simulate(rec, trace), "-o", str(out)], "r.yaml: line 11", "recursive alias")
    assert not out.exists()


def test_aliases_are_counted_expanded_exactly() -> None:
    text = "a: &x [1, 2]\nb: *x\n"  # root + 2 keys + the list (3 nodes) twice = 9
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    check_nodes(node, Limits(yaml_nodes=9))
    with pytest.raises(YamlLimitError, match="9 nodes"):
        check_nodes(node, Limits(yaml_nodes=8))
    check_nodes(node, Limits(yaml_depth=3))  # mapping > list > scalar
    with pytest.raises(YamlLimitError, match="yaml_depth=3"):
        check_nodes(yaml.compose("a: [[1]]", Loader=yaml.SafeLoader), Limits(yaml_depth=3))


def test_limits_raised_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.yaml"
    path.write_text(laughs(6))  # 1,111,111 strings: over the default 1,000,000
    with pytest.raises(UserError, match="yaml_nodes"):
        load_yaml(path)
    monkeypatch.setenv(ENV, "yaml_nodes=2000000")
    assert load_yaml(path)["a6"][0][0][0][0][0][0] == "lol"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("racks=5", "NAME one of"),
        ("accelerators", "NAME one of"),
        ("accelerators=0", "positive integer"),
        ("accelerators=1.5", "positive integer"),
        ("trace_span_s=nan", "positive number"),
    ],
)
def test_bad_override_is_one_line(text: str, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as err:
        Limits.from_env({ENV: text})
    assert ENV in str(err.value)


def test_override_parses_numbers() -> None:
    lim = Limits.from_env({ENV: "accelerators=2e6, trace_span_s=1.5e7"})
    assert (lim.accelerators, lim.trace_span_s) == (2_000_000, 1.5e7)
    assert Limits.from_env({}) == Limits()


# text that reads as an exponent float (`1e5`) is the one documented difference from
# safe_load (YAML 1.2 floats, tests/config/test_yaml_numbers.py): safe_dump writes it unquoted
_text = st.text(max_size=8).filter(lambda s: not EXPONENT_FLOAT.match(s))
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=60)
@given(value=json_like)
def test_limited_loader_reads_what_safe_load_reads(value: object) -> None:
    text = yaml.safe_dump(value)
    assert load_limited(text) == yaml.safe_load(text)
