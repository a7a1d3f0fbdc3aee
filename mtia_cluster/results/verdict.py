"""MLPerf-LoadGen-style Server verdicts: percentile, minimum duration and early stopping.

The rules follow LoadGen (mlcommons/inference, loadgen/results.cc and early_stopping.cc):

* **Percentile constraint.** Latencies are sorted ascending; the percentile value is the one
  at index ``floor(n * p)`` (LoadGen's definition). It must be ``<=`` the bound. A request
  that did not finish ok counts as infinitely late. This is computed from counts alone:
  with ``over`` requests above the bound it holds iff ``n - over >= floor(n * p) + 1``.
* **Minimum duration.** The last request must be scheduled (arrive) at least
  `min_duration_ns` after the start (600 s for Server; configurable).
* **Early stopping.** With ``t`` requests over the bound, LoadGen needs at least ``h + t``
  queries, where ``h`` is the smallest count for which the probability of seeing ``t`` or
  fewer overlatency queries in ``h + t`` (binomial, per-query overlatency probability
  ``1 - p``) is below ``1 - confidence`` (confidence 0.99, tolerance 0). Then, with 99%
  confidence, the true percentile meets the bound.

* **No requests.** A group offered no requests at all (a region that traffic never reached)
  is ``NO_REQUESTS``: there is nothing to judge, so it is neither VALID nor INVALID, and,
  like ``NO_SLO``, it does not count towards its region's or the fleet's verdict.

* **All ok** (an option, off for runs; capacity searches turn it on): every request must
  finish ok.

Searches pass options (``VerdictRules(min_duration_ns=0, early_stopping=False, all_ok=True)``)
to this one verdict rather than judging on their own.

The run is VALID when all three hold for every bounded metric (latency for R&R; TTFT and
TPOT for LLM), INVALID otherwise, with the reasons listed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtia_cluster.fmt import duration

MIN_DURATION_SERVER_NS = 600 * 1_000_000_000
EARLY_STOPPING_CONFIDENCE = 0.99
UNJUDGED = frozenset({"NO_SLO", "NO_REQUESTS"})  # results that no region/fleet verdict counts


@dataclass(frozen=True)
class VerdictRules:
    """Parameters of the verdict (LoadGen Server defaults)."""

    min_duration_ns: int = MIN_DURATION_SERVER_NS
    confidence: float = EARLY_STOPPING_CONFIDENCE
    early_stopping: bool = True
    all_ok: bool = False  # every request must finish ok (capacity searches)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (manifest.json)."""
        return asdict(self)


_WINDOW_SD = 40.0  # terms further than 40 standard deviations below the mean are < e^-800


def _log_binom_cdf(t: int, n: int, q: float) -> float:
    """log P[Binomial(n, q) <= t], summed in log space.

    Only the terms from ``mean - 40 sd`` up to ``t`` are summed (the others underflow
    double precision relative to the largest term), and a ``t`` more than 40 sd above the
    mean gives probability 1 to double precision, so the cost is O(sqrt(n)) rather than
    O(t) for the large overlatency counts of long runs.
    """
    mean, sd = n * q, math.sqrt(n * q * (1.0 - q))
    if t >= n or t > mean + _WINDOW_SD * sd + 1:
        return 0.0
    k0 = max(0, min(t, math.floor(mean - _WINDOW_SD * sd - 1)))
    ks = np.arange(k0, t + 1, dtype=np.float64)
    log_c0 = math.lgamma(n + 1) - math.lgamma(k0 + 1) - math.lgamma(n - k0 + 1)
    steps = np.log(n - ks[1:] + 1) - np.log(ks[1:])
    log_comb = log_c0 + np.concatenate([[0.0], np.cumsum(steps)])
    terms = log_comb + ks * math.log(q) + (n - ks) * math.log1p(-q)
    top = float(terms.max())
    return top + math.log(float(np.exp(terms - top).sum()))


def early_stopping_odds(h: int, t: int, p: float) -> float:
    """Probability of ``t`` or fewer overlatency queries among ``h + t`` (rate ``1 - p``)."""
    return math.exp(_log_binom_cdf(t, h + t, 1.0 - p))


