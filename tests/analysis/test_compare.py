"""compare(): row matching, deltas, and the meets-SLO classification, on small documents."""

from __future__ import annotations

from typing import Any

from mtia_cluster.results.analysis.compare import compare, meets


def _row(region: str, goodput: float, p99_ns: float | None, result: str) -> dict[str, Any]:
    return {
        "level": "region",
        "region": region,
        "goodput_per_s": goodput,
        "latency_ns": {"p99": p99_ns},
        "verdict": {"result": result, "reasons": []},
    }


def _doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"run": "x", "by": ["region"], "window_ns": None, "duration_ns": 1, "rows": rows}


def test_rows_in_one_run_only_keep_the_other_side_null() -> None:
    a = _doc([_row("r1", 100.0, 5e6, "VALID"), _row("r2", 0.0, None, "INVALID")])
    b = _doc([_row("r1", 150.0, 4e6, "INVALID"), _row("r3", 10.0, 1e6, "VALID")])
    rows = {r["region"]: r for r in compare(a, b)["rows"]}
    assert list(rows) == ["r1", "r2", "r3"]
    g = rows["r1"]["figures"]["goodput_per_s"]
    assert g == {"a": 100.0, "b": 150.0, "delta": 50.0, "relative": 0.5}
    p99 = rows["r1"]["figures"]["latency_p99_ms"]
    assert p99["a"] == 5.0 and p99["b"] == 4.0 and p99["relative"] == -0.2
    assert rows["r1"]["meets_slo"] == "a"
    assert rows["r2"]["figures"]["goodput_per_s"] == {
        "a": 0.0,
        "b": None,
        "delta": None,
        "relative": None,
    }
    assert rows["r2"]["meets_slo"] == "neither"
    assert rows["r3"]["meets_slo"] == "b"


def test_meets_classification() -> None:
    v, i, n = ({"result": r} for r in ("VALID", "INVALID", "NO_SLO"))
    assert meets(v, v) == "both"
    assert meets(i, i) == "neither"
    assert meets(n, n) == "no_slo"
    assert meets(None, None) is None
    assert meets(v, None) == "a"
