"""Catalog files (configs/catalog/{chips,hosts,platforms}, configs/models) as typed models.

The loader validates every file (after its ``base:`` chain) against its model before reading
it, so an unknown or misspelled key (``tdp:`` for ``tdp_w:``, ``kv_head:``) is refused with
one line and a did-you-mean instead of silently falling back to a default. A sourced number
is a :class:`Quantity`; its range and provenance (source keys, notes for estimates) are then
checked by ``catalog/quantity.py`` as the catalog dataclasses are built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from mtia_cluster.config.models import Dtype
from mtia_cluster.config.schema import Strict

OffchipKind = Literal["lpddr5", "hbm2e", "hbm3", "hbm3e", "hbm4"]


class Quantity(Strict):
    """A sourced number: ``{value, status, source, note}``."""

    value: float | int
    status: Literal["published", "derived", "estimated", "calibrated"]
    source: str = ""
    note: str = ""


class _Entry(Strict):
    name: str = Field(min_length=1)
    display_name: str
    sources: dict[str, str] = Field(default_factory=dict)


class Tier(Strict):
    capacity_mb: Quantity
    bandwidth_gb_s: Quantity


class Offchip(Strict):
    kind: OffchipKind
    capacity_gb: Quantity
    bandwidth_gb_s: Quantity


class Memory(Strict):
    pe_local: Tier | None = None
    sram: Tier
    offchip: Offchip


class Power(Strict):
    tdp_w: Quantity
    typical_w: Quantity
    idle_w: Quantity


class HostLink(Strict):
    kind: str
    bandwidth_gb_s: Quantity


class Network(Strict):
    scale_up_domain: Quantity
    scale_up_gb_s: Quantity
    scale_out_gb_s: Quantity


class ChipEfficiency(Strict):
    gemm: Quantity
    offchip_stream: Quantity
    sram: Quantity
    ecc_throughput: Quantity
    pcie: Quantity


class ChipFile(_Entry):
    vendor: str
    op_model: str = Field(min_length=1)  # family file under configs/catalog/op_models/
    peak_basis: str = Field(min_length=1)  # what the peaks mean (dense, dtype, TDP)
    interconnect: str = ""  # scale-up fabric naming its collective parameters
    compute_units: Quantity | None = None  # SMs / CUs / PEs that GEMM tiles spread over
    clock_mhz: Quantity | None = None
    gemm_dense_tflops: dict[Dtype, Quantity] = Field(min_length=1)
    gemm_sparse_tflops: dict[Dtype, Quantity] = Field(default_factory=dict)
    simd_tflops: dict[Dtype, Quantity] = Field(default_factory=dict)
    memory: Memory
    power: Power
    host_link: HostLink
    network: Network
    launch_overhead_us: Quantity
    efficiency: ChipEfficiency


class HostFile(_Entry):
    sockets: Quantity
    cores_per_socket: Quantity
    accelerators_per_socket: Quantity
    dram_gb_per_socket: Quantity
    dram_bandwidth_gb_s_per_socket: Quantity
    nic_gb_s_per_socket: Quantity
    power_w: Quantity


class PlatformFabric(Strict):
    """The platform's scale-out fabric (engine/fabric/, docs/network.md "Fabric"): each
    host's RDMA NICs, the rack's top-of-rack switch, a spine tier and a latency per switch
    hop. The scale-up domain is the chip's (``network.scale_up_*``): its own fabric, never
    on these links."""

    nics_per_host: Quantity
    nic_gbit_s: Quantity
    spines: Quantity
    oversubscription: Quantity  # ToR downlink : uplink bandwidth (1 = non-blocking)
    hop_latency_ns: Quantity


class PlatformFile(_Entry):
    chip: str
    host: str
    hosts: Annotated[int, Field(gt=0)]
    accelerators_per_host: Annotated[int, Field(gt=0)]
    rdma_nic: Literal["none", "optional", "builtin"] = "none"
    fabric: PlatformFabric | None = None  # default: one NIC per socket at the host's rate


class Embedding(Strict):
    table_gb: Quantity
    lookups_per_sample: Quantity
    dim: Quantity
    dtype: Dtype
    access_skew: Quantity


class RRModelFile(_Entry):
    kind: Literal["rr"]
    dtype: Dtype
    dense_mflop_per_sample: Quantity
    dense_weight_mb: Quantity
    activation_kb_per_sample: Quantity
    activation_traffic_kb_per_sample: Quantity
    kernels_per_batch: Quantity
    accelerators: Annotated[int, Field(gt=0)]
    max_batch: Quantity
    embedding: Embedding
    input_bytes_per_sample: Quantity
    output_bytes_per_sample: Quantity
    host_cpu_us_per_sample: Quantity
    host_dram_bytes_per_sample: Quantity


class MoEBlock(Strict):
    """Routed experts (perf/moe.py): ``router_skew`` is the Zipf exponent of expert
    popularity (0 = uniform); ``capacity_factor`` caps an expert's tokens at
    ``ceil(factor x tokens x active / experts)`` (absent = dropless, as vLLM/TRT-LLM serve)."""

    experts: Quantity
    active_experts: Quantity
    shared_experts: Quantity
    expert_ffn: Quantity
    moe_layer_every: Annotated[int, Field(gt=0)] = 1
    router_skew: Quantity | None = None
    capacity_factor: Quantity | None = None


class LLMModelFile(_Entry):
    kind: Literal["llm"]
    layers: Quantity
    hidden: Quantity
    heads: Quantity
    kv_heads: Quantity
    head_dim: Quantity
    ffn: Quantity
    vocab: Quantity
    dtype: Dtype
    kv_dtype: Dtype
    moe: MoEBlock | None = None
    dense_layers: Quantity | None = None
    kv_elements_per_token_per_layer: Quantity | None = None
    q_dim: Quantity | None = None
    attn_params_per_layer: Quantity | None = None
    params_b: Quantity
    active_params_b: Quantity | None = None


class SyntheticModelFile(_Entry):
    kind: Literal["synthetic"]
    distribution: Literal["deterministic", "exponential", "lognormal"]
    mean_ms: Annotated[float, Field(gt=0.0)]
    cv: Annotated[float, Field(ge=0.0)] | None = None


def _kind_tag(value: Any) -> str:
    return f"model:{value.get('kind') if isinstance(value, dict) else None}"


ModelFile = Annotated[
    Annotated[RRModelFile, Tag("model:rr")]
    | Annotated[LLMModelFile, Tag("model:llm")]
    | Annotated[SyntheticModelFile, Tag("model:synthetic")],
    Discriminator(_kind_tag),
]


# Operator-model family files (configs/catalog/op_models/<family>.yaml, catalog/op_model.py).


class OpGemm(Strict):
    peak_fraction: Quantity
    bw_fraction: Quantity
    overlap_p: Quantity
    floor_us: Quantity


class OpGemmDtype(Strict):
    """GEMM parameters measured for one dtype, overriding the family's (fitted) defaults:
    the fraction of that dtype's dense peak and a fixed per-output-tile cost expressed as
    extra K elements at that dtype's rate (ops.gemm_compute_s)."""

    peak_fraction: Quantity
    k_overhead: Quantity


