"""A safe YAML loader that refuses documents too deep, too large once aliases are expanded,
or recursive, before building any Python object.

PyYAML's safe loaders accept aliases (``*a``) anywhere, so a few hundred bytes can stand for
10**9 strings ("billion laughs"): loading shares the objects, but anything that walks the
result (dumping the config into a manifest, copying it) expands them. A recursive alias
(``a: &a [*a]``) builds a list that contains itself and breaks every later walk. The check
walks libyaml's node graph (one visit per distinct node, iteratively, so depth cannot
overflow the Python stack) and counts the nodes and depth the document has with every alias
expanded, against ``Limits.yaml_nodes`` and ``Limits.yaml_depth``.

Numbers in exponent notation without a sign in the exponent (``1e15``, ``2.5E3``) are floats,
as in YAML 1.2 and JSON; PyYAML follows YAML 1.1, which reads them as the text '1e15', so a
field that wants a number would be refused with "expected a number (got '1e15')".

A mapping with the same key twice (``interval_s: 5`` then ``interval_s: 50``) is refused too
(DuplicateKeyError), at any depth: PyYAML would keep the last silently, and strict input means
the file says one thing.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from mtia_cluster.config.limits import ENV, Limits

# libyaml's C parser when PyYAML was built with it (the wheels are): ~10x faster, and every
# shard actor loads the whole catalog.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLimitError(yaml.MarkedYAMLError):
    """A document over a limit or with a recursive alias (a YAMLError with a line)."""


class DuplicateKeyError(YamlLimitError):
    """A mapping that has one key twice; `path` is the dotted path of the key."""

    def __init__(self, path: str, key: str, node: Any, first: Any) -> None:
        self.path, self.key = path, key
        problem = (
            f"duplicate key {key!r} at line {node.start_mark.line + 1} "
            f"(first at line {first.start_mark.line + 1})"
        )
        super().__init__(problem=problem, problem_mark=node.start_mark)


# YAML 1.2 floats with an exponent that YAML 1.1's float pattern misses (it needs a '.' and
# a signed exponent); `construct_yaml_float` parses them with float().
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class LimitedSafeLoader(_Base):
    """yaml.CSafeLoader (or SafeLoader) that checks the node graph before constructing."""

    def construct_document(self, node: Any) -> Any:
        check_nodes(node, Limits.from_env())
        check_duplicate_keys(node)
        return super().construct_document(node)


LimitedSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+.0123456789")
)


def check_duplicate_keys(root: Any) -> None:
    """Raise DuplicateKeyError for the first mapping (of any depth) with a repeated scalar
    key. Each distinct node is visited once (aliases are not re-walked); merge keys (``<<``)
    are left to PyYAML."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += [(kid, f"{path}.{i}" if path else str(i)) for i, kid in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], Any] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            here = f"{path}.{name}" if path else name
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, name) in first:
                    raise DuplicateKeyError(here, name, key, first[(key.tag, name)])
                first[(key.tag, name)] = key
            stack.append((value, here))


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
