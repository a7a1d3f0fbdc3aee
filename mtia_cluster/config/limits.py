"""Size limits checked before any work: a validated input that would need implausible memory
or time is refused with one line naming the field, the size and the limit (exit status 2).

Every limit has a documented default (docs/limits.md) and can be raised for one command with
the environment variable ``MTIA_CLUSTER_LIMITS``, e.g.
``MTIA_CLUSTER_LIMITS=accelerators=4000000,trace_span_s=31536000 mtia-cluster simulate ...``.
An environment variable (not a config section or a flag) so the same limits apply to every
command and every input kind (scenario, trace, trace spec, YAML) without changing their
schemas.

The checks of already validated scenarios are in config/scenario_limits.py (a Scenario right
after it is parsed, and a Scenario with a trace's span). Trace files are checked when opened
(traces/limits.py) and YAML documents while loaded (config/yaml_limits.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from mtia_cluster.errors import UserError

ENV = "MTIA_CLUSTER_LIMITS"


@dataclass(frozen=True)
class Limits:
    """The limits in force (defaults: docs/limits.md explains each figure)."""

    accelerators: int = 1_000_000  # in one scenario's fleet
    items_per_request: int = 1_000_000  # a trace row's items; a pool's batching.max_items
    tokens_per_request: int = 10_000_000  # a row's input/output_tokens; max_num_batched_tokens
    report_interval_min_ns: int = 1_000  # shortest window (router report interval)
    windows: int = 200_000_000  # trace span / report interval
    windows_x_pools: int = 2_000_000_000  # windows x pools (router work per window)
    device_intervals: int = 10_000_000  # (span / metrics interval) x accelerators, in memory
    streamed_device_intervals: int = 1_000_000_000  # the same, streamed to disk or folded
    region_intervals: int = 10_000_000  # (span / metrics interval) x regions: `regions/` rows
    trace_span_s: float = 31 * 86_400.0  # last arrival - first arrival
    generated_requests: int = 100_000_000  # rows `trace generate` builds in memory
    failure_events: int = 10_000_000  # fail/repair events `failures:` would draw
    yaml_depth: int = 64  # nesting of mappings and lists in one YAML document
    yaml_nodes: int = 1_000_000  # nodes of a YAML document with every alias expanded

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults with the overrides of ``MTIA_CLUSTER_LIMITS`` (name=value,...)."""
        text = (os.environ if environ is None else environ).get(ENV, "").strip()
        if not text:
            return cls()
        types = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in types:
                known = ", ".join(types)
                raise UserError(
                    f"expected NAME=VALUE with NAME one of {known}", field=ENV, value=part
                )
            changes[name] = _parse(name, raw.strip(), types[name] == "float")
        return replace(cls(), **changes)


def _parse(name: str, raw: str, real: bool) -> int | float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or (not real and not value.is_integer()):
        kind = "number" if real else "integer"
        raise UserError(f"{name} must be a positive {kind}", field=ENV, value=raw)
    return value if real else int(value)


def limit_error(
    what: str,
    size: float,
    name: str,
    limit: float,
    file: Any = None,
    field: str | None = None,
    unit: str = "",
) -> UserError:
    """The one-line refusal: which field, how big, which limit and how to raise it."""
    return UserError(
        f"{what} {_fmt(size)}{unit} exceeds the limit {name}={_fmt(limit)} "
        f"(raise it with {ENV}={name}=N)",
        file=file,
        field=field,
    )


def _fmt(x: float) -> str:
    """12,345 (or 12,345.678) for sizes up to 10**15, 1.2e+23 beyond."""
    if abs(x) >= 1e15:
        return f"{float(x):.3g}"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3f}".rstrip("0")