class OpKernel(Strict):
    bw_fraction: Quantity
    floor_us: Quantity


class OpElementwise(Strict):
    """One entry per memory-bound kernel kind (op_model.ELEMENTWISE_KINDS)."""

    emb: OpKernel
    norm: OpKernel
    rope: OpKernel
    act: OpKernel
    add: OpKernel


class OpAttention(Strict):
    """Attention kernel: prefill FLOPs at ``prefill_peak_fraction`` of peak; decode KV reads
    at ``decode_bw_fraction`` of bandwidth after a fixed ``decode_floor_us`` per layer and
    kernel (absent: 0, no floor measured for the family)."""

    prefill_peak_fraction: Quantity
    decode_bw_fraction: Quantity
    decode_floor_us: Quantity | None = None


class OpMoE(Strict):
    """Mixture-of-experts kernels (perf/moe.py): the routed experts' grouped GEMMs reach
    ``expert_gemm_peak_scale`` x the dense GEMM peak fraction."""

    expert_gemm_peak_scale: Quantity


class OpLink(Strict):
    latency_us: Quantity
    bw_fraction: Quantity


class OpFabrics(Strict):
    scale_up: OpLink
    scale_out: OpLink


class OpCollectives(Strict):
    all_reduce: OpFabrics
    send_recv: OpFabrics


class FittedOn(Strict):
    """What ``mtia-cluster calibrate fit`` fitted the family on (calibrate/writer.py)."""

    chip: str
    data: str
    data_sha256: str
    models: list[str]
    rows: dict[str, int]
    in_sample_mape: dict[str, float]


class OpModelFile(Strict):
    name: str = Field(min_length=1)
    sources: dict[str, str] = Field(default_factory=dict)
    gemm: OpGemm
    gemm_by_dtype: dict[Dtype, OpGemmDtype] = Field(default_factory=dict)
    elementwise: OpElementwise
    attention: OpAttention
    collectives: OpCollectives
    iteration_overhead_us: Quantity
    moe: OpMoE | None = None
    fitted_on: FittedOn | None = None
    collectives_by_interconnect: dict[str, OpCollectives] = Field(default_factory=dict)


# Cost, power and grid data (configs/catalog/cost/*.yaml, read by mtia_cluster/cost/data.py).


class ChipCost(Strict):
    """Purchase price and memory-bound activity of one accelerator."""

    price_usd: Quantity
    # power above idle while busy with memory-bound work, as a fraction of (TDP - idle)
    memory_bound_activity: Quantity


class PlatformCost(Strict):
    """What a platform adds to its accelerators, per host: CPU side, network, power."""

    host_price_usd: Quantity  # one host without its accelerators (CPUs, DRAM, NICs, chassis)
    network_price_usd_per_host: Quantity  # switch ports, optics, cables: the host's share
    network_power_w_per_host: Quantity  # switches and optics: the host's share
    host_idle_fraction: Quantity  # host (non-accelerator) power at zero load / at full load
    amortization_years: Quantity


class CostFile(Strict):
    """configs/catalog/cost/hardware.yaml: chips and platforms by catalog name."""

    sources: dict[str, str] = Field(default_factory=dict)
    chips: dict[str, ChipCost] = Field(min_length=1)
    platforms: dict[str, PlatformCost] = Field(min_length=1)


class GridEntry(Strict):
    """One region's data center and grid: PUE, electricity price, carbon intensity."""

    location: str = Field(min_length=1)
    pue: Quantity
    usd_per_kwh: Quantity
    gco2e_per_kwh: Quantity


class GridFile(Strict):
    """configs/catalog/cost/regions.yaml: grid data by region name, and a default."""

    sources: dict[str, str] = Field(default_factory=dict)
    default: GridEntry
    regions: dict[str, GridEntry] = Field(default_factory=dict)
