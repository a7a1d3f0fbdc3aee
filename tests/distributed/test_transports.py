"""The replay's composition: Ray is imported by one module; transports and drivers."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import mtia_cluster
from mtia_cluster.distributed.prepare import ReplayOptions, prepare
from mtia_cluster.distributed.ray_transport import FleetHosts, RayActors
from mtia_cluster.distributed.runner import replay, transport_for
from mtia_cluster.distributed.transport import InProcess, ShardRef, ShardSpec

from .conftest import SCENARIO, assert_same_run

PACKAGE = Path(mtia_cluster.__file__).parent
RAY_MODULE = PACKAGE / "distributed" / "ray_env.py"


def ray_imports(path: Path) -> list[int]:
    """Lines of `path` that import Ray or one of its submodules (any form, any depth)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        if any(n == "ray" or n.startswith("ray.") for n in names):
            lines.append(node.lineno)
    return lines


def test_ray_is_imported_by_one_module_only() -> None:
    found = {p: ray_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
    others = {str(p.relative_to(PACKAGE)): ln for p, ln in found.items() if ln and p != RAY_MODULE}
    assert others == {}, f"Ray imported outside distributed/ray_env.py: {others}"
    assert found[RAY_MODULE], "the walk found no import at all: it would pass vacuously"


def test_the_walk_sees_every_form_of_import(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import os\nimport ray\ndef f():\n    from ray import cloudpickle\n"
        "    import ray.util as u\n    import importlib\n    importlib.import_module('ray')\n"
        "from .ray import x\nimport rayon\n"
    )
    assert ray_imports(src) == [2, 4, 5, 7]


def test_no_test_hooks_in_the_options() -> None:
    """Faults are injected by a test transport (tests/distributed/faults.py), not options."""
    names = {f.name for f in fields(ReplayOptions)}
    assert not {n for n in names if "fail" in n or "kill" in n}


@pytest.mark.parametrize(
    ("opt", "kind"),
    [
        (ReplayOptions(address="inprocess"), InProcess),
        (ReplayOptions(), RayActors),
        (ReplayOptions(address="127.0.0.1:6379"), RayActors),
        (ReplayOptions(fleet="f1"), FleetHosts),
    ],
)
def test_transport_follows_the_options(opt: ReplayOptions, kind: type) -> None:
    assert type(transport_for(opt)) is kind


class CountingInProcess(InProcess):
    """An in-process transport that records every round of calls (method, shard names)."""

    def __init__(self) -> None:
        self.rounds: list[tuple[str, tuple[str, ...]]] = []

    def call(self, shards: list[ShardRef], method: str, args: list[tuple]) -> list:
        self.rounds.append((method, tuple(s.name for s in shards)))
        return super().call(shards, method, args)

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        self.kinds = {s.kind for s in specs}
        return super().start(specs)


@pytest.mark.parametrize(
    ("opt", "kind", "driving"),
    [
        (ReplayOptions(address="inprocess", epoch_ns=20 * 10**9), "region", "run_epoch"),
        (ReplayOptions(address="inprocess", placement="rack"), "shard", "advance"),
    ],
    ids=["epochs", "windows"],
)
def test_an_injected_transport_carries_every_call_of_its_driver(
    short_trace: Path, tmp_path: Path, opt: ReplayOptions, kind: str, driving: str
) -> None:
    """A transport passed to replay() carries the whole run; the driver follows the plan
    (region shards: epochs, every shard each round; split regions: windows, only the shards
    with work), and the results equal the default transport's."""
    ref = replay(SCENARIO, short_trace, tmp_path / "ref", opt)
    link = CountingInProcess()
    out = replay(SCENARIO, short_trace, tmp_path / "run", opt, transport=link)
    assert_same_run(ref, out)
    assert link.kinds == {kind}
    methods = [m for m, _ in link.rounds]
    assert methods.count(driving) >= 2 and methods[-1] == "timings"
    shards = len(prepare(SCENARIO, short_trace, opt, with_trace=False).cells)
    advanced = [names for m, names in link.rounds if m == driving]
    if driving == "run_epoch":
        assert all(len(n) == shards for n in advanced)
    else:
        assert any(0 < len(n) < shards for n in advanced)  # idle shards are not called


class FailingInProcess(InProcess):
    """An in-process transport whose second driving round raises (a shard's error)."""

    def __init__(self) -> None:
        self.rounds = 0
        self.handles: list = []

    def start(self, specs: list[ShardSpec]) -> list[ShardRef]:
        refs = super().start(specs)
        self.handles = [r.handle for r in refs]
        return refs

    def call(self, shards: list[ShardRef], method: str, args: list[tuple]) -> list:
        if method in ("advance", "run_epoch"):
            self.rounds += 1
            if self.rounds == 2:
                raise RuntimeError("injected shard failure")
        return super().call(shards, method, args)


@pytest.mark.parametrize("placement", ["region", "rack"])
def test_a_failed_in_process_run_leaves_no_writer_thread(
    short_trace: Path, tmp_path: Path, placement: str
) -> None:
    """Shards write on background threads: a run that fails mid-way stops them before it
    returns, so nothing writes into its directory afterwards and no thread stays."""
    link = FailingInProcess()
    opt = ReplayOptions(address="inprocess", placement=placement, epoch_ns=20 * 10**9)
    with pytest.raises(RuntimeError, match="injected"):
        replay(SCENARIO, short_trace, tmp_path / "run", opt, transport=link)
    assert link.rounds == 2 and link.handles
    assert not [h for h in link.handles if h.background._thread.is_alive()]
    # the run's directory stays as it was left, marked incomplete (replay keeps it)
    assert [p.name.startswith(".run.tmp-") for p in tmp_path.iterdir()] == [True]


def test_a_launched_host_abandons_the_worker_of_a_failed_run() -> None:
    """A long-lived fleet host replacing its worker stops the old worker's writer thread."""
    from mtia_cluster.distributed.launched import ShardHost
    from mtia_cluster.results.background import BackgroundWriter

    class Old:
        def __init__(self) -> None:
            self.background = BackgroundWriter(name="old-writer")

        def abandon(self) -> None:
            self.background.cancel()

    host, old = ShardHost(), Old()
    host.worker = old
    with pytest.raises(Exception):  # noqa: B017 - the new worker's arguments are bad
        host.start("region")
    assert not old.background._thread.is_alive()
