"""Autoscaling in the replay (engine/autoscale.py): strict config, start-up time from the
catalog, cold starts and drains, and conservation under scale-out and scale-in."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.catalog import load_catalog
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.autoscale import startup_ns
from mtia_cluster.engine.cell import RequestBatch
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.errors import UserError
from mtia_cluster.results import summarize

CAT = load_catalog()


def _scenario(policy: dict[str, Any] | None, replicas: int = 4, regions: int = 1) -> dict:
    """Synthetic 1 ms servers (one accelerator each) per region, autoscaled by `policy`."""
    doc: dict[str, Any] = {
        "name": "autoscale-test",
        "seed": 3,
        "report_interval_ms": 5.0,
        "metrics_interval_ms": 1000.0,
        "regions": [
            {
                "name": f"r{i}",
                "pools": [
                    {
                        "service": "svc",
                        "model": "svc-exp-1ms",
                        "platform": "hgx-h100",
                        "accelerators": replicas,
                    }
                ],
            }
            for i in range(regions)
        ],
    }
    if policy is not None:
        doc["autoscaling"] = {"svc": policy}
    return doc


def _trace(
    rates: list[float], seconds_each: float, seed: int = 0, regions: int = 1
) -> RequestBatch:
    """Poisson arrivals at each rate in turn for `seconds_each` (regions drawn uniformly)."""
    rng = np.random.default_rng(seed)
    parts, t0 = [], 0.0
    for rate in rates:
        n = rng.poisson(rate * seconds_each)
        parts.append(np.sort(rng.uniform(t0, t0 + seconds_each, n)))
        t0 += seconds_each
    arrival = np.round(np.concatenate(parts) * 1e9).astype(np.int64)
    n = len(arrival)
    zeros = np.zeros(n, dtype=np.int32)
    return RequestBatch(
        request_id=np.arange(n, dtype=np.int64),
        arrival_ns=arrival,
        service=zeros,
        region=rng.integers(0, regions, n).astype(np.int32),
        items=np.ones(n, dtype=np.int32),
        input_tokens=zeros,
        output_tokens=zeros,
        session_id=np.full(n, -1, dtype=np.int64),
        prefix_blocks=np.full(n, None, dtype=object),
    )


def _error(doc: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_scenario(doc, "as.yaml", CAT)
    text = str(info.value)
    assert "\n" not in text and "as.yaml" in text
    return text


@pytest.mark.parametrize(
    ("policy", "field", "words"),
    [
        (
            {"min_replicas": 3, "max_replicas": 2},
            "svc.max_replicas",
            "must be >= min_replicas (3) (got 2)",
        ),
        ({"target_utilization": 0.0}, "autoscaling.svc.target_utilization", "must be > 0"),
        ({"target_utilization": 1.5}, "autoscaling.svc.target_utilization", "must be <= 1"),
        ({"upscale_cooldown_s": -1.0}, "autoscaling.svc.upscale_cooldown_s", "must be >= 0"),
        ({"downscale_cooldown_s": -1.0}, "autoscaling.svc.downscale_cooldown_s", "must be >= 0"),
        (
            {"target_utilization": 0.5, "target_ongoing_requests": 2.0},
            "svc.target_ongoing_r",
            "one",
        ),
        ({"max_replicas": 5}, "autoscaling.svc.max_replicas", "has 4 replicas"),
        ({"min_replicas": 2, "initial_replicas": 1}, "svc.initial_replicas", ">= min_replicas (2)"),
        ({"max_replicas": 2, "initial_replicas": 3}, "svc.initial_replicas", "<= max_replicas (2)"),
        ({"min_replica": 1}, "autoscaling.svc.min_replica", "unknown key"),
        ({"min_replicas": "1"}, "autoscaling.svc.min_replicas", ""),
    ],
)
def test_bad_policies_are_refused_with_one_line(policy: dict, field: str, words: str) -> None:
    text = _error(_scenario(policy))
    assert field in text and words in text


def test_unknown_service_is_refused() -> None:
    doc = _scenario(None)
    doc["autoscaling"] = {"svx": {}}
    assert "autoscaling.svx" in _error(doc) and "unknown service" in _error(doc)


def test_startup_time_is_weights_over_the_slowest_path_plus_init() -> None:
    """Llama 3.1 8B (bf16) on one H100: the slowest of NIC, host DRAM and PCIe, from the
    catalog's own numbers, plus runtime_init_s."""
    doc = _scenario({"runtime_init_s": 7.0})
    pool = doc["regions"][0]["pools"][0]
    pool.update(model="llama-3.1-8b", tp=1)
    sim = Simulation(parse_scenario(doc, None, CAT), CAT)
    platform = CAT.platform("hgx-h100")
    host, chip = CAT.host(platform.host), CAT.chip(platform.chip)
    weights = CAT.model("llama-3.1-8b").weight_bytes("bf16")
    slowest = min(
        host.nic_bytes_per_s_per_socket * host.sockets,
        host.dram_bandwidth_bytes_per_s_per_socket * host.sockets,
        chip.host_link_bytes_per_s,
    )
    cfg = sim.scenario.autoscaling["svc"]
    assert startup_ns(sim.topology, 0, cfg) == round((weights / slowest + 7.0) * 1e9)
    faster = cfg.model_copy(update={"storage_gb_s": 1e6})
    assert startup_ns(sim.topology, 0, faster) <= startup_ns(sim.topology, 0, cfg)


