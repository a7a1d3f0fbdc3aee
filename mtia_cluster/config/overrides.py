"""`--set a.b=c` overrides applied to a loaded config mapping.

Values are parsed as YAML scalars/flow collections (`--set router.policy=p2c`,
`--set regions.0.racks=4`, `--set slo.feed.p99_ms=100`), so types come out as the user wrote
them. A list index may also be written as error messages print it (`regions[0].racks=4`).
Given the document's model, every path is checked against it first: an unknown key is
refused (exit 2, with a did-you-mean) instead of being added and ignored.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yaml

from mtia_cluster.config.yaml_limits import YamlLimitError, load_limited
from mtia_cluster.errors import UserError

if TYPE_CHECKING:
    from pydantic import BaseModel

_BRACKET = re.compile(r"\[([^\[\].]*)\]")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError("expected KEY=VALUE", field="--set", value=text)
    # `regions[0].pools[1]` (the form error messages print) is `regions.0.pools.1`
    path = _BRACKET.sub(r".\1", key.strip()).split(".")
    if any(not part for part in path):
        raise UserError("empty path component", field="--set", value=text)
    try:
        value = load_limited(raw) if raw.strip() else ""
    except YamlLimitError as exc:
        raise UserError(str(exc.problem), field="--set", value=key) from None
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(
    config: dict[str, Any], overrides: Iterable[str], model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """Return a deep copy of `config` with every `--set` override applied in order (each
    path checked against `model` when given)."""
    out = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        if model is not None:
            from mtia_cluster.config.schema import check_path

            check_path(model, path, text)
        node: Any = out
        for i, part in enumerate(path[:-1]):
            node = _step(node, part, text, create=True, depth=i)
        _assign(node, path[-1], value, text)
    return out


def _step(node: Any, part: str, text: str, *, create: bool, depth: int) -> Any:
    if isinstance(node, list):
        idx = _index(node, part, text)
        return node[idx]
    if isinstance(node, dict):
        if part not in node:
            if not create:
                raise UserError("no such key", field="--set", value=text)
            node[part] = {}
        return node[part]
    raise UserError(
        f"cannot descend into a {type(node).__name__} at '{part}'", field="--set", value=text
    )


def _assign(node: Any, part: str, value: Any, text: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, text)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise UserError(
            f"cannot set '{part}' on a {type(node).__name__}", field="--set", value=text
        )


def _index(node: list[Any], part: str, text: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise UserError(f"'{part}' is not a list index", field="--set", value=text) from None
    if not -len(node) <= idx < len(node):
        raise UserError(
            f"index {idx} out of range (list has {len(node)})", field="--set", value=text
        )
    return idx
