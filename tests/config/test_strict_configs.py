"""Strict configs: a misspelled key anywhere, a misspelled `--set` path or event target is
exit 2 with the field named, never a run with defaults.

Every key is taken by walking the typed models over rich base documents (a scenario with R&R,
LLM (disaggregated) and synthetic pools, events, failures and SLOs; every shipped rollout
plan plus failures and outages; every shipped trace spec plus sessions); Hypothesis draws the
misspelling. Runs in-process through the CLI; validation comes first, so nothing simulates.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli.main import cli
from mtia_cluster.config import schema
from mtia_cluster.config.models import ScenarioFile
from mtia_cluster.config.rollout_plan import RolloutPlanFile
from mtia_cluster.config.scenario import parse_scenario
from mtia_cluster.config.trace_spec import TraceSpecFile
from mtia_cluster.rollout.plan import parse_plan

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
_counter = itertools.count()


def _scenario() -> dict[str, Any]:
    d = yaml.safe_load((CONFIGS / "scenarios" / "multi-region.yaml").read_text())
    pools = d["regions"][0]["pools"]
    pools[1].update(tp=2, accelerators_per_replica=2, dtype="bf16", block_size=16, pp=1)
    pools[1].update(prefix_caching=False, error_rate=0.0, ep=1)
    pools[1].update(capacity_policy="guaranteed_no_evict", max_tokens=1024)
    d["regions"][1]["pools"][1]["disaggregation"] = {"prefill_accelerators": 1, "link": "scale_up"}
    d["regions"][1]["pools"][1].update(accelerators_per_replica=2)
    d["regions"][1]["pools"][1].pop("tp")
    pd = {"prefill": {"instances": 1, "tp": 1}, "decode": {"instances": 1, "tp": 1}}
    d["regions"][1]["pools"].append(
        {
            "service": "llm-chat",
            "model": "llama-3.1-8b",
            "platform": "hgx-h100",
            "accelerators": 2,
            "disaggregation": {**pd, "link": "scale_out"},
        }
    )
    pools.append(
        {
            "service": "svc",
            "model": "svc-exp-1ms",
            "platform": "mtia-2i-rack",
            "accelerators": 2,
            "accelerators_per_replica": 1,
            "service_time_multiplier": 1.0,
        }
    )
    pools[0]["service_time_multiplier"] = 1.0
    pools[0]["embedding_hosts"] = 1
    d["events"] = [
        {"at_s": 1, "kind": "fail", "region": "us-east", "service": "rr-ranking", "hosts": [0]},
        {"at_s": 2, "kind": "drain", "region": "us-east", "racks": [0], "on_failure": "retry"},
        {"at_s": 3, "kind": "fail", "region": "eu-west", "links": [0]},
        {"at_s": 4, "kind": "link_degrade", "region": "us-east", "links": [0], "nics": [0]}
        | {"bandwidth_factor": 0.5},
        {"at_s": 5, "kind": "link_fail", "region": "us-east", "spines": [0]},
    ]
    d["fabric"] = {"nics_per_host": 2, "nic_gbit_s": 400, "spines": 4, "oversubscription": 2}
    d["fabric"]["hop_latency_ns"] = 600
    d["failures"] = [
        {"level": "host", "region": "us-east", "mtbf_s": 100, "mttr_s": 10, "horizon_s": 1000}
    ]
    d["slo"]["svc"] = {"p99_ms": 5}
    d["verdict"] = {"min_duration_s": 0, "early_stopping": False, "confidence": 0.9}
    d["verdict"]["all_ok"] = True
    d["regions"][0]["energy"] = {"grid": "eu-north", "pue": 1.1, "usd_per_kwh": 0.05}
    d["regions"][0]["energy"]["gco2e_per_kwh"] = 100.0
    d["router"] = {"policy": "prefix_affinity", "affinity_weight": 3.0, "load_weight": 2.0}
    d["global_routing"] = {
        "policy": "spill",
        "spill_outstanding_per_cell": 8.0,
        "rtt_ms": {"us-east": {"eu-west": 80.0}},
    }
    d["autoscaling"] = {
        "rr-ranking": {"min_replicas": 1, "max_replicas": 3, "initial_replicas": 2},
        "llm-chat": {"target_ongoing_requests": 2.0, "interval_s": 10.0, "runtime_init_s": 20.0},
        "svc": {"target_utilization": 0.5, "upscale_cooldown_s": 30.0},
    }
    d["autoscaling"]["svc"].update(downscale_cooldown_s=600.0, storage_gb_s=50.0)
    return d


def _plans() -> list[dict[str, Any]]:
    paths = sorted((CONFIGS / "rollouts").glob("*.yaml"))
    plans = [yaml.safe_load(p.read_text()) for p in paths]
    rich = copy.deepcopy(plans[[p.stem for p in paths].index("mtia2i-16-regions")])  # drill
    rich["failures"] = {
        "mtbf_h": 2000,
        "mttr_h": 24,
        "seed": 1,
        "correlated_prob_per_day": 0.01,
        "correlated_racks": 2,
        "parts": [{"part": "host", "mtbf_h": 5000, "mttr_h": 8}],
        "region": {"mtbf_h": 50000, "mttr_h": 12},
    }
    rich["outages"] = [{"region": "us-east-1", "at_day": 10, "duration_h": 6}]
    rich["failover"] = "proportional"
    rich["replay"].update(enabled=True, span_s=2.0, max_requests=400_000, max_hosts=4, seed=0)
    rich["fleet"]["regions"][0]["demand"]["peak_hour_local"] = 20
    expansion = next(p for p in plans if p.get("events"))
    expansion["events"][1]["drain_h"] = 4
    llm = next(p for p in plans if p["service"]["model"].startswith("llama"))
    llm["service"]["capacity_search"] = {"window_s": 300, "rel_tol": 0.05, "hosts": 1, "seed": 0}
    llm["service"].update(ttft_p99_ms=2000, tpot_p99_ms=100)
    return [*plans, rich]


def _specs() -> list[dict[str, Any]]:
    paths = sorted((CONFIGS / "traces").glob("*.yaml"))
    specs = [yaml.safe_load(p.read_text()) for p in paths]
    day = specs[[p.stem for p in paths].index("fleet-day")]
    chat = copy.deepcopy(next(s for s in day["services"] if s["name"] == "llm-chat"))
    chat.update(name="llm-sessions", arrivals={"process": "onoff", "on_fraction": 0.2})
    chat["sessions"] = {"mean_turns": 3, "think_time_s": 30, "max_context_tokens": 8192}
    chat["prefix_blocks"] = {"block_tokens": 512, "system_prompts": 4, "system_prompt_tokens": 1024}
    chat["lengths"] = {
        "dist": "separate",
        "input": {"dist": "lognormal", "mean": 500, "p99": 4000, "max": 8000},
        "output": {"dist": "constant", "value": 50},
    }
    day["services"].append(chat)
    servegen = {  # shape only: a misspelling is refused before any file is opened
        "name": "g",
        "kind": "llm",
        "rate_per_s": 1.0,
        "arrivals": {"process": "servegen", "path": "a.json", "start_s": 0.0, "rate_scale": 1.0},
        "lengths": {"dist": "servegen", "path": "l.json", "window": 0},
    }
    specs.append({"name": "sg", "duration_s": 60, "services": [servegen]})
    return specs


SCENARIO = _scenario()
PLANS = _plans()
SPECS = _specs()


def _check_bases_are_valid() -> None:
    cat = load_catalog()
    parse_scenario(copy.deepcopy(SCENARIO), "base.yaml", cat)
    for plan in PLANS:
        parse_plan(copy.deepcopy(plan), "plan.yaml", cat)
    for spec in SPECS:
        schema.validate(TraceSpecFile, spec, "spec.yaml")


def _mappings(data: Any, ann: Any, loc: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], set[str]]]:
    """Every mapping of `data` that a model describes: (location, the keys it may hold)."""
    out = []
    names = schema.field_names(ann)
    if isinstance(data, dict) and names:
        out.append((loc, names))
    if isinstance(data, dict):
        for key, value in data.items():
            sub = schema._step(ann, key)
            if sub is not None:
                out += _mappings(value, sub, (*loc, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            sub = schema._step(ann, i)
            if sub is not None:
                out += _mappings(value, sub, (*loc, i))
    return out


def _keys(model: type[BaseModel], docs: list[dict[str, Any]]) -> list[tuple[int, tuple, str]]:
    """(document index, mapping location, key) for every key present in the documents; a
    key of a repeated structure (16 regions) once, at its first place."""
    out, seen = [], set()
    for i, doc in enumerate(docs):
        for loc, _names in _mappings(doc, model, ()):
            for k in _at(doc, loc):
                shape = (tuple(0 if isinstance(p, int) else p for p in loc), str(k))
                if shape not in seen:
                    seen.add(shape)
                    out.append((i, loc, str(k)))
    return out


def _at(doc: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        doc = doc[part]
    return doc


def _misspell(word: str, op: int, pos: int, char: str) -> str:
    """One edit of `word`: delete, insert, replace or swap at `pos`."""
    pos %= len(word)
    if op == 0 and len(word) > 1:
        return word[:pos] + word[pos + 1 :]
    if op == 1:
        return word[:pos] + char + word[pos:]
    if op == 2:
        return word[:pos] + char + word[pos + 1 :]
    swap = min(pos, len(word) - 2)
    return (
        word[:swap] + word[swap + 1] + word[swap] + word[swap + 2 :]
        if len(word) > 1
        else word + char
    )


EDITS = st.tuples(st.integers(0, 3), st.integers(0, 40), st.sampled_from("abcdeilmnoprstuy_"))


def _dotted(loc: tuple[Any, ...], key: str) -> str:
    return schema.dotted((*loc, key))


def _error_line(output: str) -> str:
    """The one error line (exactly one), however progress labels interleave."""
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _check_bases_are_valid()
    return tmp_path_factory.mktemp("strict")


def _write(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / f"doc-{next(_counter)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _command(kind: str, path: Path, folder: Path) -> list[str]:
    out = str(folder / f"out-{next(_counter)}")
    if kind == "scenario":
        # the trace need not exist: the scenario is refused before the trace is opened
        return ["simulate", str(path), "--trace", str(folder / "never-read.parquet")]
    if kind == "rollout":
        return ["rollout", str(path), "-o", out, "--fast"]
    return ["trace", "generate", "--spec", str(path), "-o", out + ".parquet"]


DOCS: dict[str, tuple[type[BaseModel], list[dict[str, Any]]]] = {
    "scenario": (ScenarioFile, [SCENARIO]),
    "rollout": (RolloutPlanFile, PLANS),
    "trace-spec": (TraceSpecFile, SPECS),
}
KEYS = [(kind, *entry) for kind, (m, docs) in DOCS.items() for entry in _keys(m, docs)]


def test_the_walk_covers_every_model_field() -> None:
    """Every field of every model is a key of some base document (so it gets misspelled)."""
    for kind, (model, docs) in DOCS.items():
        present = {key for _, _, key in _keys(model, docs)}
        missing = {
            f"{sub.__name__}.{name}"
            for sub in _models(model)
            for name in sub.model_fields
            if name not in present
        }
        assert not missing, (kind, sorted(missing))


def _models(model: Any, seen: set | None = None) -> set[type[BaseModel]]:
    seen = set() if seen is None else seen
    for arg in schema._flatten(model):
        if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
            seen.add(arg)
            for info in arg.model_fields.values():
                _models(info.annotation, seen)
        for sub in getattr(arg, "__args__", ()):
            _models(sub, seen)
    return seen


@pytest.mark.parametrize(("kind", "doc", "loc", "key"), KEYS, ids=lambda v: str(v))
@settings(
    max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edit=EDITS)
def test_misspelled_key_is_exit_2_naming_it(files, kind, doc, loc, key, edit) -> None:
    model, docs = DOCS[kind]
    data = copy.deepcopy(docs[doc])
    node = _at(data, loc)
    wrong = _misspell(key, *edit)
    if wrong in schema.field_names(schema._annotation_at(model, loc)) or wrong in node:
        return  # the edit gave another real key (e.g. `hosts` -> `host` is not, `racks`...)
    node[wrong] = node.pop(key)
    code, output = _run(_command(kind, _write(files, data), files))
    assert code == 2, output
    assert _error_line(output).find(f": {_dotted(loc, wrong)}: ") > 0, output


def _set_paths(model: Any, doc: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf path of the document, list indices and free keys as in the data."""
    out = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _set_paths(model, value, (*prefix, str(key)))
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
        for i, value in enumerate(doc):
            out += _set_paths(model, value, (*prefix, str(i)))
    else:
        out.append(prefix)
    return out


