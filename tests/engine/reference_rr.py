"""A plain event-by-event simulation of one R&R socket, written independently of the
vectorized engine, used as the oracle in property tests.

Events are (time, priority, sequence): at one instant, batch deadlines fire before requests
become ready (a request ready exactly at the deadline does not join), then arrivals, then
anything else. Dispatch happens whenever a batch is closed and a server is free.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

DEADLINE, READY, ARRIVAL, CORE_FREE, SERVER_FREE = 0, 1, 2, 3, 4


@dataclass
class RefResult:
    start: dict[int, int] = field(default_factory=dict)
    finish: dict[int, int] = field(default_factory=dict)
    server: dict[int, int] = field(default_factory=dict)
    batch_size: dict[int, int] = field(default_factory=dict)


def simulate_socket(
    arrivals: list[tuple[int, int, int]],
    cores: int,
    servers: int,
    cpu_ns_per_item: float,
    service_ns: dict[int, int],
    max_items: int,
    max_wait_ns: int,
) -> RefResult:
    """arrivals: (arrival_ns, request key, items), in arrival order."""
    out = RefResult()
    ev: list[tuple[int, int, int, object]] = []
    seq = 0

    def push(t: int, prio: int, payload: object) -> None:
        nonlocal seq
        heapq.heappush(ev, (t, prio, seq, payload))
        seq += 1

    items_of = {k: it for _, k, it in arrivals}
    order_of = {k: i for i, (_, k, _) in enumerate(arrivals)}
    for a, k, _ in arrivals:
        push(a, ARRIVAL, k)
    core_free = [0] * cores
    prep_queue: list[int] = []
    open_batch: list[int] = []
    open_items = 0
    open_deadline_id = -1
    closed: list[tuple[list[int], int]] = []
    server_free = [0] * servers

    def try_prep(now: int) -> None:
        while prep_queue:
            c = min(range(cores), key=lambda j: core_free[j])
            if core_free[c] > now:
                return
            k = prep_queue.pop(0)
            cost = max(1, _ceil(items_of[k] * cpu_ns_per_item))
            core_free[c] = now + cost
            push(now + cost, READY, (order_of[k], k))
            push(now + cost, CORE_FREE, None)

    def close(now: int) -> None:
        nonlocal open_batch, open_items, open_deadline_id
        if open_batch:
            closed.append((open_batch, now))
        open_batch, open_items = [], 0
        open_deadline_id += 1

    def try_dispatch(now: int) -> None:
        while closed:
            best = min(range(servers), key=lambda j: (server_free[j], j))
            if server_free[best] > now:
                return
            members, _ = closed.pop(0)
            size = sum(items_of[k] for k in members)
            svc = service_ns[size]
            server_free[best] = now + svc
            for k in members:
                out.start[k], out.finish[k] = now, now + svc
                out.server[k], out.batch_size[k] = best, len(members)
            push(now + svc, SERVER_FREE, None)

    while ev:
        t, prio, _, payload = heapq.heappop(ev)
        if prio == ARRIVAL and cpu_ns_per_item == 0:
            push(t, READY, (0, payload))  # no host preprocessing: ready at arrival
        elif prio == ARRIVAL:
            prep_queue.append(payload)  # type: ignore[arg-type]
            try_prep(t)
        elif prio == CORE_FREE:
            try_prep(t)
        elif prio == READY:
            _, k = payload  # type: ignore[misc]
            it = items_of[k]
            if open_batch and open_items + it > max_items:
                close(t)
            if not open_batch:
                open_batch, open_items = [k], it
                push(t + max_wait_ns, DEADLINE, open_deadline_id)
            else:
                open_batch.append(k)
                open_items += it
            if open_items >= max_items:
                close(t)
        elif prio == DEADLINE and payload == open_deadline_id and open_batch:
            close(t)
        try_dispatch(t)
    return out


def _ceil(x: float) -> int:
    """Ceiling of x as the engine computes it (float ns, rounded up)."""
    return math.ceil(x)
