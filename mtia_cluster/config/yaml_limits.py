"""A safe YAML loader that refuses documents too deep, too large once aliases are expanded,
or recursive, before building any Python object.

PyYAML's safe loaders accept aliases (``*a``) anywhere, so a few hundred bytes can stand for
10**9 strings ("billion laughs"): loading shares the objects, but anything that walks the
result (dumping the config into a manifest, copying it) expands them. A recursive alias
(``a: &a [*a]``) builds a list that contains itself and breaks every later walk. The check
walks libyaml's node graph (one visit per distinct node, iteratively, so depth cannot
overflow the Python stack) and counts the nodes and depth the document has with every alias
expanded, against ``Limits.yaml_nodes`` and ``Limits.yaml_depth``.
"""

from __future__ import annotations

from typing import Any

import yaml

from mtia_cluster.config.limits import ENV, Limits

# libyaml's C parser when PyYAML was built with it (the wheels are): ~10x faster, and every
# shard actor loads the whole catalog.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLimitError(yaml.MarkedYAMLError):
    """A document over a limit or with a recursive alias (a YAMLError with a line)."""


class LimitedSafeLoader(_Base):
    """yaml.CSafeLoader (or SafeLoader) that checks the node graph before constructing."""

    def construct_document(self, node: Any) -> Any:
        check_nodes(node, Limits.from_env())
        return super().construct_document(node)


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse(node: Any, problem: str) -> YamlLimitError:
    return YamlLimitError(problem=problem, problem_mark=node.start_mark)


def check_nodes(root: Any, limits: Limits) -> None:
    """Raise YamlLimitError if the document at `root`, aliases expanded, has more than
    `limits.yaml_nodes` nodes or is deeper than `limits.yaml_depth`, or refers to itself."""
    size: dict[int, int] = {}  # node id -> nodes of its expanded subtree
    depth: dict[int, int] = {}
    open_ids: set[int] = set()  # the current path (entered, not finished)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_ids.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > limits.yaml_nodes:
                raise _refuse(
                    node,
                    f"{size[key]:,} nodes with aliases expanded exceed the limit "
                    f"yaml_nodes={limits.yaml_nodes:,} (raise it with {ENV}=yaml_nodes=N)",
                )
            if depth[key] > limits.yaml_depth:
                raise _refuse(
                    node,
                    f"nesting deeper than the limit yaml_depth={limits.yaml_depth} "
                    f"(raise it with {ENV}=yaml_depth=N)",
                )
            continue
        if key in size:
            continue
        open_ids.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in open_ids:
                raise _refuse(kid, "recursive alias (a node that contains itself)")
            if id(kid) not in size:
                stack.append((kid, False))


def load_limited(text: str) -> Any:
    """Parse one YAML document with the limits (yaml.YAMLError on bad or refused input)."""
    return yaml.load(text, Loader=LimitedSafeLoader)