SET_PATHS = [
    (kind, i, path)
    for kind, (model, docs) in DOCS.items()
    for i, d in enumerate(docs[:1] if kind != "scenario" else docs)
    for path in _set_paths(model, d)
]


@settings(max_examples=40, deadline=None)
@given(pick=st.sampled_from(SET_PATHS), which=st.integers(0, 20), edit=EDITS)
def test_misspelled_set_path_is_exit_2(pick, which, edit) -> None:
    kind, _, path = pick
    model, _docs = DOCS[kind]
    # misspell a component that names a model field (not a list index or a free name)
    named = [i for i, part in enumerate(path) if part in _field_names_at(model, path[:i])]
    i = named[which % len(named)]
    wrong = _misspell(path[i], *edit)
    if wrong in _field_names_at(model, path[:i]) or not wrong:
        return
    bad = ".".join((*path[:i], wrong, *path[i + 1 :]))
    folder = Path(_tmp_dir())
    original = folder / f"{kind}.yaml"
    if not original.exists():
        original.write_text(yaml.safe_dump(DOCS[kind][1][0], sort_keys=False))
    code, output = _run([*_command(kind, original, folder), "--set", f"{bad}=1"])
    line = _error_line(output)
    assert code == 2 and line.startswith("error: --set: unknown path") and wrong in line, output


