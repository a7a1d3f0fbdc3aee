"""What `mtia-cluster plan -o DIR` writes, atomically (mtia_cluster.output):

* ``plan.json``: the whole result (every candidate's estimate and replay, the winners, the
  fleet's totals, the Pareto fronts), the same data `--json` prints;
* ``scenario.yaml``: the winning fleet (every region and service) as a scenario that
  `mtia-cluster replay` accepts, with the plan's SLOs, its verdict rules and the fail events
  of the N-1 check;
* ``trace.parquet``: the peak-demand trace the confirming replays used, every (service,
  region) together, so that
  ``mtia-cluster replay DIR/scenario.yaml --trace DIR/trace.parquet -o RUN`` repeats the
  confirmation on the whole fleet at once;
* ``manifest.json``: the directory's format and contents (so that `--overwrite` may replace
  it later, and nothing else).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

import mtia_cluster
from mtia_cluster.catalog import Catalog
from mtia_cluster.config.models import ScenarioFile
from mtia_cluster.output import PLAN_DIR, claim_output, contents_of, staged
from mtia_cluster.planning.plan_candidates import Candidate
from mtia_cluster.planning.plan_file import Plan
from mtia_cluster.planning.plan_fleet import fleet_document, fleet_trace
from mtia_cluster.traces.io import write_trace

SCENARIO_HEADER = """\
# The winning fleet of `mtia-cluster plan {file}` ({name}).
# Each pool is one (region, service) winner: {units} platform units, spare included.
# `events` fail the spare units at t = 0: the fleet must meet the SLOs without them (N-1).
# `verdict` holds the rules the plan judged with (a few seconds of peak traffic: no LoadGen
# 600 s minimum duration or early stopping; every request must finish ok). Delete it for
# LoadGen Server's rules on a trace of your own of 600 s or more.
# Delete `events` for the fleet with every unit up. Repeat the confirmation:
#   mtia-cluster replay scenario.yaml --trace trace.parquet -o confirm-run
"""


def winner_document(cat: Catalog, plan: Plan, result: dict[str, Any]) -> ScenarioFile | None:
    """The scenario of the winners of `result` (None when no (service, region) has one)."""
    fleet = {}
    for w in result["winners"]:
        row = w["winner"]
        if row is None:
            continue
        c = Candidate(
            service=row["service"],
            chip=row["chip"],
            platform=row["platform"],
            settings=row["settings"],
            unit_hosts=row["unit_hosts"],
            unit_accelerators=row["unit_accelerators"],
        )
        fleet[(w["service"], w["region"])] = (c, row["cost"]["units"])
    if not fleet:
        return None
    return fleet_document(cat, plan, fleet, f"{plan.doc.name}-winner")


def write_plan(
    out: str | Path, cat: Catalog, plan: Plan, result: dict[str, Any], *, overwrite: bool
) -> Path:
    """Write the directory (module doc) at `out`; only an absent or empty directory, or
    (with `overwrite`) an earlier output of the tool, is replaced."""
    doc = winner_document(cat, plan, result)
    with staged(claim_output(out, PLAN_DIR, overwrite=overwrite)) as tmp:
        text = json.dumps(json_safe(result), indent=2)
        (tmp / "plan.json").write_text(text + "\n", encoding="utf-8")
        if doc is not None:
            units = sorted({w["winner"]["cost"]["units"] for w in result["winners"] if w["winner"]})
            header = SCENARIO_HEADER.format(
                file=plan.file, name=plan.doc.name, units="/".join(map(str, units))
            )
            body = yaml.safe_dump(
                doc.model_dump(mode="json", exclude_none=True, exclude_unset=True, warnings=False),
                sort_keys=False,
            )
            (tmp / "scenario.yaml").write_text(header + body, encoding="utf-8")
            rates = {
                (w["service"], w["region"]): w["winner"]["cost"]["peak_rps"]
                for w in result["winners"]
                if w["winner"] is not None
            }
            table = fleet_trace(plan, rates)
            meta = {
                "source": f"mtia-cluster plan {plan.file}",
                "generator": "plan",
                "parameters": {"seed": plan.doc.seed, "span_s": plan.doc.search.span_s},
            }
            write_trace(table, tmp / "trace.parquet", meta)
        manifest = {
            "format": PLAN_DIR.format,
            "format_version": "1",
            "command": "plan",
            "plan": plan.file,
            "package_version": mtia_cluster.__version__,
            "contents": contents_of(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Path(out)


def json_safe(value: Any) -> Any:
    """`value` as strict JSON data: NaN and infinities become null, numpy scalars Python
    numbers (plan.json and `--json` print the same data)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
