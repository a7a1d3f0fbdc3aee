"""Load the whole catalog (chips, hosts, platforms, models) from a configs directory.

Files may say ``base: other-name`` to start from another file of the same folder and override
fields (a deep merge; ``null`` removes an inherited field). Files whose name starts with ``_``
are templates: usable as a base, never listed.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from mtia_cluster.catalog import models
from mtia_cluster.catalog.chip import Chip, load_chip_data
from mtia_cluster.catalog.system import Host, Platform, parse_host, parse_platform
from mtia_cluster.config import load_yaml
from mtia_cluster.config.schema import to_user_error
from mtia_cluster.errors import UserError
from mtia_cluster.paths import configs_dir
from mtia_cluster.workloads import Model, parse_model

T = TypeVar("T")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load `path` and apply its `base:` chain."""
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError("expected a file name", file=path, field="base", value=base)
    base_path = path.parent / f"{base}.yaml"
    if base_path in seen or base_path == path:
        raise UserError("circular base chain", file=path, field="base", value=base)
    if not base_path.exists():
        raise UserError("base file not found", file=path, field="base", value=base)
    return _merge(resolve_file(base_path, (*seen, path)), data)


def _load_dir(
    folder: Path, parse: Callable[[Any, Path], T], kind: str, shape: _Shape
) -> dict[str, T]:
    if not folder.is_dir():
        raise UserError(f"catalog folder for {kind} not found", file=folder)
    out: dict[str, T] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        data = resolve_file(path)
        spec = shape.check(data, path)  # keys, types, choices (catalog/models.py)
        item = parse(spec, path)
        name = getattr(item, "name")  # noqa: B009 - every catalog item has a name
        if name != path.stem:
            raise UserError("name must match the file name", file=path, field="name", value=name)
        out[name] = item
    return out


@dataclass(frozen=True)
class Catalog:
    """Every chip, host, platform and model, by name."""

    chips: dict[str, Chip]
    hosts: dict[str, Host]
    platforms: dict[str, Platform]
    models: dict[str, Model]

    def chip(self, name: str) -> Chip:
        return _lookup(self.chips, name, "chip")

    def host(self, name: str) -> Host:
        return _lookup(self.hosts, name, "host")

    def platform(self, name: str) -> Platform:
        return _lookup(self.platforms, name, "platform")

    def model(self, name: str) -> Model:
        return _lookup(self.models, name, "model")


def _lookup(table: dict[str, T], name: str, kind: str) -> T:
    if name not in table:
        raise UserError(
            f"unknown {kind} (known: {', '.join(sorted(table))})", field=kind, value=name
        )
    return table[name]


class _Shape:
    """Validates one catalog file against its typed model; errors name file and field.

    The validated model is what the builders read: there is one reading of each file."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.adapter: TypeAdapter[Any] = TypeAdapter(model)

    def check(self, data: dict[str, Any], path: Path) -> Any:
        try:
            return self.adapter.validate_python(data)
        except ValidationError as exc:
            raise to_user_error(exc, self.model, path) from None


def _shape(model: Any) -> _Shape:
    return _Shape(model)


@functools.lru_cache(maxsize=8)
def _load(root: Path) -> Catalog:
    cat = root / "catalog"
    catalog = Catalog(
        chips=_load_dir(cat / "chips", load_chip_data, "chips", _shape(models.ChipFile)),
        hosts=_load_dir(cat / "hosts", parse_host, "hosts", _shape(models.HostFile)),
        platforms=_load_dir(
            cat / "platforms", parse_platform, "platforms", _shape(models.PlatformFile)
        ),
        models=_load_dir(root / "models", parse_model, "models", _shape(models.ModelFile)),
    )
    for p in catalog.platforms.values():
        if p.chip not in catalog.chips:
            raise UserError("unknown chip", file=p.file, field="chip", value=p.chip)
        if p.host not in catalog.hosts:
            raise UserError("unknown host", file=p.file, field="host", value=p.host)
    return catalog


def load_catalog(root: str | Path | None = None) -> Catalog:
    """The catalog under `root` (default: the shipped configs/ directory). Cached."""
    return _load(Path(root) if root is not None else configs_dir())