def _field_names_at(model: Any, parts: tuple[str, ...]) -> set[str]:
    return schema.field_names(schema._annotation_at(model, parts))


_TMP: list[str] = []


def _tmp_dir() -> str:
    if not _TMP:
        import tempfile

        _TMP.append(tempfile.mkdtemp(prefix="strict-set-"))
    return _TMP[0]


TARGETS = ["hosts", "racks", "links"]


@settings(max_examples=15, deadline=None)
@given(
    target=st.one_of(
        st.just("accelerators"),
        st.tuples(st.sampled_from(TARGETS), EDITS).map(lambda t: _misspell(t[0], *t[1])),
    ),
    index=st.integers(0, 5),
)
def test_event_target_misspelled_or_unsupported_is_exit_2(target: str, index: int) -> None:
    """`accelerators: [3]` (or `host:`, `rakcs:`) is refused, never a whole-region failure."""
    if target in TARGETS:
        return
    data = copy.deepcopy(SCENARIO)
    data["events"] = [{"at_s": 1, "kind": "fail", "region": "us-east", target: [index]}]
    folder = Path(_tmp_dir())
    path = folder / f"ev-{next(_counter)}.yaml"
    path.write_text(yaml.safe_dump(data))
    code, output = _run(["simulate", str(path), "--trace", str(folder / "never.parquet")])
    assert code == 2, output
    assert f"events[0].{target}: unknown key" in _error_line(output), output


def test_set_on_a_launched_fleet_is_refused() -> None:
    code, output = _run(
        ["replay", "--fleet", "nope", "--trace", "t.parquet", "-o", "x", "--set", "seed=3"]
    )
    assert code == 2 and "--set: cannot change a launched fleet" in output, output


@pytest.mark.parametrize("document", ["scenario", "rollout", "trace-spec"])
def test_schema_command_prints_the_models(document: str) -> None:
    import json

    code, output = _run(["schema", document])
    assert code == 0
    got = json.loads(output)
    assert got["additionalProperties"] is False and "properties" in got
