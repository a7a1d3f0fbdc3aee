"""Which transfers cross the scale-out fabric: flows per (cell, sender, NIC stripe).

* An LLM replica larger than its chip's scale-up domain (TP/PP/EP over scale-out): its
  accelerators split into scale-up domains in id order (stage after stage, ``tp x ep``
  chips each). Where a stage boundary is a domain boundary the pipeline hands activations
  (``hidden x 2 bytes / ep`` per token) from the first host of the previous stage's last
  domain to the next stage's first host; where a stage's ``tp x ep`` chips span several
  domains (MoE, ``ep > 1``), every domain of the stage sends its EP groups' tokens to the
  experts of every other domain and gets them back (dispatch + combine, ``moe_layers``
  times): per replica token ``2 x moe_layers x g x (top_k x hidden x 2 B / ep) x g / ep``
  bytes per ordered domain pair, ``g = domain / tp`` EP groups per domain (uniform routing,
  the mean of perf/moe.py's all-to-all). ``engine/events.py`` uses the same "larger than
  the domain" rule for ``links`` failures. One sender, group 0.
* A disaggregated replica (``engine/llm/disagg.py``, N:M): prefill instance ``p`` ships
  ``kv_bytes_per_token`` per prompt token to decode instances over scale-out when they are
  in different scale-up domains (or ``kv_link: scale_out``), as
  ``engine/llm/pd_routing.py:link_table`` decides. Its transfers leave one at a time (FIFO
  per prefill instance), so it is *one* flow, group ``p``, on the path to its first
  scale-out decode instance from ``p mod M`` on (the destination varies per request: the
  sender's NIC and uplinks are exact, the receiving end is a representative).
* An R&R host whose pool shards the model's embedding tables over ``embedding_hosts`` hosts
  (consecutive hosts of the pool, in groups): each sample looks up ``1 / N`` of its rows on
  every other host of its group, whose rows come back to it: one flow per peer, group = the
  peer's index, ``embedding_bytes_per_sample / N`` per item (rows shipped unpooled: an
  upper bound; docs/network.md, "Remote embedding lookups"). Its bytes follow the items all
  of the host's accelerators served (``driver_n`` of them, each server of ``model
  accelerators`` counting its batch once per accelerator).

A host pair on different hosts is striped over ``min(NICs)`` NIC pairs (rank k's traffic on
NIC k, one NIC per accelerator rank as HGX hosts are wired), each stripe a flow; a P/D
instance uses ``min(tp_prefill, tp_decode)`` stripes from the NICs nearest its accelerators
(the lanes of pd_routing.kv_link); a pair on one host never leaves it. Flows are
*backlogged*: they exist while the replica does, whatever its load, so their set depends
only on the topology (docs/network.md, "Fabric").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mtia_cluster.perf import llm_iteration_model
from mtia_cluster.perf.ops import ACT_BYTES
from mtia_cluster.workloads import LLMModel, RRModel

# (source host, destination host, group, accelerator whose token counter drives the bytes,
# bytes per token, lanes (accelerator links in parallel; 0: every NIC), first source NIC,
# first destination NIC)
Pair = tuple[int, int, int, int, float, int, int, int]


@dataclass(frozen=True)
class Flows:
    """Struct of arrays, one row per stripe."""

    cell: np.ndarray
    src_host: np.ndarray
    dst_host: np.ndarray
    stripe: np.ndarray
    group: np.ndarray  # sender within the cell (prefill instance; 0 for a pipeline)
    driver_acc: np.ndarray  # first accelerator whose work_units (tokens, items) drive the bytes
    driver_n: np.ndarray  # accelerators from driver_acc on whose work_units are summed
    src_nic0: np.ndarray  # stripe k leaves on working NIC (src_nic0 + k) mod working NICs
    dst_nic0: np.ndarray
    bytes_per_token: np.ndarray  # float64, per stripe's host pair

    def __len__(self) -> int:
        return len(self.cell)


def _pipeline(topology: Any, c: int, model: LLMModel, domain: int) -> list[Pair]:
    """The stage hand-offs that cross a scale-up domain boundary: from the first host of
    the domain holding stage k - 1's last accelerator to stage k's first."""
    pool, acc0 = topology.pools[topology.cell_pool[c]], topology.cell_acc0[c]
    s = pool.llm
    if pool.replica_size <= domain or s.pp <= 1:
        return []
    stage = pool.replica_size // s.pp
    per_token = model.hidden * ACT_BYTES / s.ep
    hosts, out = topology.acc_host, []
    for b in range(acc0 + stage, acc0 + pool.replica_size, stage):
        a = acc0 + (b - 1 - acc0) // domain * domain
        if (b - acc0) % domain == 0:
            out.append((hosts[a], hosts[b], 0, acc0, per_token, 0, 0, 0))
    return out


def _all_to_all(topology: Any, c: int, model: LLMModel, domain: int) -> list[Pair]:
    """MoE dispatch + combine between the scale-up domains of each stage when its
    ``tp x ep`` chips span several (module doc): one pair per ordered domain pair."""
    pool, acc0 = topology.pools[topology.cell_pool[c]], topology.cell_acc0[c]
    s, moe = pool.llm, model.moe
    stage = pool.replica_size // s.pp
    if s.ep <= 1 or moe is None or stage <= domain:
        return []
    groups = domain / s.tp  # EP groups per domain (a fraction when a group spans domains)
    per_group = moe.active_experts * model.hidden * ACT_BYTES / s.ep  # per replica token
    per_token = groups * per_group * (groups / s.ep) * 2 * model.moe_layers
    hosts, out = topology.acc_host, []
    for first in range(acc0, acc0 + pool.replica_size, stage):
        doms = [hosts[a] for a in range(first, first + stage, domain)]
        out += [(a, b, 0, acc0, per_token, 0, 0, 0) for a in doms for b in doms if a != b]
    return out


def _disaggregated(topology: Any, c: int, model: LLMModel, domain: int) -> list[Pair]:
    p_idx = topology.cell_pool[c]
    s, acc0 = topology.pools[p_idx].llm, topology.cell_acc0[c]
    pd = s.pd
    pre = [acc0 + k * pd.prefill_tp for k in range(pd.prefill_instances)]
    n_pre = pd.prefill_instances * pd.prefill_tp
    dec = [acc0 + n_pre + k * pd.decode_tp for k in range(pd.decode_instances)]

    def domains(first: int, n: int) -> set[int]:
        return {(a - topology.pool_acc0[p_idx]) // domain for a in range(first, first + n)}

    chip = topology.catalog.chip(topology.acc_chip[acc0])
    it = llm_iteration_model(chip, model, tp=pd.prefill_tp, pp=1, dtype=s.dtype)
    out: list[Pair] = []
    hosts, m = topology.acc_host, len(dec)
    for p, a in enumerate(pre):
        for d in (dec[(p + j) % m] for j in range(m)):
            same = len(domains(a, pd.prefill_tp) | domains(d, pd.decode_tp)) == 1
            if (s.kv_link or ("scale_up" if same else "scale_out")) == "scale_out":
                lanes = min(pd.prefill_tp, pd.decode_tp)
                pair = (hosts[a], hosts[d], p, a, float(it.kv_bytes_per_token), lanes)
                out.append((*pair, _nic_of(topology, a), _nic_of(topology, d)))
                break
    return out


def _nic_of(topology: Any, acc: int) -> int:
    """The NIC nearest accelerator `acc`: its position on its host scaled to the host's
    NICs (HGX: GPU i's own NIC i), from the catalog's fabric or one NIC per socket."""
    platform = topology.catalog.platform(topology.pools[topology.acc_pool[acc]].platform)
    host = topology.catalog.host(platform.host)
    nics = platform.fabric.nics_per_host if platform.fabric is not None else host.sockets
    local = (acc - topology.pool_acc0[topology.acc_pool[acc]]) % platform.accelerators_per_host
    return local * nics // platform.accelerators_per_host


def _embedding(topology: Any, c: int) -> list[Pair]:
    """R&R host `c`: one pair from each other host of its embedding group (module doc)."""
    p = topology.cell_pool[c]
    pool, n = topology.pools[p], topology.pools[p].embedding_hosts
    model = topology.catalog.model(pool.model)
    if n <= 1 or not isinstance(model, RRModel):
        return []
    local = (topology.cell_acc0[c] - topology.pool_acc0[p]) // pool.replica_size
    host0, first = topology.cell_host0[c] - local, local - local % n
    per_unit = model.embedding_bytes_per_sample / n / model.accelerators
    acc = topology.cell_acc0[c]
    peers = [g for g in range(first, first + n) if g != local]
    return [(host0 + g, host0 + local, k, acc, per_unit, 0, 0, 0) for k, g in enumerate(peers)]


def _pairs(topology: Any, c: int) -> list[Pair]:
    """Cell `c`'s scale-out host pairs (same host pairs dropped)."""
    pool = topology.pools[topology.cell_pool[c]]
    if pool.kind == "rr":
        return _embedding(topology, c)
    model = topology.catalog.model(pool.model)
    if pool.kind != "llm" or pool.llm is None or not isinstance(model, LLMModel):
        return []
    domain = topology.catalog.chip(topology.acc_chip[topology.cell_acc0[c]]).scale_up_domain
    if pool.llm.pd is None:
        pairs = _pipeline(topology, c, model, domain) + _all_to_all(topology, c, model, domain)
    else:
        pairs = _disaggregated(topology, c, model, domain)
    return [pair for pair in pairs if pair[0] != pair[1]]


def scale_out_flows(topology: Any, nics: np.ndarray | None = None) -> Flows:
    """Every stripe of every cell's scale-out transfers (cell order). `nics`: NICs per host
    (None: one stripe per host pair, to see whether there are any)."""
    rows: list[tuple[Any, ...]] = []
    pools = topology.pools
    sends = {p for p, pool in enumerate(pools) if pool.kind == "llm" or pool.embedding_hosts > 1}
    cell_pool = topology.cell_pool
    for c in (c for c in range(topology.cells) if cell_pool[c] in sends):
        span = pools[cell_pool[c]].replica_size if pools[cell_pool[c]].kind == "rr" else 1
        for a, b, group, acc, per_token, lanes, nic_a, nic_b in _pairs(topology, c):
            n = 1 if nics is None else int(min(nics[a], nics[b]))
            n = min(n, lanes) if lanes else n
            row = (c, a, b, group, acc, span, nic_a, nic_b, per_token)
            rows.extend((*row[:3], k, *row[3:]) for k in range(n))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 10
    ints = [np.array(col, dtype=np.int64) for col in cols[:9]]
    return Flows(
        cell=ints[0],
        src_host=ints[1],
        dst_host=ints[2],
        stripe=ints[3],
        group=ints[4],
        driver_acc=ints[5],
        driver_n=ints[6],
        src_nic0=ints[7],
        dst_nic0=ints[8],
        bytes_per_token=np.array(cols[9], dtype=np.float64),
    )
