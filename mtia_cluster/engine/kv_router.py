"""KV-aware routing: session and prefix affinity weighed against load (llm-d, Dynamo).

Both policies score each available candidate, request by request in arrival order, as
``affinity_weight x affinity + load_weight x queue score`` and take the highest (ties: the
lowest index), as llm-d's scheduler sums weighted scorers:

* queue score: ``(max load - load) / (max load - min load)`` over the candidates (1 for all
  when equal), load = outstanding requests from the last reports plus those the router sent
  since (llm-d's queue scorer);
* ``prefix_affinity``: the share of the request's hash-chain blocks (``prefix_blocks``) whose
  leading run the candidate's prefix cache holds, as of the last reports (llm-d's precise
  prefix-cache scorer, Dynamo's KV-overlap score); 0 for a request without a chain;
* ``session_affinity``: 1 on the candidate the router last sent the request's session to
  (llm-d's session-affinity scorer), else 0; a request without a session scores 0 everywhere.

Reports are stale as for every load-aware policy: a candidate's cache view changes only at
window boundaries, from the hash ids its cell reports appearing or leaving
(:meth:`~mtia_cluster.engine.llm.cell.LLMReplicaCell.prefix_events`), so routing does not
depend on how cells are sharded or placed.
"""

from __future__ import annotations

import numpy as np

from mtia_cluster.engine.cell import RequestBatch

AFFINITY_POLICIES = ("prefix_affinity", "session_affinity")


class AffinityRouting:
    """State of one router's affinity policy: cache views or session placements."""

    def __init__(self, policy: str, candidates: int, weights: tuple[float, float]) -> None:
        self.prefix = policy == "prefix_affinity"
        self.weights = weights
        self.views: list[set[int]] = [set() for _ in range(candidates)]  # hash ids held
        self.sessions: dict[int, int] = {}  # session -> candidate it was last sent to

    def apply_events(self, local: np.ndarray, hashes: np.ndarray, signs: np.ndarray) -> None:
        """Cache events of candidates `local`, in order: hash ids appeared (+1) or left."""
        if not self.prefix:
            return
        views = self.views
        for c, h, s in zip(local.tolist(), hashes.tolist(), signs.tolist(), strict=True):
            if s > 0:
                views[c].add(h)
            else:
                views[c].discard(h)

    def route(self, load: np.ndarray, up: np.ndarray, requests: RequestBatch) -> np.ndarray:
        """Candidate (index into all candidates) per request; `load` per candidate in `up`."""
        w_aff, w_load = self.weights
        load = load.astype(np.float64)
        out = np.empty(len(requests), dtype=np.int64)
        chains = requests.prefix_blocks.tolist() if self.prefix else None
        sessions = requests.session_id.tolist()
        for i in range(len(requests)):
            lo, hi = load.min(), load.max()
            score = w_load * ((hi - load) / (hi - lo) if hi > lo else np.ones(len(up)))
            if chains is not None:
                if chains[i] is not None:
                    score += w_aff * self._overlap(chains[i].hashes.tolist(), up)
            elif sessions[i] >= 0 and sessions[i] in self.sessions:
                score += w_aff * (up == self.sessions[sessions[i]])
            j = int(np.argmax(score))
            load[j] += 1
            out[i] = up[j]
            if not self.prefix and sessions[i] >= 0:
                self.sessions[sessions[i]] = int(up[j])
        return out

    def _overlap(self, hashes: list[int], up: np.ndarray) -> np.ndarray:
        """Per candidate in `up`: the share of `hashes` in its cache's leading run."""
        out = np.zeros(len(up))
        for k, c in enumerate(up.tolist()):
            view, m = self.views[c], 0
            while m < len(hashes) and hashes[m] in view:
                m += 1
            out[k] = m / len(hashes)
        return out
