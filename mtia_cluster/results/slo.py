"""Service-level objectives and the per-request `slo_ok` flag.

R&R services have an end-to-end latency bound at a percentile (P99 100 ms in production,
P99 60 ms in MLPerf DLRMv2 Server). LLM services have TTFT and TPOT bounds at a percentile
(MLPerf llama2-70b Server: p99 TTFT 2 s, p99 TPOT 200 ms). A request meets its SLO when it
finished ok and each of its metrics is within its bound; TPOT is
``(finish_ns - first_token_ns) / (output_tokens - 1)`` and is compared in integers
(``finish - first <= tpot_ns * (output_tokens - 1)``) so no rounding enters. A request with a
single output token has no TPOT and passes that bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtia_cluster.engine.cell import STATUS_OK
from mtia_cluster.errors import UserError

KINDS = ("rr", "llm")


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
            if bound is not None and (not isinstance(bound, (int, np.integer)) or bound <= 0):
                raise UserError(
                    "SLO bound must be a positive integer (ns)", field=name, value=bound
                )

    @property
    def bounded(self) -> bool:
        """True when at least one bound is set."""
        return any(b is not None for b in (self.latency_ns, self.ttft_ns, self.tpot_ns))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (manifest.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceSLO:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def slo_ok(
    slo: ServiceSLO | None,
    *,
    status: np.ndarray,
    arrival_ns: np.ndarray,
    first_token_ns: np.ndarray,
    finish_ns: np.ndarray,
    output_tokens: np.ndarray,
) -> np.ndarray:
    """Per-request SLO flag: finished ok and every set bound met (see module doc)."""
    ok = status == STATUS_OK
    if slo is None:
        return ok
    if slo.latency_ns is not None:
        ok &= (finish_ns - arrival_ns) <= slo.latency_ns
    if slo.ttft_ns is not None:
        ok &= (first_token_ns - arrival_ns) <= slo.ttft_ns
    if slo.tpot_ns is not None:
        steps = output_tokens.astype(np.int64) - 1
        ok &= (steps <= 0) | ((finish_ns - first_token_ns) <= slo.tpot_ns * steps)
    return ok


_SCENARIO_KEYS = {"p99_ms": "latency_ns", "ttft_p99_ms": "ttft_ns", "tpot_p99_ms": "tpot_ns"}


def slos_from_scenario(slo: Mapping[str, Mapping[str, float]]) -> dict[str, ServiceSLO]:
    """ServiceSLOs from a scenario's ``slo:`` section (``Scenario.slo``).

    ``{service: {p99_ms, ttft_p99_ms, tpot_p99_ms}}``, all at the 99th percentile; a service
    with a TTFT or TPOT target is an LLM service. Milliseconds become integer nanoseconds
    (rounded to the nearest ns).
    """
    out: dict[str, ServiceSLO] = {}
    for service, targets in slo.items():
        unknown = [k for k in targets if k not in _SCENARIO_KEYS]
        if unknown:
            raise UserError(
                "unknown SLO target (p99_ms, ttft_p99_ms, tpot_p99_ms)",
                field=f"slo.{service}.{unknown[0]}",
                value=unknown[0],
            )
        bounds = {_SCENARIO_KEYS[k]: round(float(v) * 1_000_000) for k, v in targets.items()}
        llm = "ttft_ns" in bounds or "tpot_ns" in bounds
        out[str(service)] = ServiceSLO(kind="llm" if llm else "rr", percentile=99.0, **bounds)
    return out
