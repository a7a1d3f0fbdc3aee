"""Remote embedding lookups of R&R models sharded across hosts, as fabric flows
(engine/fabric/embedding.py; docs/network.md, "Remote embedding lookups")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import make_requests
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
EMB = ROOT / "configs" / "scenarios" / "fabric-embeddings.yaml"
NIC = 200e9 / 8  # bytes/s of one MTIA 2i rack NIC (catalog: 4 x 200 Gb/s per host)


def _scenario(hosts: int = 2, fabric: dict[str, Any] | None = None, events: Any = ()) -> Any:
    data = load_yaml(EMB)
    data["regions"][0]["pools"][0]["embedding_hosts"] = hosts
    if fabric:
        data["fabric"] = fabric
    data["events"] = [dict(e) for e in events]
    return parse_scenario(data, str(EMB))


def _trace(n: int, gap_ns: int, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.integers(gap_ns // 2, gap_ns * 3 // 2, n)).astype(np.int64)
    return make_requests(arrival, items=rng.integers(1, 1024, n).astype(np.int32))


def _sorted(rows: Any) -> Any:
    return rows.take(np.argsort(rows.request_id))


def test_low_load_wait_is_latency_plus_bytes_over_the_peer_rate() -> None:
    """One request per batch (50 ms apart): each waits path latency (1 hop inside a rack,
    3 across: hosts 2 and 3 of the 2 racks x 3 hosts pair up across racks) + items x E / 2
    over 4 NIC stripes of 25 GB/s; the requests' latency grows by exactly that wait against
    tables kept local."""
    model = load_catalog().model("hc4")
    per_item = model.embedding_bytes_per_sample / 2
    assert per_item == 768 * 128 * 2 / 2
    trace = _trace(60, 50_000_000)
    local = _sorted(Simulation(_scenario(hosts=1)).run(trace).requests)
    remote = _sorted(Simulation(_scenario(hosts=2)).run(trace).requests)
    assert np.all(local.network_ns == 0)
    hops = np.where(np.isin(remote.host_id, [2, 3]), 3, 1)
    want = hops * 600 + np.ceil(trace.items * per_item / (4 * NIC) * 1e9).astype(np.int64)
    np.testing.assert_allclose(remote.network_ns, want, atol=1)
    grown = (remote.finish_ns - remote.arrival_ns) - (local.finish_ns - local.arrival_ns)
    np.testing.assert_array_equal(grown, remote.network_ns)


def test_more_peers_share_the_receivers_nics_and_slower_nics_scale() -> None:
    """With 3 hosts per group a host receives from 2 peers at once: max-min gives each half
    of its 4 NICs (12.5 GB/s a stripe) for 1/3 of the rows; 50 Gb/s NICs are 4x slower."""
    trace = _trace(30, 50_000_000, seed=2)
    e = load_catalog().model("hc4").embedding_bytes_per_sample
    three = _sorted(Simulation(_scenario(hosts=3)).run(trace).requests)
    slow = _sorted(Simulation(_scenario(hosts=2, fabric={"nic_gbit_s": 50})).run(trace).requests)
    per_item_3 = e / 3 / (4 * NIC / 2) * 1e9
    per_item_slow = e / 2 / (4 * NIC / 4) * 1e9
    for rows, per_item in ((three, per_item_3), (slow, per_item_slow)):
        fixed = rows.network_ns - np.ceil(trace.items * per_item).astype(np.int64)
        assert set(fixed.tolist()) <= {600, 1800, 599, 601, 1799, 1801}


def test_links_carry_the_looked_up_bytes() -> None:
    """links/ bytes on the receiving NICs' down links: (N - 1) / N of each served item's
    rows (each peer's share), counted from the devices' item counters."""
    import pyarrow as pa

    from mtia_cluster.results.links import link_table
    from mtia_cluster.results.run import device_tables

    trace = _trace(300, 3_000_000, seed=3)
    run = Simulation(_scenario(hosts=3)).run(trace)
    t = link_table(run.topology, run.regions, pa.concat_tables(device_tables(run))).to_pydict()
    down = [n.startswith("host") and n.endswith("/down") for n in t["link"]]
    moved = np.asarray(t["bytes"])[down].sum()
    e = load_catalog().model("hc4").embedding_bytes_per_sample
    assert moved == pytest.approx(int(trace.items.sum()) * e * 2 / 3, rel=1e-6)


_events = st.lists(
    st.fixed_dictionaries(
        {
            "at_s": st.integers(0, 1),
            "kind": st.sampled_from(["link_degrade", "link_fail", "link_repair"]),
            "region": st.just("us-east"),
            "links": st.lists(st.integers(0, 5), min_size=1, max_size=2),
            "nics": st.lists(st.integers(0, 2), min_size=1, max_size=2),
            "bandwidth_factor": st.floats(0.1, 1.0),
        }
    ),
    max_size=3,
)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(_events, st.sampled_from([2, 3]), st.sampled_from([2, [[0, 5], [1, 3], [2, 4]]]))
def test_rows_identical_for_any_sharding(events: list[dict[str, Any]], hosts: int, shards: Any):
    """NIC failures, repairs and degradations mid-run (NIC 3 never fails): one shard and
    other shardings / window-by-window stepping give the same rows, network_ns included,
    and every request is served once."""
    for ev in events:
        if ev["kind"] != "link_degrade":
            del ev["bandwidth_factor"]
    sc, trace = _scenario(hosts=hosts, events=events), _trace(400, 4_000_000, seed=4)
    base = Simulation(sc).run(trace).requests
    assert sorted(base.request_id.tolist()) == trace.request_id.tolist()
    assert np.all(base.network_ns > 0)
    other = Simulation(sc, shards=shards).run(trace, coalesce_idle=False).requests
    for k, v in base.columns().items():
        np.testing.assert_array_equal(v, other.columns()[k], err_msg=k)


def test_embedding_hosts_must_divide_the_pools_hosts() -> None:
    with pytest.raises(UserError) as err:
        _scenario(hosts=4)
    assert "embedding_hosts" in str(err.value) and "must divide the pool's 6 hosts" in str(
        err.value
    )
