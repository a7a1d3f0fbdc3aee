"""The one service-level-objective type, `ServiceSLO`, and its two text forms.

It lives below `config/` (which produces it from a scenario's ``slo:`` section) and every
consumer (results' verdicts, capacity searches, rollout replays and drills) takes it.

R&R services have an end-to-end latency bound at a percentile (P99 100 ms in production,
P99 60 ms in MLPerf DLRMv2 Server). LLM services have TTFT and TPOT bounds at a percentile
(MLPerf llama2-70b Server: p99 TTFT 2 s, p99 TPOT 200 ms) and may also bound end-to-end
latency (a rollout plan's ``slo_p99_ms``). Bounds are integer nanoseconds; None is not
checked.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from mtia_cluster.errors import UserError
from mtia_cluster.units import NS_PER_MS

KINDS = ("rr", "llm")
# scenario `slo:` keys (milliseconds, p99) -> ServiceSLO bound fields
SCENARIO_KEYS = {"p99_ms": "latency_ns", "ttft_p99_ms": "ttft_ns", "tpot_p99_ms": "tpot_ns"}
_TEXT_KEYS = {"p99": "latency_ns", "ttft_p99": "ttft_ns", "tpot_p99": "tpot_ns"}
_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


@dataclass(frozen=True)
class ServiceSLO:
    """One service's kind and bounds (ns); a bound of None is not checked.

    `percentile` is in percent (99.0 = p99): the verdict requires that percentile of each
    bounded metric to be within its bound.
    """

    kind: str = "rr"
    percentile: float = 99.0
    latency_ns: int | None = None
    ttft_ns: int | None = None
    tpot_ns: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError("service kind must be 'rr' or 'llm'", field="kind", value=self.kind)
        if not 0.0 < float(self.percentile) < 100.0:
            raise UserError(
                "SLO percentile must be in (0, 100)", field="percentile", value=self.percentile
            )
        for name in ("latency_ns", "ttft_ns", "tpot_ns"):
            bound = getattr(self, name)
            if bound is not None and (
                not isinstance(bound, numbers.Integral) or isinstance(bound, bool) or bound <= 0
            ):
                raise UserError(
                    "SLO bound must be a positive integer (ns)", field=name, value=bound
                )

    @property
    def bounded(self) -> bool:
        """True when at least one bound is set."""
        return any(b is not None for b in (self.latency_ns, self.ttft_ns, self.tpot_ns))

    def with_kind(self, kind: str) -> ServiceSLO:
        """The same bounds for a service of `kind` (the pool's model decides it)."""
        return replace(self, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (manifest.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceSLO:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))


def ms_to_ns(ms: float) -> int:
    """Milliseconds as integer nanoseconds (rounded to the nearest ns)."""
    return round(float(ms) * NS_PER_MS)


def slo_from_targets(
    targets: Mapping[str, float], field: str = "slo", file: str | None = None
) -> ServiceSLO:
    """One scenario ``slo:`` entry, ``{p99_ms, ttft_p99_ms, tpot_p99_ms}`` (all p99, ms).

    A service with a TTFT or TPOT bound is an LLM service."""
    unknown = [k for k in targets if k not in SCENARIO_KEYS]
    if unknown:
        raise UserError(
            "unknown SLO target (p99_ms, ttft_p99_ms, tpot_p99_ms)",
            file=file,
            field=f"{field}.{unknown[0]}",
            value=unknown[0],
        )
    bounds = {SCENARIO_KEYS[k]: ms_to_ns(v) for k, v in targets.items()}
    for key, value in targets.items():
        _check_ns(bounds[SCENARIO_KEYS[key]], value, f"{field}.{key}", file)
    llm = "ttft_ns" in bounds or "tpot_ns" in bounds
    return ServiceSLO(kind="llm" if llm else "rr", percentile=99.0, **bounds)


def _check_ns(ns: int, written: object, field: str, file: str | None) -> None:
    """A bound that rounds to 0 ns, refused where it was written (not as `latency_ns`)."""
    if ns < 1:
        raise UserError("must be at least 1 ns", file=file, field=field, value=written)


def slos_from_scenario(slo: Mapping[str, Mapping[str, float]]) -> dict[str, ServiceSLO]:
    """ServiceSLOs of a scenario's ``slo:`` section, ``{service: {p99_ms, ...}}``."""
    return {str(s): slo_from_targets(t, f"slo.{s}") for s, t in slo.items()}


def parse_slo_text(text: str, field: str = "--slo") -> ServiceSLO:
    """`p99=100ms` or `ttft_p99=2s,tpot_p99=200ms` (units ns, us, ms, s; p99 throughout)."""
    bounds: dict[str, int] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ns|us|ms|s)", value.strip())
        if not sep or key not in _TEXT_KEYS or m is None:
            raise UserError(
                "expected p99=100ms or ttft_p99=2s,tpot_p99=200ms", field=field, value=text
            )
        bounds[_TEXT_KEYS[key]] = round(float(m.group(1)) * _UNITS_NS[m.group(2)])
        _check_ns(bounds[_TEXT_KEYS[key]], value.strip(), field, None)
    llm = "ttft_ns" in bounds or "tpot_ns" in bounds
    return ServiceSLO(kind="llm" if llm else "rr", **bounds)