@functools.lru_cache(maxsize=4096)
def min_passing_queries(t: int, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """Smallest h with ``odds(h, t, p) < 1 - confidence`` (LoadGen's MinPassingQueriesFinder)."""
    limit = 1.0 - confidence
    hi = max(1, math.ceil(math.log(limit) / math.log(p)), math.ceil(t * p / (1.0 - p)))
    while early_stopping_odds(hi, t, p) >= limit:
        hi *= 2
    lo = 0
    while lo < hi:  # invariant: odds(hi) < limit
        mid = (lo + hi) // 2
        if early_stopping_odds(mid, t, p) < limit:
            hi = mid
        else:
            lo = mid + 1
    return lo


def percentile_index(n: int, p: float) -> int:
    """LoadGen's index of the p-quantile in n sorted latencies: ``floor(n * p)``."""
    return int(n * p)


def metric_verdict(
    *, name: str, n: int, over: int, bound_ns: int, p: float, rules: VerdictRules
) -> dict[str, Any]:
    """The percentile and early-stopping checks for one metric (counts only)."""
    index = percentile_index(n, p)
    percentile_met = n > 0 and n - over >= index + 1
    out: dict[str, Any] = {
        "metric": name,
        "bound_ns": int(bound_ns),
        "queries": int(n),
        "overlatency_queries": int(over),
        "percentile_met": bool(percentile_met),
    }
    if rules.early_stopping:
        h = min_passing_queries(int(over), p, rules.confidence)
        out["early_stopping_min_queries"] = int(h + over)
        out["early_stopping_met"] = bool(n >= h + over)
    return out


def verdict(
    metrics: list[dict[str, Any]],
    *,
    duration_ns: int,
    rules: VerdictRules,
    not_ok: int = 0,
    requests: int | None = None,
) -> dict[str, Any]:
    """Combine metric checks with the minimum-duration rule (and, with `rules.all_ok`, the
    `not_ok` count of requests that did not finish ok) into VALID/INVALID + reasons. The one
    verdict function: every command and search judges through it. `duration_ns` is the
    arrival time of the group's last request; `requests` is the group's offered count (0:
    NO_REQUESTS, nothing to judge)."""
    if requests == 0:
        return {"result": "NO_REQUESTS", "reasons": ["no requests offered"], "metrics": []}
    if not metrics:
        return {"result": "NO_SLO", "reasons": ["service has no latency bound"], "metrics": []}
    reasons: list[str] = []
    if rules.all_ok and not_ok:
        reasons.append(f"{not_ok} requests did not finish ok (every request must)")
    for m in metrics:
        if not m["percentile_met"]:
            reasons.append(
                f"{m['metric']}: {m['overlatency_queries']} of {m['queries']} requests over "
                f"{duration(m['bound_ns'])}, percentile bound not met"
            )
        if rules.early_stopping and not m["early_stopping_met"]:
            reasons.append(
                f"{m['metric']}: early stopping needs {m['early_stopping_min_queries']} "
                f"requests, run has {m['queries']}"
            )
    duration_met = duration_ns >= rules.min_duration_ns
    if not duration_met:
        reasons.append(
            f"last request arrives at {duration(duration_ns)}, before the min duration "
            f"({duration(rules.min_duration_ns)})"
        )
    return {
        "result": "INVALID" if reasons else "VALID",
        "reasons": reasons,
        "min_duration_met": duration_met,
        "duration_ns": int(duration_ns),
        "min_duration_ns": int(rules.min_duration_ns),
        "metrics": metrics,
    }


def combined_result(results: list[str]) -> str:
    """The verdict of a row over several groups (a region, the fleet, a rack): VALID when
    every judged group is, INVALID when one is not; not judged (UNJUDGED) groups do not
    count, and a row with none judged is NO_REQUESTS when none of its groups had requests
    (or it has no group), else NO_SLO. summary.json's regions/fleet and `analyze`'s rows
    both combine here."""
    judged = [r for r in results if r not in UNJUDGED]
    if judged:
        return "VALID" if all(r == "VALID" for r in judged) else "INVALID"
    return "NO_REQUESTS" if all(r == "NO_REQUESTS" for r in results) else "NO_SLO"


def rules_text(rules: Mapping[str, Any] | None) -> str:
    """Verdict rules (summary.json's `rules`) in words, for consoles: which rules judged."""
    r = VerdictRules(**(rules or {}))
    parts = [
        f"minimum duration {duration(r.min_duration_ns)}"
        if r.min_duration_ns
        else "no minimum duration",
        f"early stopping at {r.confidence:.0%} confidence"
        if r.early_stopping
        else "no early stopping",
    ]
    if r.all_ok:
        parts.append("every request ok")
    name = "LoadGen Server" if r == VerdictRules() else "scenario `verdict:`"
    return f"{name} (" + ", ".join(parts) + ")"


# Options of the one verdict for searches and short what-if replays (not second judges):
# a capacity search judges each candidate rate on a short trace, every request must finish
# ok; a rollout moment replay or drill is a window of seconds, judged on its percentile only.
SEARCH_RULES = VerdictRules(min_duration_ns=0, early_stopping=False, all_ok=True)
WINDOW_RULES = VerdictRules(min_duration_ns=0, early_stopping=False)
