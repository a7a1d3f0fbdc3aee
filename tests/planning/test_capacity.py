"""`capacity`: the answer meets the SLO, a faster chip serves more, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtia_cluster.cli.main import cli
from mtia_cluster.errors import UserError
from mtia_cluster.planning.capacity import _meets, capacity, parse_slo
from mtia_cluster.slo import ServiceSLO

CONFIG = """
name: cap
regions:
  - name: r
    pools:
      - {service: ranking, model: hc3, platform: mtia-1-server, hosts: 1}
slo:
  ranking: {p99_ms: 100}
"""


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    p = tmp_path / "cap.yaml"
    p.write_text(CONFIG)
    return p


def test_capacity_rate_meets_the_slo_and_a_higher_one_does_not():
    res = capacity(
        "hc3", "mtia-1", ServiceSLO(latency_ns=100_000_000), rel_tol=0.05, min_span_s=1.0
    )
    assert res.requests_per_s > 0 and res.bound == "compute"
    assert res.per_accelerator * res.accelerators == pytest.approx(res.work_per_s)
    assert res.perf_per_w == pytest.approx(
        res.work_per_s / (res.accelerator_power_w + res.host_power_w)
    )
    # per accelerator it cannot beat the cost model's best steady state (compute-bound)
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.perf.estimators import rr_best_throughput

    cat = load_catalog()
    best = rr_best_throughput(cat.chip("mtia-1"), cat.model("hc3"), cat.host("yosemite-v3-mtia1"))
    assert res.per_accelerator <= best.items_per_s_per_chip * 1.001


def test_offline_is_at_least_server():
    server = capacity(
        "hc3", "mtia-1", ServiceSLO(latency_ns=100_000_000), rel_tol=0.05, min_span_s=1.0
    )
    offline = capacity("hc3", "mtia-1", ServiceSLO(), offline=True, min_span_s=1.0)
    assert offline.requests_per_s >= server.requests_per_s * 0.95


def test_more_compute_more_capacity():
    m1 = capacity(
        "hc3", "mtia-1", ServiceSLO(latency_ns=100_000_000), rel_tol=0.05, min_span_s=1.0, hosts=1
    )
    m2 = capacity(
        "hc3", "mtia-2i", ServiceSLO(latency_ns=100_000_000), rel_tol=0.05, min_span_s=1.0, hosts=1
    )
    assert m2.per_accelerator > 2 * m1.per_accelerator  # 3.5x the FP16 peak


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("p99=100ms", ServiceSLO(latency_ns=100_000_000)),
        (
            "ttft_p99=2s,tpot_p99=200ms",
            ServiceSLO(kind="llm", ttft_ns=2_000_000_000, tpot_ns=200_000_000),
        ),
        ("p99=250us", ServiceSLO(latency_ns=250_000)),
    ],
)
def test_parse_slo(text, expect):
    assert parse_slo(text) == expect


@pytest.mark.parametrize("bad", ["p99=fast", "p42=1ms", "p99", "p99=10 parsecs"])
def test_parse_slo_rejects(bad):
    with pytest.raises(UserError, match="--slo"):
        parse_slo(bad)


def test_capacity_cli_json(runner, config):
    res = runner.invoke(
        cli, ["capacity", str(config), "--service", "ranking", "--address", "inprocess", "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["chip"] == "mtia-1" and rows[0]["requests_per_s"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--service", "search"], "no pool serves it"),
        (["--service", "ranking", "--slo", "p99=soon"], "--slo"),
        (["--service", "ranking", "--chips", "tpu-v9"], "unknown chip"),
    ],
)
def test_capacity_cli_bad_input(runner, config, args, needle):
    res = runner.invoke(cli, ["capacity", str(config), *args, "--address", "inprocess"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_meets_fails_on_rejections():
    """A request the fleet cannot serve at all fails the verdict whatever the latency."""
    from mtia_cluster.config.scenario import parse_scenario

    scenario = parse_scenario(
        {
            "regions": [
                {
                    "name": "r",
                    "pools": [
                        {
                            "service": "svc",
                            "model": "llama-3.1-8b",
                            "platform": "hgx-h100",
                            "hosts": 1,
                            "tp": 1,
                            "accelerators_per_replica": 1,
                        }
                    ],
                }
            ]
        }
    )
    work = {
        "gaps": np.ones(3),
        "input_tokens": np.array([10, 10_000_000, 10]),
        "output_tokens": np.array([5, 5, 5]),
    }
    assert not _meets(scenario, work, 1.0, ServiceSLO(kind="llm", ttft_ns=100_000_000_000))


def test_llm_answer_is_the_same_search_over_plain_replays():
    """Early stops and remembered verdicts change the cost of the LLM search, not its answer:
    the same bisection (cost-model start, first step, one rate per round in-process) over
    plain replays judged by the verdict finds the very same rate, with power from a replay
    at it."""
    from mtia_cluster.catalog import load_catalog
    from mtia_cluster.planning import capacity as cap
    from mtia_cluster.planning.search import find_max_rate
    from mtia_cluster.results.run import summarize
    from mtia_cluster.results.verdict import SEARCH_RULES

    slo = ServiceSLO(kind="llm", ttft_ns=2_000_000_000, tpot_ns=100_000_000)
    res = capacity("llama-3.1-8b", "h100", slo, requests=1500, rel_tol=0.05)
    cat = load_catalog()
    model = cat.model("llama-3.1-8b")
    platform = cap.platform_for(cat, "h100")
    scenario = cap._scenario(cat, model, "h100", platform, None, 0)
    work = cap._workload(model, 1500, 0)

    def plain(rates):
        out = []
        for r in rates:
            judged = summarize(
                cap._replay(scenario, work, r), rules=SEARCH_RULES, slos={"svc": slo}
            )
            out.append(all(v == "VALID" for v in judged.verdicts.values()))
        return out

    start = cap._first_rate(cat, model, platform, 8.0, slo)
    search = find_max_rate(
        plain, start, parallel=1, rel_tol=0.05, max_rate=1500 / 2.0, step=cap.FIRST_STEP
    )
    assert search.lowest_failing < 1500 / 2.0  # bracketed below the trace's cap
    assert res.requests_per_s == search.best_rate > 0
    assert res.replays == len(search.evaluations)
    best = cap._replay(scenario, work, search.best_rate)
    assert res.accelerator_power_w == pytest.approx(summarize(best).summary["fleet"]["avg_power_w"])
