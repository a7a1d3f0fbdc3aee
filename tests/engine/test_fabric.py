"""The scale-out fabric (engine/fabric/): max-min fair rates, paths and reroutes on link
events, cells seeing the achieved bandwidth, exactness across shardings, links/ bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.models import ScenarioFile
from mtia_cluster.config.overrides import apply_overrides
from mtia_cluster.config.scenario import load_scenario, parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.fabric import build_schedule, max_min_rates
from mtia_cluster.engine.fabric.cells import FabricCell
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.topology import build_topology
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FABRIC_PP = ROOT / "configs" / "scenarios" / "fabric-pp.yaml"


@st.composite
def networks(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    links = draw(st.integers(1, 6))
    flows = draw(st.integers(1, 8))
    capacity = np.array(draw(st.lists(st.floats(0.0, 100.0), min_size=links, max_size=links)))
    fe, le = [], []
    for f in range(flows):
        for link in sorted(draw(st.sets(st.integers(0, links - 1), min_size=1))):
            fe.append(f)
            le.append(link)
    return np.array(fe), np.array(le), capacity, flows


@given(networks())
@settings(max_examples=200, deadline=None)
def test_max_min_is_feasible_and_every_flow_has_a_bottleneck(net: Any) -> None:
    """No link carries more than its capacity, and every flow crosses a saturated link on
    which no flow gets more than it (the definition of max-min fairness)."""
    fe, le, capacity, flows = net
    rate = max_min_rates(fe, le, capacity, flows)
    load = np.bincount(le, weights=rate[fe], minlength=len(capacity))
    assert np.all(load <= capacity * (1 + 1e-9) + 1e-9)
    for f in range(flows):
        mine = le[fe == f]
        ok = False
        for link in mine:
            full = load[link] >= capacity[link] * (1 - 1e-9) - 1e-9
            top = rate[fe[le == link]].max() <= rate[f] * (1 + 1e-9) + 1e-12
            ok |= bool(full and top)
        assert ok, (f, rate, load, capacity)


def test_max_min_classic_example() -> None:
    """Link A (cap 1) shared by flows 0 and 1, link B (cap 2) by flows 1 and 2: flows 0, 1
    get 1/2 on A, flow 2 takes the rest of B (3/2); a flow on no link is unconstrained."""
    rate = max_min_rates(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), np.array([1.0, 2.0]), 4)
    np.testing.assert_allclose(rate[:3], [0.5, 0.5, 1.5])
    assert rate[3] == np.inf


def _scenario(sets: list[str] = (), events: list[dict[str, Any]] | None = None) -> Any:
    """fabric-pp with `--set` overrides and link events."""
    data = apply_overrides(load_yaml(FABRIC_PP), list(sets), ScenarioFile)
    data["events"] = [dict(ev) for ev in events or []]
    return parse_scenario(data, str(FABRIC_PP))


def _schedule(sets: list[str] = (), events: list[dict[str, Any]] | None = None) -> Any:
    return build_schedule(build_topology(_scenario(sets, events), load_catalog()))


GB = 1e9


def test_nominal_fabric_gives_each_stripe_its_nic_and_oversubscription_divides() -> None:
    """4 replicas x 8 stripes, one host per rack: each stripe has its own NIC and its own
    spine at 1:1 (50 GB/s); at 4:1 the rack uplinks carry a quarter (12.5 GB/s)."""
    s = _schedule()
    assert len(s.flows) == 4 * 8
    np.testing.assert_allclose(s.flow_rate[0], 50 * GB)
    np.testing.assert_allclose(_schedule(["fabric.oversubscription=4"]).flow_rate[0], 12.5 * GB)
    np.testing.assert_allclose(_schedule(["fabric.nic_gbit_s=100"]).flow_rate[0], 12.5 * GB)
    assert (s.flow_hops[0] == 3).all()  # NIC -> ToR -> spine -> ToR -> NIC


def test_failed_nic_reroutes_its_stripes_and_repair_restores() -> None:
    """Host 0's NIC 0 fails: its stripe moves to another NIC, which two stripes then share
    (25 GB/s each); other replicas are untouched; a repair brings 50 GB/s back."""
    ev = [
        {"at_s": 1, "kind": "link_fail", "region": "us-east", "links": [0], "nics": [0]},
        {"at_s": 2, "kind": "link_repair", "region": "us-east", "links": [0], "nics": [0]},
    ]
    s = _schedule(events=ev)
    assert s.start_ns == [0, 1_000_000_000, 2_000_000_000]
    cell0 = s.flows.cell == 0
    rate = s.flow_rate[1]
    assert rate[cell0].min() == pytest.approx(25 * GB)
    np.testing.assert_allclose(rate[~cell0], 50 * GB)
    np.testing.assert_allclose(s.flow_rate[2], 50 * GB)
    assert s.cell_segments(0)[1][1] == pytest.approx(25 * GB)


def test_degraded_spines_and_failed_spines() -> None:
    """Half the spines failed: stripes crowd onto the rest (two per uplink, 25 GB/s); a
    spine degraded to 0.5 halves the stripes that use it, with no reroute."""
    fail = [{"at_s": 0, "kind": "link_fail", "region": "us-east", "spines": [0, 1, 2, 3]}]
    np.testing.assert_allclose(_schedule(events=fail).flow_rate[0], 25 * GB)
    slow = [
        {"at_s": 0, "kind": "link_degrade", "region": "us-east", "spines": [0]}
        | {"bandwidth_factor": 0.5}
    ]
    rate = _schedule(events=slow).flow_rate[0]
    assert sorted(set(np.round(rate / GB, 6))) == [25.0, 50.0]


def test_no_path_left_is_refused_and_bad_link_events_are_one_line_errors() -> None:
    every_nic = [{"at_s": 1, "kind": "link_fail", "region": "us-east", "links": [0]}]
    with pytest.raises(UserError, match="without a path"):
        _schedule(events=every_nic)
    with pytest.raises(UserError, match="bandwidth_factor"):
        _scenario(events=[{"at_s": 1, "kind": "link_degrade", "region": "us-east", "spines": [0]}])
    with pytest.raises(UserError, match=r"link events|only for link"):
        _scenario(events=[{"at_s": 1, "kind": "fail", "region": "us-east", "spines": [0]}])
    with pytest.raises(UserError):
        _scenario(["fabric.oversubscription=0.5"])
    with pytest.raises(UserError, match="spines"):
        _schedule(events=[{"at_s": 1, "kind": "link_fail", "region": "us-east", "spines": [8]}])


def _trace(n: int = 120, gap_ns: float = 3e8, seed: int = 7) -> Any:
    rng = entity_rng(seed, 2)
    arrival = np.cumsum(np.ceil(rng.standard_exponential(n) * gap_ns)).astype(np.int64)
    inp = np.clip(np.round(rng.lognormal(np.log(2000), 0.5, n)), 16, 4000).astype(np.int32)
    out = np.clip(np.round(rng.lognormal(np.log(60), 0.5, n)), 1, 400).astype(np.int32)
    return make_requests(arrival, items=0, input_tokens=inp, output_tokens=out)


_event = {
    "at_s": st.integers(0, 12),
    "kind": st.sampled_from(["link_degrade", "link_fail", "link_repair"]),
    "region": st.just("us-east"),
}
link_events = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {**_event, "spines": st.lists(st.integers(0, 6), min_size=1, max_size=3)}
        ),
        st.fixed_dictionaries(
            {
                **_event,
                "links": st.lists(st.integers(0, 7), min_size=1, max_size=2),
                "nics": st.lists(st.integers(0, 6), min_size=1, max_size=3),
            }
        ),
    ),
    max_size=3,
)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(link_events, st.sampled_from([1.0, 2.0, 4.0]), st.floats(0.05, 1.0))
def test_rows_identical_for_any_sharding_with_link_events(
    events: list[dict[str, Any]], over: float, factor: float
) -> None:
    """Random spine and NIC failures, repairs and degradations mid-run (spine 7 and NIC 7
    never fail, so a path always exists): one shard, three shards and window-by-window
    stepping give the same rows, and every request is served once (conservation)."""
    for ev in events:
        if ev["kind"] == "link_degrade":
            ev["bandwidth_factor"] = factor
    sc, trace = _scenario([f"fabric.oversubscription={over}"], events), _trace(n=60)
    base = Simulation(sc).run(trace)
    assert sorted(base.requests.request_id.tolist()) == sorted(trace.request_id.tolist())
    assert (base.requests.status == 0).all()
    for shards, coalesce in ((3, True), ([[0, 3], [1], [2]], False)):
        other = Simulation(sc, shards=shards).run(trace, coalesce_idle=coalesce)
        for k, v in base.requests.columns().items():
            np.testing.assert_array_equal(v, other.requests.columns()[k], err_msg=k)


def test_cells_wrapped_only_when_they_cross_the_fabric() -> None:
    """fabric-pp's replicas are wrapped; a TP=1 scenario builds no fabric at all."""
    sim = Simulation(_scenario())
    assert all(isinstance(g.cell, FabricCell) for s in sim.shards for g in s.groups)
    small = Simulation(load_scenario(ROOT / "configs" / "scenarios" / "llm-small.yaml"))
    assert small.topology.fabric.net is None
    assert not any(isinstance(g.cell, FabricCell) for s in small.shards for g in s.groups)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["fabric.oversubscription=4", "fabric.nic_gbit_s=100"]))
