"""``network_ns`` in results (docs/network.md, "Per-request network time"): written as
given, summarized per group (mean, quantiles over all ok requests, zeros included) by the
one summary path, and absent from runs written before it (read as 0: no figure)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from results_synth import REGIONS, SERVICES, make_completed, write_run

from mtia_cluster.results.writer_io import request_dataset


def _reference(c, region: int, service: int) -> dict | None:
    ok = (c.region == region) & (c.service == service) & (c.status == 0)
    net = c.network_ns[ok].astype(np.float64)
    if not np.any(net > 0):
        return None
    return {
        "mean": net.mean(),
        "max": int(net.max()),
        "p50": np.quantile(net, 0.5),
        "p90": np.quantile(net, 0.9),
        "p99": np.quantile(net, 0.99),
        "requests": int(np.count_nonzero(net)),
    }


@pytest.mark.parametrize("shards", [1, 3])
def test_summary_network_time_per_group(tmp_path: Path, shards: int) -> None:
    c = make_completed(600, seed=11)
    parts = np.array_split(np.arange(len(c)), shards)
    run = write_run(tmp_path / "run", c, shards=parts)
    written = request_dataset(run).to_table().sort_by("request_id")
    order = np.argsort(c.request_id)
    assert written["network_ns"].to_pylist() == c.network_ns[order].tolist()
    summary = json.loads((run / "summary.json").read_text())
    seen = 0
    for g in summary["groups"]:
        want = _reference(c, REGIONS.index(g["region"]), SERVICES.index(g["service"]))
        if want is None:
            assert "network_ns" not in g
            continue
        seen += 1
        assert g["network_ns"] == pytest.approx(want, rel=1e-12)
    assert seen >= 4


def test_a_run_written_before_the_column_has_no_network_figures(tmp_path: Path) -> None:
    """Strip the column from every requests file (a run from before #16): it reads as null
    -> 0 and the summary, derived again, has no network figures and nothing fails."""
    from mtia_cluster.results import summarize

    c = make_completed(300, seed=3)
    run = write_run(tmp_path / "run", c, shards=[np.arange(len(c))])
    for f in (run / "requests").rglob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.drop_columns(["network_ns"]), f)
    doc = summarize(run).summary
    assert doc["groups"] and not any("network_ns" in g for g in doc["groups"])
    assert request_dataset(run).to_table()["network_ns"].null_count == len(c)


def test_html_table_and_console_lines_show_the_summary_figures(tmp_path: Path) -> None:
    """analyze's console lines and the HTML report's table read summary.json's figures."""
    from mtia_cluster.results.analysis.report import (
        network_lines,
        network_rows,
        network_table_html,
    )

    c = make_completed(400, seed=5)
    summary = json.loads(
        (write_run(tmp_path / "r", c, shards=[np.arange(400)]) / "summary.json").read_text()
    )
    rows = network_rows(summary)
    with_net = [g for g in [*summary["groups"], *summary["services"]] if "network_ns" in g]
    assert len(rows) == len(with_net) > 0
    html = network_table_html(summary)
    lines = network_lines({"network": rows})
    assert html.count("<tr>") == len(rows) + 1 and len(lines) == len(rows)
    for r, line in zip(rows, lines, strict=True):
        n = r["network_ns"]
        assert f"<td>{n['mean'] / 1e6:.3f}</td><td>{n['p99'] / 1e6:.3f}</td>" in html
        assert f"mean {n['mean'] / 1e6:.3f} ms, p99 {n['p99'] / 1e6:.3f} ms" in line
    assert network_table_html({"groups": []}) == "" and network_rows({}) == []
