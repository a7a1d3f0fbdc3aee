"""Inside a disaggregated replica: KV links between instances, the decode-instance chooser,
and the prefix-cache view the replica reports for its prefill instances.

KV link (:class:`KVLink`): a prompt's KV goes from its prefill instance to its decode
instance over scale-up when both are in one scale-up domain, RDMA scale-out otherwise. The
instance's ``tp`` accelerators each hold ``1/tp`` of the KV (heads are sharded), so
``min(tp_prefill, tp_decode)`` accelerator links carry it in parallel; each moves bytes at
the chip's per-direction link bandwidth (catalog ``network.scale_up_gb_s`` /
``scale_out_gb_s``) times the achieved fraction, after a fixed latency (the chip family's
fitted point-to-point ``send_recv`` figures, ``configs/catalog/op_models``).

Sharing rule: transfers out of one prefill instance queue first come first served, one queue
per fabric (scale-up and scale-out are separate links; requests finishing together go in
request order). FIFO is work conserving, like fair sharing, so the link's busy periods and
throughput are the same and the last transfer of a busy period ends at the same time; it
gives each transfer its end time when it starts, which is what lets the replica fix the
request's arrival at the decode instance at the window boundary where it is routed (a fair
share would let a later transfer delay an earlier one). What is not modelled: contention at
the receiving decode instance's links, and the prefill instance's KV is freed when its
prefill ends (the transfer is not held against its memory).

Decode chooser (:class:`DecodeChooser`): per request, from each decode instance's report at
the last window boundary (outstanding requests, and KV blocks free after the needs of the
requests it holds but has not admitted) minus what the chooser itself sent since: the least
loaded instance whose free KV holds the request's whole need (prompt plus output), ties by
more free KV then lower index; when none can hold it, the one with the most free KV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtia_cluster.catalog import Chip
from mtia_cluster.engine.llm.kvcache import blocks_for
from mtia_cluster.engine.llm.scheduler import ReplicaScheduler

FABRIC_UP, FABRIC_OUT = 0, 1
FABRICS = {"scale_up": FABRIC_UP, "scale_out": FABRIC_OUT}


@dataclass(frozen=True)
class KVLink:
    """The KV path from one prefill instance to one decode instance."""

    fabric: int  # FABRIC_UP or FABRIC_OUT: which of the prefill instance's queues it uses
    latency_ns: int
    bytes_per_s: int  # achieved bandwidth of the path

    def transfer_ns(self, nbytes: int) -> int:
        """Time on the link of `nbytes`, rounded up to whole ns."""
        return self.latency_ns + -(-nbytes * 10**9 // self.bytes_per_s)


def kv_link(chip: Chip, fabric: int, lanes: int) -> KVLink:
    """The link over `fabric` with `lanes` accelerator links in parallel (module doc)."""
    p = chip.op_params
    c = p.send_recv_up if fabric == FABRIC_UP else p.send_recv_out
    bw = chip.scale_up_bytes_per_s if fabric == FABRIC_UP else chip.scale_out_bytes_per_s
    return KVLink(
        fabric=fabric,
        latency_ns=int(np.ceil(c.latency_s * 1e9)),
        bytes_per_s=max(1, int(lanes * bw * c.bw_fraction)),
    )


def link_table(
    chip: Chip,
    prefill_domains: list[np.ndarray],
    decode_domains: list[np.ndarray],
    forced: str | None,
) -> list[list[KVLink]]:
    """Per (prefill, decode) instance: scale-up when all their accelerators share one
    scale-up domain (ids from the topology), else scale-out; `forced` fixes the fabric."""
    out = []
    for pre in prefill_domains:
        row = []
        for dec in decode_domains:
            same = len(set(pre.tolist()) | set(dec.tolist())) == 1
            fabric = FABRICS[forced] if forced else (FABRIC_UP if same else FABRIC_OUT)
            row.append(kv_link(chip, fabric, min(len(pre), len(dec))))
        out.append(row)
    return out


def uniform_links(prefill: int, decode: int, bytes_per_s: float) -> list[list[KVLink]]:
    """Every pair on one scale-up link of `bytes_per_s`, no latency (tests, examples)."""
    link = KVLink(FABRIC_UP, 0, int(bytes_per_s))
    return [[link] * decode for _ in range(prefill)]


def kv_need_blocks(prompt: int, outputs: int, block_size: int) -> int:
    """KV blocks a request holds when it finishes: prompt plus all but the last token."""
    return blocks_for(prompt + outputs - 1, block_size)


def unadmitted_blocks(sched: ReplicaScheduler) -> int:
    """KV blocks that the requests `sched` holds but has not admitted (queued, arrived or
    not, or preempted: they hold no blocks) will need."""
    bs, prompt, outputs = sched.limits.block_size, sched.prompt, sched.outputs
    queued = list(sched.waiting) + sched._stream[sched._next :]
    return sum(kv_need_blocks(prompt[q], outputs[q], bs) for q in queued)


class DecodeChooser:
    """Stale reports of the decode instances plus the chooser's own sends (module doc)."""

    def __init__(self, instances: int) -> None:
        self.load = [0] * instances
        self.free = [0] * instances

    def refresh(self, load: list[int], free: list[int]) -> None:
        """Reports at a window boundary (the sends since the last one are in them)."""
        self.load, self.free = list(load), list(free)

    def choose(self, need_blocks: int) -> int:
        """The decode instance for a request needing `need_blocks` (counted as sent)."""
        load, free = self.load, self.free
        fits = [d for d in range(len(load)) if free[d] >= need_blocks]
        if fits:
            d = min(fits, key=lambda d: (load[d], -free[d], d))
        else:
            d = min(range(len(load)), key=lambda d: (-free[d], load[d], d))
        load[d] += 1
        free[d] -= need_blocks
        return d


class PrefixView:
    """The replica's prefix cache as its router sees it: a hash id is in it while at least
    one prefill instance holds it (instances' events counted, transitions reported)."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.events: list[tuple[int, int]] = []  # not yet reported

    def apply(self, events: list[tuple[int, int]]) -> None:
        count = self.count
        for h, s in events:
            n = count.get(h, 0) + (1 if s > 0 else -1)
            if n > 0:
                count[h] = n
            else:
                count.pop(h, None)
            if (s > 0 and n == 1) or (s < 0 and n == 0):
                self.events.append((h, s))

    def take(self) -> list[tuple[int, int]]:
        out, self.events = self.events, []
        return out