def test_slower_fabric_adds_the_predicted_prefill_time(change: str) -> None:
    """Alone on the replica (no queueing, one request per iteration) each prompt's prefill
    iteration grows by the PP hand-off's extra time (docs/network.md): (pp-1) x P x hidden x
    2 B / bw_fraction x (1/12.5 - 1/50) per GB/s; measured mean TTFT growth within 1%.
    Only requests arriving after the previous one finished (in the slower run, so in both)
    count: one arriving during another's decode waits for an iteration boundary, whose phase
    the fabric shifts either way."""
    trace = _trace(n=60, gap_ns=5e9)
    fast = Simulation(_scenario()).run(trace).requests
    slow = Simulation(_scenario([change])).run(trace).requests
    order = np.argsort(slow.arrival_ns)
    busy_until = np.maximum.accumulate(slow.finish_ns[order])
    alone = order[1:][slow.arrival_ns[order][1:] > busy_until[:-1]]
    assert len(alone) >= 15
    measured = np.mean((slow.first_token_ns[alone] - fast.first_token_ns[alone]) / 1e9)
    chip = load_catalog().chip("h100")
    frac = chip.op_params.send_recv_out.bw_fraction
    act = np.mean(trace.input_tokens[alone]) * 8192 * 2.0
    predicted = act / frac * (1 / (12.5 * GB) - 1 / (50 * GB))
    assert measured == pytest.approx(predicted, rel=0.01)