def _run(doc: dict, trace: RequestBatch, shards: int = 1):
    sim = Simulation(parse_scenario(doc, None, CAT), CAT, shards=shards)
    return sim.run(trace)


def test_cold_start_replicas_take_no_request_before_ready() -> None:
    """A burst scales out; a new replica gets requests only after its start-up time."""
    policy = {"target_ongoing_requests": 1.0, "interval_s": 1.0, "runtime_init_s": 3.0,
              "upscale_cooldown_s": 0.0, "downscale_cooldown_s": 100.0}  # fmt: skip
    out = _run(_scenario(policy), _trace([1500.0], 10.0))
    rows = out.autoscale
    first_up = next(r for r in rows if r["starting"] > 0)
    ready = next(r for r in rows if r["at_ns"] > first_up["at_ns"] and r["running"] > 1)
    assert ready["at_ns"] - first_up["at_ns"] >= 3 * 10**9  # runtime init (no weights)
    new = out.requests.accelerator_id > 0
    assert new.any() and out.requests.start_ns[new].min() >= ready["at_ns"]
    assert (out.requests.status == 0).all()


def test_scale_in_drains_running_requests_and_routes_nothing_new() -> None:
    """Four busy replicas and a target that one meets: scale-in drains the highest ids while
    they hold work; what they held finishes there, and after the decision they get nothing."""
    policy = {"initial_replicas": 4, "target_ongoing_requests": 1e3, "interval_s": 2.0,
              "upscale_cooldown_s": 100.0, "downscale_cooldown_s": 0.0}  # fmt: skip
    out = _run(_scenario(policy), _trace([3000.0], 4.0))
    down = next(r for r in out.autoscale if r["running"] < 4)
    assert down["draining"] > 0  # drained while holding requests
    req = out.requests
    removed = req.accelerator_id >= down["running"]
    assert not (removed & (req.arrival_ns >= down["at_ns"])).any()
    assert (removed & (req.finish_ns > down["at_ns"])).any()  # finished while draining
    assert (req.status == 0).all() and len(req) == len(set(req.request_id))


