"""analyze(): exact figures against numpy on the synthetic arrays and against summary.json."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest
from analysis_synth import (
    INTERVAL_NS,
    MS,
    SERVICES,
    SLOS,
    SPAN_NS,
    Spec,
    busy_fraction,
    make_completed,
    write,
)

from mtia_cluster.results import open_results
from mtia_cluster.results.analysis import analyze, refine


def _rows(doc: dict[str, Any], level: str) -> dict[tuple[str, ...], dict[str, Any]]:
    keys = doc["by"]
    return {tuple(r[k] for k in keys): r for r in doc["rows"] if r["level"] == level}


def _close(a: Any, b: Any, path: str = "") -> None:
    """Recursive equality, floats to 1e-12 relative (summation order differs)."""
    if isinstance(a, dict):
        assert set(a) <= set(b), f"{path}: missing {set(a) - set(b)}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("a") / "run", Spec(per_group=1500, drop_every=50))


@pytest.mark.parametrize("refine_limit", [1 << 16, 0, 3])
def test_region_service_rows_match_summary_json(
    run: Path, refine_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # limits 0 and 3 force the sub-bin refinement pass for every (or nearly every) target
    monkeypatch.setattr(refine, "REFINE_LIMIT", refine_limit)
    monkeypatch.setattr(refine, "SUB_BINS", 7)
    refined: list[int] = []
    real = refine._retarget

    def spy(plan: refine.Plan) -> None:
        refined.append(len(plan.big))
        real(plan)

    monkeypatch.setattr(refine, "_retarget", spy)
    doc = analyze(run)
    assert (sum(refined) > 0) == (refine_limit < 1000)
    summary = open_results(run).summary
    rows = _rows(doc, "region,service")
    assert len(rows) == len(summary["groups"]) == 4
    for g in summary["groups"]:
        _close(g, rows[(g["region"], g["service"])], f"{g['region']}/{g['service']}")
    services = _rows(doc, "service")
    for g in summary["services"]:
        _close(g | {"region": "*"}, services[("*", g["service"])], g["service"])
    assert _rows(doc, "*")[("*", "*")]["verdict"]["result"] == summary["fleet"]["verdict"]["result"]
    regions = _rows(doc, "region")
    for g in summary["regions"]:
        mine = regions[(g["region"], "*")]
        assert mine["verdict"]["result"] == g["verdict"]["result"]
        for k in ("offered", "completed", "good", "dropped", "energy_j", "utilization"):
            _close(g[k], mine[k], k)


def test_known_latency_quantiles_and_goodput(run: Path) -> None:
    c = make_completed(Spec(per_group=1500, drop_every=50))
    rows = _rows(analyze(run), "region,service")
    for r, region in enumerate(("us-east", "eu-west")):
        sel = (c.region == r) & (c.service == 0)
        ok = sel & (c.status == 0)
        lat = (c.finish_ns - c.arrival_ns)[ok]
        row = rows[(region, "ranker")]
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)):
            assert row["latency_ns"][name] == float(np.quantile(lat, q))
        good = int(np.count_nonzero(lat <= SLOS["ranker"].latency_ns))
        assert row["good"] == good
        assert row["goodput_per_s"] == good / (SPAN_NS / 1e9)
        assert row["offered"] == int(sel.sum())
        chat = (c.region == r) & (c.service == 1) & (c.status == 0)
        ttft = (c.first_token_ns - c.arrival_ns)[chat]
        steps = c.output_tokens[chat].astype(np.int64) - 1
        tpot = ((c.finish_ns - c.first_token_ns)[chat] / np.maximum(steps, 1))[steps > 0]
        crow = rows[(region, "chat")]
        assert crow["ttft_ns"]["p99"] == float(np.quantile(ttft, 0.99))
        assert crow["tpot_ns"]["p50"] == float(np.quantile(tpot, 0.5))


def test_verdict_follows_the_percentile_rule(run: Path) -> None:
    rows = _rows(analyze(run), "region,service")
    # ranker latencies cycle 1..100 ms: 5% exceed 95 ms, so p99 fails; drops make it worse.
    ranker = rows[("us-east", "ranker")]["verdict"]
    assert ranker["result"] == "INVALID"
    assert any("percentile bound not met" in r for r in ranker["reasons"])
    # chat: TTFT up to 400 ms > 300 ms bound for a quarter of requests.
    assert rows[("eu-west", "chat")]["verdict"]["result"] == "INVALID"
    total = _rows(analyze(run), "*")[("*", "*")]
    assert total["verdict"]["result"] == "INVALID"
    assert set(total["verdict"]["groups"]) == {
        f"{r}/{s}" for r in ("us-east", "eu-west") for s in SERVICES
    }


def test_valid_when_bounds_hold(tmp_path: Path) -> None:
    # Halving every latency brings ranker's max to 50 ms (< 95 ms) and TTFT to 200 ms.
    out = write(tmp_path / "fast", Spec(per_group=1000, slow_factor=0.5))
    rows = _rows(analyze(out, by=("region", "service")), "region,service")
    assert rows[("eu-west", "ranker")]["verdict"]["result"] == "VALID"
    assert rows[("us-east", "ranker")]["verdict"]["result"] == "INVALID"
    assert rows[("eu-west", "ranker")]["latency_ns"]["max"] <= 50 * MS


@pytest.mark.parametrize("refine_limit", [1 << 16, 2])
def test_window_matches_regions_dataset(
    run: Path, refine_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refine, "REFINE_LIMIT", refine_limit)
    doc = analyze(run, by=("region",), window_ns=INTERVAL_NS)
    res = open_results(run)
    table = res.regions.to_table()
    region = table["region"].cast("string")
    for name in ("us-east", "eu-west"):
        ref = table.filter(pc.equal(region, name)).sort_by("interval_start_ns").to_pylist()
        mine = sorted(
            (r for r in doc["rows"] if r["region"] == name and r["level"] == "region"),
            key=lambda r: r["window_start_ns"],
        )
        assert len(mine) == len(ref)
        for a, b in zip(ref, mine, strict=True):
            assert a["interval_start_ns"] == b["window_start_ns"]
            for k in ("offered", "completed", "good"):
                assert a[k] == b[k]
            for q in ("p50", "p90", "p99", "p99_9"):
                want, got = a[f"latency_{q}_ns"], b["latency_ns"][q]
                assert (want is None and got is None) or math.isclose(want, got, rel_tol=1e-12)
            assert math.isclose(a["power_w"], b["avg_power_w"] or 0.0, rel_tol=1e-12)


def test_by_rack_and_generation_utilization(run: Path) -> None:
    racks = _rows(analyze(run, by=("rack",)), "rack")
    a = np.arange(8)
    ks = np.arange(SPAN_NS // INTERVAL_NS)
    for rack in range(4):
        mine = a[a // 2 == rack]
        busy = sum(
            int((busy_fraction(mine, int(k)) * INTERVAL_NS).astype(np.int64).sum()) for k in ks
        )
        want = busy / (len(mine) * SPAN_NS)
        assert math.isclose(racks[(str(rack),)]["utilization"], want, rel_tol=1e-12)
    # dropped requests never reached an accelerator: they form the '-' rack.
    assert racks[("-",)]["dropped"] == racks[("-",)]["offered"] == 30
    total = sum(r["offered"] for r in racks.values())
    assert total == 4 * 1500
    gens = _rows(analyze(run, by=("generation",)), "generation")
    assert set(gens) == {("mtia-1",), ("mtia-2i",), ("-",)}
    assert sum(g["completed"] for g in gens.values()) == 4 * 1500 - 30


def test_empty_run_has_a_zero_total(tmp_path: Path) -> None:
    from mtia_cluster.results import ResultsWriter

    with ResultsWriter(
        tmp_path / "empty", manifest={}, services=SERVICES, regions=["r"], slos=SLOS
    ) as w:
        w.shard(0).close()
        out = w.finalize(simulated_span_ns=0)
    doc = analyze(out)
    assert [r["level"] for r in doc["rows"]] == ["*"]
    total = doc["rows"][0]
    assert total["offered"] == 0 and total["latency_ns"]["p99"] is None
    assert total["verdict"]["result"] == "NO_REQUESTS"  # nothing to judge (docs/results.md)
    assert open_results(out).summary["fleet"]["verdict"]["result"] == "NO_REQUESTS"


def test_run_without_devices(tmp_path: Path) -> None:
    from mtia_cluster.results import ResultsWriter

    c = make_completed(Spec(per_group=40))
    with ResultsWriter(
        tmp_path / "nodev",
        manifest={},
        services=SERVICES,
        regions=["us-east", "eu-west"],
        slos=SLOS,
    ) as w:
        with w.shard(0) as shard:
            shard.write_completed(c)
        out = w.finalize(simulated_span_ns=SPAN_NS)
    doc = analyze(out, by=("rack",))
    rows = _rows(doc, "rack")
    assert set(rows) == {("-",)}
    assert rows[("-",)]["offered"] == 160 and rows[("-",)]["utilization"] is None
    assert _rows(doc, "*")[("*",)]["offered"] == 160
