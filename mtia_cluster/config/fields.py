"""Typed, validated access to one mapping of a config file.

`Fields(mapping, file, prefix)` reads fields and raises a UserError that names the file, the
dotted field path and the value whenever a field is missing, of the wrong type, or out of
range. This is the attrs-validator idea without a dependency: every schema in the package
reads its YAML through it, so every config error looks the same.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtia_cluster.errors import UserError

_MISSING = object()


class Fields:
    """A view of one mapping inside a config file, for validated reads."""

    def __init__(self, data: Any, file: str | Path | None, prefix: builtins.str = "") -> None:
        if not isinstance(data, Mapping):
            raise UserError(
                "expected a mapping", file=file, field=prefix or None, value=type(data).__name__
            )
        self.data = data
        self.file = file
        self.prefix = prefix

    def path(self, key: builtins.str) -> builtins.str:
        """Dotted path of `key` inside the file, for messages."""
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: builtins.str, message: builtins.str, value: Any = _MISSING) -> UserError:
        """Build a UserError for field `key`."""
        if value is _MISSING:
            return UserError(message, file=self.file, field=self.path(key))
        return UserError(message, file=self.file, field=self.path(key), value=value, has_value=True)

    def has(self, key: builtins.str) -> builtins.bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: builtins.str, default: Any = _MISSING) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.error(key, "missing required field")
            return default
        return self.data[key]

    def sub(self, key: builtins.str, default: Any = _MISSING) -> Fields:
        """The nested mapping at `key` as Fields."""
        value = self.raw(key, default)
        if not isinstance(value, Mapping):
            raise self.error(key, "expected a mapping", type(value).__name__)
        return Fields(value, self.file, self.path(key))

    def str(self, key: builtins.str, default: Any = _MISSING, choices: Any = None) -> builtins.str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, "expected a string", value)
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(sorted(choices))}", value)
        return value

    def number(
        self,
        key: builtins.str,
        default: Any = _MISSING,
        *,
        min_value: float | None = 0.0,
        positive: builtins.bool = False,
        max_value: float | None = None,
    ) -> float:
        """A finite real number; by default non-negative, optionally strictly positive."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, "expected a number", value)
        x = float(value)
        if not math.isfinite(x):
            raise self.error(key, "must be finite", value)
        if positive and x <= 0:
            raise self.error(key, "must be > 0", value)
        if min_value is not None and x < min_value:
            raise self.error(key, f"must be >= {min_value:g}", value)
        if max_value is not None and x > max_value:
            raise self.error(key, f"must be <= {max_value:g}", value)
        return x

    def int(
        self,
        key: builtins.str,
        default: Any = _MISSING,
        *,
        min_value: builtins.int | None = 0,
        positive: builtins.bool = False,
    ) -> builtins.int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.error(key, "expected an integer", value)
        if positive and value <= 0:
            raise self.error(key, "must be > 0", value)
        if min_value is not None and value < min_value:
            raise self.error(key, f"must be >= {min_value}", value)
        return builtins.int(value)

    def bool(self, key: builtins.str, default: Any = _MISSING) -> builtins.bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "expected true or false", value)
        return value

    def list(self, key: builtins.str, default: Any = _MISSING) -> builtins.list[Any]:
        value = self.raw(key, default)
        if not isinstance(value, list):
            raise self.error(key, "expected a list", type(value).__name__)
        return value
