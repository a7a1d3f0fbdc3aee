"""Pool fields that express a model version in engine terms: service_time_multiplier scales
service times, error_rate marks a seeded per-request fraction failed, a function of
(seed, request_id) only (so the same requests fail for any sharding or placement)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.engine.cell import STATUS_FAILED, STATUS_OK, make_requests
from mtia_cluster.engine.rng import entity_rng
from mtia_cluster.engine.simulation import Simulation
from mtia_cluster.engine.topology import request_uniform
from mtia_cluster.errors import UserError


def _scenario(seed: int, pools: list[dict[str, Any]]) -> Any:
    return parse_scenario(
        {"name": "t", "seed": seed, "regions": [{"name": "r", "pools": pools}]}, "t.yaml"
    )


def _syn(**extra: Any) -> dict[str, Any]:
    return {"service": "s", "model": "svc-det-1ms", "platform": "mtia-2i-rack",
            "accelerators": 4, **extra}  # fmt: skip


def _rr(**extra: Any) -> dict[str, Any]:
    return {"service": "s", "model": "lc1", "platform": "mtia-2i-rack", "hosts": 1,
            "batching": {"max_items": 256, "max_wait_us": 100}, **extra}  # fmt: skip


def _trace(n: int, gap_ns: int, seed: int = 3) -> Any:
    rng = entity_rng(seed, 77)
    arrival = np.cumsum(rng.integers(1, 2 * gap_ns, n)).astype(np.int64)
    return make_requests(arrival, items=rng.integers(1, 200, n))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), rate=st.floats(0.0, 1.0), shards=st.integers(1, 3))
def test_injected_errors_depend_only_on_seed_and_request_id(
    seed: int, rate: float, shards: int
) -> None:
    sc = _scenario(seed, [_syn(error_rate=rate)])
    res = Simulation(sc, shards=shards).run(_trace(400, 300_000))
    r = res.requests
    assert len(r) == 400  # nothing lost: every request is returned, ok or failed
    expect = request_uniform(seed, r.request_id) < rate
    assert np.array_equal(r.status == STATUS_FAILED, expect)
    assert np.all((r.status == STATUS_OK) | (r.status == STATUS_FAILED))


def test_error_fraction_matches_rate_and_other_pools_untouched() -> None:
    sc = _scenario(5, [_syn(error_rate=0.05), {**_syn(), "service": "t"}])
    tr = _trace(20_000, 50_000)
    svc = np.arange(len(tr)) % 2
    tr = tr.__class__(**{**tr.columns(), "service": svc.astype(np.int32)})
    r = Simulation(sc).run(tr).requests
    failed = r.status == STATUS_FAILED
    frac = failed[r.service == 0].mean()
    # binomial(10000, 0.05): sd 0.0022; 5 sd bounds
    assert abs(frac - 0.05) < 0.011
    assert not failed[r.service == 1].any()


@pytest.mark.parametrize("mult", [0.5, 2.5])
def test_synthetic_service_time_scales(mult: float) -> None:
    sc = _scenario(1, [_syn(service_time_multiplier=mult)])
    r = Simulation(sc).run(_trace(50, 50_000_000)).requests  # far apart: no queueing
    busy = r.finish_ns - r.start_ns
    assert np.all(np.abs(busy - round(1e6 * mult)) <= 1)


def test_rr_service_time_scales_occupancy() -> None:
    tr = _trace(40, 20_000_000)  # isolated requests: one batch each
    base = Simulation(_scenario(1, [_rr()])).run(tr).requests
    slow = Simulation(_scenario(1, [_rr(service_time_multiplier=3.0)])).run(tr).requests
    b, s = base.finish_ns - base.start_ns, slow.finish_ns - slow.start_ns
    assert np.all(b > 0)
    assert np.allclose(s, 3.0 * b, rtol=1e-3, atol=3)
    fast = Simulation(_scenario(1, [_rr(service_time_multiplier=0.5)]))
    slow_sim = Simulation(_scenario(1, [_rr(service_time_multiplier=3.0)]))
    # the router's capacity weight (items/s) follows the service time
    assert np.isclose(fast.plane.capacity.sum() / slow_sim.plane.capacity.sum(), 6.0, rtol=1e-3)


@pytest.mark.parametrize(
    "pool, field",
    [
        (_syn(error_rate=1.5), "error_rate"),
        (_syn(error_rate=-0.1), "error_rate"),
        (_syn(service_time_multiplier=0), "service_time_multiplier"),
        (_syn(service_time_multiplier="x"), "service_time_multiplier"),
        (
            {"service": "s", "model": "llama-2-7b", "platform": "hgx-h100", "accelerators": 1,
             "service_time_multiplier": 2.0},
            "service_time_multiplier",
        ),
    ],
)  # fmt: skip
def test_bad_pool_fields_are_user_errors(pool: dict[str, Any], field: str) -> None:
    with pytest.raises(UserError) as e:
        _scenario(0, [pool])
    assert e.value.field is not None and e.value.field.endswith(field)