def test_links_bytes_follow_the_tokens_and_oversubscription_shows(tmp_path: Path) -> None:
    """Every byte a replica hands across is on its NIC-up links once; at 4:1 the rack
    uplinks carry the same bytes on a quarter of the bandwidth (utilization = bytes over
    bandwidth x interval)."""
    import pyarrow as pa

    from mtia_cluster.results.links import link_table
    from mtia_cluster.results.run import device_tables

    trace = _trace(n=60)
    tables = []
    for sets in ([], ["fabric.oversubscription=4"]):
        run = Simulation(_scenario(sets)).run(trace)
        devices = pa.concat_tables(device_tables(run))
        tables.append(link_table(run.topology, run.regions, devices).to_pydict())
        last = run.samples[-1][1]
        tokens = sum(int(last.work_units[run.topology.cell_acc0[c]]) for c in range(4))

    def rows(t: dict[str, list[Any]], part: str, col: str) -> np.ndarray:
        keep = [part in name and name.endswith("/up") for name in t["link"]]
        return np.asarray(t[col])[keep]

    a, b = tables
    assert rows(a, "nic", "bytes").sum() == pytest.approx(tokens * 8192 * 2.0, rel=1e-6)
    assert rows(a, "spine", "bytes").sum() == rows(b, "spine", "bytes").sum() > 0
    cap_a, cap_b = (
        rows(a, "spine", "capacity_bytes_per_s"),
        rows(b, "spine", "capacity_bytes_per_s"),
    )
    np.testing.assert_allclose(cap_b, cap_a[0] / 4)
    dt = (np.asarray(b["interval_end_ns"]) - np.asarray(b["interval_start_ns"])) / 1e9
    moved = np.asarray(b["utilization"]) * np.asarray(b["capacity_bytes_per_s"]) * dt
    np.testing.assert_allclose(moved, b["bytes"], rtol=1e-9, atol=1)