def test_off_by_default_changes_nothing() -> None:
    """No `autoscaling:`: no autoscale rows or summary section."""
    out = _run(_scenario(None), _trace([200.0], 2.0))
    assert out.autoscale == [] and "autoscale" not in summarize(out).summary


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.lists(st.floats(5.0, 4000.0), min_size=2, max_size=4),
    lo=st.integers(1, 2),
    top=st.integers(2, 4),
    target=st.one_of(
        st.builds(lambda x: {"target_ongoing_requests": x}, st.floats(0.5, 8.0)),
        st.builds(lambda x: {"target_utilization": x}, st.floats(0.05, 1.0)),
    ),
    up=st.sampled_from([0.0, 0.5, 2.0]),
    down=st.sampled_from([0.0, 0.5, 2.0]),
    init_s=st.sampled_from([0.0, 0.3, 1.5]),
    interval=st.sampled_from([0.1, 0.5, 1.0]),
    shards=st.integers(1, 3),
)
def test_every_request_exactly_once_under_scaling(
    rates, lo, top, target, up, down, init_s, interval, shards
) -> None:
    """Conservation under scale-out and scale-in (Hypothesis): every trace request comes back
    once, served; replica counts stay in [min, max]; any shard split gives the same run."""
    policy = {
        **target,
        **{"min_replicas": lo, "max_replicas": max(lo, top), "interval_s": interval},
        **{"upscale_cooldown_s": up, "downscale_cooldown_s": down, "runtime_init_s": init_s},
    }
    doc = _scenario(policy, regions=2)
    trace = _trace(rates, 1.5, regions=2)
    out = _run(doc, trace)
    ids = np.sort(out.requests.request_id)
    assert np.array_equal(ids, trace.request_id)
    assert (out.requests.status == 0).all()
    for row in out.autoscale:
        assert lo <= row["running"] + row["starting"] <= max(lo, top)
        assert row["running"] + row["starting"] + row["draining"] + row["off"] == 4
    split = _run(copy.deepcopy(doc), trace, shards=shards)
    assert split.autoscale == out.autoscale
    assert np.array_equal(split.requests.finish_ns, out.requests.finish_ns)


def test_replicas_over_time_reach_summary_analyze_and_report(tmp_path) -> None:
    """One summary path: summary.json, summarize(dir) and summarize(run) carry the same
    autoscale section; `analyze` prints its table and the report has its chart."""
    import json

    from click.testing import CliRunner

    from mtia_cluster.cli.main import cli
    from mtia_cluster.results import write_run

    policy = {"target_ongoing_requests": 1.0, "interval_s": 1.0, "runtime_init_s": 0.5,
              "upscale_cooldown_s": 0.0, "downscale_cooldown_s": 1.0}  # fmt: skip
    out = _run(_scenario(policy), _trace([2000.0, 20.0], 3.0))
    run_dir = write_run(out, tmp_path / "run", manifest={}, trace_path=None, wall_time_s=0.0)
    written = json.loads((run_dir / "summary.json").read_text())["autoscale"]
    assert written == summarize(run_dir).summary["autoscale"] == summarize(out).summary["autoscale"]
    (group,) = written["groups"]
    assert group["replicas_max"] > 1 and group["scale_ups"] >= 1 and group["scale_downs"] >= 1
    assert [p[0] for p in group["timeline"]] == sorted(p[0] for p in group["timeline"])
    res = CliRunner().invoke(cli, ["analyze", str(run_dir), "--plot", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "replicas mean" in res.output
    assert "Replicas over time" in (tmp_path / "r.html").read_text()


def test_fleet_events_do_not_route_to_off_replicas() -> None:
    """An `undrain` of the whole region (every cell made available by the event) leaves the
    off replicas off: the autoscaler's state wins after the events of a boundary."""
    policy = {"target_ongoing_requests": 1e6, "interval_s": 1.0}  # never more than 1
    doc = _scenario(policy)
    doc["events"] = [{"at_s": 1.5, "kind": "undrain", "region": "r0"}]  # between decisions
    out = _run(doc, _trace([300.0], 3.0))
    assert (out.requests.accelerator_id == 0).all() and len(out.fleet_events) == 1


def test_off_replicas_count_as_off_in_the_energy() -> None:
    """One of four replicas runs the whole time: three H100s are off for the whole span,
    and the section's energy is the group's minus their idle power over it."""
    out = _run(_scenario({"target_ongoing_requests": 1e6}), _trace([100.0], 2.0))
    summary = summarize(out).summary
    (g,) = summary["autoscale"]["groups"]
    span_s = out.end_ns / 1e9
    assert g["off_accelerator_s"] == pytest.approx(3 * span_s)
    idle_w = CAT.chip(CAT.platform("hgx-h100").chip).idle_w
    assert g["off_idle_energy_j"] == pytest.approx(3 * idle_w * span_s)
    assert g["energy_j"] == pytest.approx(summary["groups"][0]["energy_j"] - 3 * idle_w * span_s)
    assert g["replicas_mean"] == pytest.approx(1.0) and g["timeline"] == [[0.0, 1, 0, 0, 1]]
