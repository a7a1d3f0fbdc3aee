"""Strict input: a mapping with the same key twice, at any depth of any config, catalog,
trace-spec or rollout YAML, is refused (one line naming the file, the key's path and the key;
exit 2), never silently "last one wins"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtia_cluster.cli.main import cli
from mtia_cluster.config.loader import load_yaml
from mtia_cluster.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))
# `key: ...` lines of a block mapping (not a list item's first key, which would make a new item)
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(\s|$)")


def _block_key_lines(node: yaml.Node) -> set[int]:
    """Lines where a key of a block (not flow) mapping starts, at any depth."""
    out: set[int] = set()
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not node.flow_style:
                out.add(key.start_mark.line)
            out |= _block_key_lines(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out |= _block_key_lines(item)
    return out


def _key_lines(text: str) -> list[int]:
    """`key:` lines of block mappings: a wrapped flow mapping's continuation line (calibrate
    fit writes long `{...}` over several lines) can look like `key: value` but is not one."""
    keys = _block_key_lines(yaml.compose(text))
    return [i for i, line in enumerate(text.splitlines()) if i in keys and _KEY_LINE.match(line)]


def test_every_shipped_yaml_has_no_duplicate_key() -> None:
    assert len(SHIPPED) > 20
    for path in SHIPPED:
        assert isinstance(load_yaml(path), dict), path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_repeated_key_anywhere_is_refused_naming_it(tmp_path: Path, data: st.DataObject) -> None:
    """Repeat a `key:` of a shipped file (as `key: null` before it): refused, naming it."""
    path = data.draw(st.sampled_from(SHIPPED))
    text = path.read_text()
    lines = text.splitlines()
    candidates = _key_lines(text)
    if not candidates:
        return
    i = data.draw(st.sampled_from(candidates))
    key = _KEY_LINE.match(lines[i]).group(2)  # type: ignore[union-attr]
    indent = _KEY_LINE.match(lines[i]).group(1)  # type: ignore[union-attr]
    out = tmp_path / f"dup-{path.name}"
    out.write_text("\n".join([*lines[:i], f"{indent}{key}: null", *lines[i:]]) + "\n")
    with pytest.raises(UserError) as err:
        load_yaml(out)
    assert err.value.file == str(out)
    assert err.value.field is not None and err.value.field.split(".")[-1] == key
    assert f"duplicate key {key!r}" in str(err.value)


def test_simulate_refuses_a_duplicate_autoscaling_key(tmp_path: Path) -> None:
    """The QA case: `interval_s: 5` and `interval_s: 50` under autoscaling.chat."""
    src = (ROOT / "configs/scenarios/llm-autoscale.yaml").read_text()
    text = src.replace("    interval_s: 5\n", "    interval_s: 5\n    interval_s: 50\n", 1)
    assert text != src
    cfg = tmp_path / "dup.yaml"
    cfg.write_text(text)
    res = CliRunner().invoke(cli, ["simulate", str(cfg), "--trace", str(tmp_path / "none.parquet")])
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert str(cfg) in line and "autoscaling.chat.interval_s" in line
    assert "duplicate key 'interval_s'" in line


def test_a_duplicate_key_in_a_list_item_names_its_index(tmp_path: Path) -> None:
    cfg = tmp_path / "d.yaml"
    cfg.write_text("a:\n  b:\n    - x: 1\n    - x: 1\n      y: 2\n      x: 3\n")
    with pytest.raises(UserError, match=r"a\.b\.1\.x: duplicate key 'x' at line 6"):
        load_yaml(cfg)


def test_the_same_key_in_sibling_mappings_is_fine(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("a: {x: 1}\nb: {x: 1}\nc: &c {x: 2}\nd: *c\n")
    assert load_yaml(cfg) == {"a": {"x": 1}, "b": {"x": 1}, "c": {"x": 2}, "d": {"x": 2}}