def test_disaggregated_kv_links_get_the_fabric_rate() -> None:
    """llm-pd-pools (4 prefill : 4 decode instances of tp=2 on two H100 hosts): each prefill
    instance's flow leaves on its own GPUs' NICs (50 GB/s a stripe, the chip's figure: links
    unchanged); at 4:1 its scale-out KV links run at a quarter, so transfers (in TTFT since
    pd's N:M cell) take longer and first tokens come later."""
    data = load_yaml(ROOT / "configs" / "scenarios" / "llm-pd-pools.yaml")
    trace = _trace(n=40, gap_ns=1e9)
    runs = []
    for over in (1, 4):
        data["fabric"] = {"oversubscription": over}
        sim = Simulation(parse_scenario(dict(data), "llm-pd-pools.yaml"))
        flows = sim.topology.fabric.flows
        assert sorted(set(flows.group.tolist())) == [0, 1, 2, 3] and len(flows) == 8
        np.testing.assert_allclose(sim.topology.fabric.flow_rate[0], 50 * GB / over)
        cell = sim.shards[0].groups[0].cell
        assert isinstance(cell, FabricCell)
        runs.append((sim.run(trace).requests, [k.bytes_per_s for k in cell.inner.links[0]]))
    (fast, links1), (slow, links4) = runs
    assert links4 == [max(1, int(b * 0.25)) for b in links1]
    assert (slow.first_token_ns >= fast.first_token_ns).all()
    assert slow.first_token_ns.sum() > fast.first_token_ns.sum()


def test_replay_equals_simulate_with_link_events(tmp_path: Path) -> None:
    """`replay` (in-process runner: region shards, per-host placement, three shards) gives
    the rows of `simulate` on fabric-pp at 4:1 with a spine degradation and a NIC failure
    mid-run."""
    import pyarrow.dataset as ds
    import yaml
    from click.testing import CliRunner

    from mtia_cluster.cli.main import cli
    from mtia_cluster.distributed.runner import ReplayOptions, replay
    from mtia_cluster.engine.trace_input import load_trace
    from mtia_cluster.results.schema import REQUEST_COLUMNS

    trace = tmp_path / "chat.parquet"
    args = ["trace", "generate", "--service", "chat", "--kind", "llm", "--rate", "3"]
    args += ["--duration", "12", "--region", "us-east", "--seed", "5", "-o", str(trace)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    data = load_yaml(FABRIC_PP)
    data["fabric"] = {"oversubscription": 4}
    data["events"] = [
        {"at_s": 3, "kind": "link_degrade", "region": "us-east", "spines": [0, 1, 2]}
        | {"bandwidth_factor": 0.2},
        {"at_s": 6, "kind": "link_fail", "region": "us-east", "links": [1], "nics": [0, 3]},
    ]
    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(data))
    sc = load_scenario(path)
    engine = Simulation(sc).run(load_trace(trace, sc)).requests
    simulated = tmp_path / "simulated"
    args = ["simulate", str(path), "--trace", str(trace), "-o", str(simulated)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    want_links = _sorted_links(simulated)
    assert want_links["bytes"] and max(want_links["bytes"]) > 0
    for i, opt in enumerate(
        (
            ReplayOptions(address="inprocess"),
            ReplayOptions(address="inprocess", placement="host"),
            ReplayOptions(address="inprocess", shards=2),
            ReplayOptions(address="inprocess", shards=3),
        )
    ):
        run = replay(path, trace, tmp_path / f"run-{i}", opt)
        t = ds.dataset(run / "requests", partitioning="hive").to_table().sort_by("request_id")
        for col in ("request_id", "first_token_ns", "finish_ns", "accelerator_id", "network_ns"):
            assert col in REQUEST_COLUMNS
            assert t.column(col).to_pylist() == getattr(engine, col).tolist(), col
        assert _sorted_links(run) == want_links, opt


def _sorted_links(run: Path) -> dict[str, list[Any]]:
    """A results directory's links/ rows, sorted by (interval, region, link)."""
    from mtia_cluster.results.links import read_links

    links = read_links(run)
    assert links is not None
    keys = [("interval_start_ns", "ascending"), ("region", "ascending"), ("link", "ascending")]
    return links.to_table().sort_by(keys).to_pydict()


@pytest.mark.parametrize(
    ("key", "where", "got"),
    [("nics", {"links": [0], "nics": [1, 9]}, 9), ("spines", {"spines": [8]}, 8)],
)
def test_an_index_out_of_range_names_one_value(key: str, where: dict[str, Any], got: int) -> None:
    ev = {"at_s": 1, "kind": "link_fail", "region": "us-east"} | where
    with pytest.raises(UserError) as err:
        _schedule(events=[ev])
    assert f"events[0].{key}" in str(err.value) and str(err.value).endswith(f"(got {got})")
