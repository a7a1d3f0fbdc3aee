"""Max-min fair rates of flows sharing links (progressive filling, the fluid model).

Each flow crosses a set of links; a link of capacity ``C`` shared by ``n`` unfrozen flows
offers each ``C_left / n``. Progressive filling (Bertsekas & Gallager, *Data Networks*, §6.5)
raises every unfrozen flow's rate together until some link saturates, freezes the flows that
cross it, and repeats: the result is the unique max-min fair allocation, where every flow
crosses at least one saturated link on which no other flow gets more than it (its bottleneck).
It is the fluid model of SimGrid's network model and ASTRA-sim's analytical network backend:
no packets, only rates, so a window's rates are one deterministic function of its flows.
"""

from __future__ import annotations

import numpy as np

_SATURATED = 1e-12  # relative tolerance: links whose share is the minimum fill together


def max_min_rates(
    flow_of_entry: np.ndarray, link_of_entry: np.ndarray, capacity: np.ndarray, flows: int
) -> np.ndarray:
    """Rate of each of `flows` flows; entry ``i`` says flow ``flow_of_entry[i]`` crosses link
    ``link_of_entry[i]`` (a flow crosses a link at most once). A flow with no entry gets
    ``inf`` (it crosses no shared link); a zero-capacity link gives its flows rate 0."""
    f = np.asarray(flow_of_entry, dtype=np.int64)
    link = np.asarray(link_of_entry, dtype=np.int64)
    left = np.asarray(capacity, dtype=np.float64).copy()
    rate = np.full(flows, np.inf)
    frozen = np.zeros(flows, dtype=bool)
    frozen[np.setdiff1d(np.arange(flows), f)] = True
    level = 0.0  # the common rate of every unfrozen flow so far
    while not frozen.all():
        live = ~frozen[f]
        users = np.bincount(link[live], minlength=len(left))
        used = users > 0
        share = np.full(len(left), np.inf)
        share[used] = left[used] / users[used]
        step = float(share.min())
        level += step
        left[used] -= step * users[used]
        full = used & (share <= step * (1.0 + _SATURATED))  # the links that just filled
        left[full] = 0.0
        hit = np.unique(f[live & full[link]])
        rate[hit] = level
        frozen[hit] = True
    return rate
