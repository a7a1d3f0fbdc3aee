"""The text report: which INVALID reasons are printed under the table."""

from __future__ import annotations

from typing import Any

from mtia_cluster.results.analysis.report import verdict_reasons


def _row(level: str, rack: str, result: str, reasons: list[str]) -> dict[str, Any]:
    return {"level": level, "rack": rack, "verdict": {"result": result, "reasons": reasons}}


def test_reasons_of_the_requested_level_first() -> None:
    doc = {
        "by": ["rack"],
        "rows": [
            _row("rack", "0", "INVALID", ["a", "b", "c", "d"]),
            _row("rack", "1", "VALID", []),
            _row("*", "*", "INVALID", ["us/x: a"]),
        ],
    }
    assert verdict_reasons(doc) == ["0: a", "0: b", "0: c"]


def test_total_reasons_when_every_row_of_the_level_is_valid() -> None:
    rows = [_row("rack", "0", "VALID", []), _row("*", "*", "INVALID", ["eu/chat: ttft"])]
    assert verdict_reasons({"by": ["rack"], "rows": rows}) == ["*: eu/chat: ttft"]
    rows[1] = _row("*", "*", "VALID", [])
    assert verdict_reasons({"by": ["rack"], "rows": rows}) == []
