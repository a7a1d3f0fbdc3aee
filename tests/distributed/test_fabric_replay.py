"""The fabric in a replay (#16): for any placement, `replay` gives `simulate`'s requests
(network_ns included), summary and links/ rows, on the sharded-embedding R&R scenario with
link events drawn by Hypothesis."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.distributed.runner import ReplayOptions, replay
from mtia_cluster.results.links import read_links

from .conftest import REPO, assert_same_run, requests_of

EMB = REPO / "configs" / "scenarios" / "fabric-embeddings.yaml"
PLACEMENTS = {
    "region": {},
    "host": {"placement": "host"},
    "rack": {"placement": "rack"},
    "shards2": {"shards": 2},
    "shards4": {"shards": 4},
}


def _links(run: Path) -> dict:
    links = read_links(run)
    assert links is not None
    keys = [("interval_start_ns", "ascending"), ("region", "ascending"), ("link", "ascending")]
    return links.to_table().sort_by(keys).to_pydict()


@settings(
    max_examples=4,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    placement=st.sampled_from(sorted(PLACEMENTS)),
    hosts=st.sampled_from([2, 3]),
    at_s=st.integers(0, 2),
    host=st.integers(0, 5),
    factor=st.sampled_from([0.1, 0.5]),
)
def test_replay_equals_simulate_for_any_placement(
    runner, tmp_path_factory, placement: str, hosts: int, at_s: int, host: int, factor: float
) -> None:
    tmp = tmp_path_factory.mktemp("fabric")
    trace = tmp / "rank.parquet"
    args = ["trace", "generate", "--service", "feed-ranking", "--rate", "1500"]
    args += ["--duration", "3", "--region", "us-east", "--seed", "2", "-o", str(trace)]
    assert runner.invoke(cli, args).exit_code == 0
    sets = [
        f"regions.0.pools.0.embedding_hosts={hosts}",
        f"events=[{{at_s: {at_s}, kind: link_degrade, region: us-east, links: [{host}], "
        f"nics: [0, 1], bandwidth_factor: {factor}}}]",
    ]
    ref = tmp / "simulate"
    args = ["simulate", str(EMB), "--trace", str(trace), "-o", str(ref)]
    for s in sets:
        args += ["--set", s]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    out = replay(
        EMB,
        trace,
        tmp / "replay",
        ReplayOptions(address="inprocess", overrides=tuple(sets), **PLACEMENTS[placement]),
    )
    assert_same_run(out, ref)
    assert _links(out) == _links(ref)
    rows = requests_of(out)
    assert min(rows["network_ns"]) > 0  # every batch fetched rows from a peer
