"""The per-request `slo_ok` flag of a :class:`~mtia_cluster.slo.ServiceSLO` (the one SLO type).

R&R services have an end-to-end latency bound at a percentile (P99 100 ms in production,
P99 60 ms in MLPerf DLRMv2 Server). LLM services have TTFT and TPOT bounds at a percentile
(MLPerf llama2-70b Server: p99 TTFT 2 s, p99 TPOT 200 ms). A request meets its SLO when it
finished ok and each of its metrics is within its bound; TPOT is
``(finish_ns - first_token_ns) / (output_tokens - 1)`` and is compared in integers
(``finish - first <= tpot_ns * (output_tokens - 1)``) so no rounding enters. A request with a
single output token has no TPOT and passes that bound.
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.engine.cell import STATUS_OK
from mtia_cluster.slo import ServiceSLO


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
