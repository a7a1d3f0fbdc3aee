"""`chips`, `models`, `estimate`, `validate`: the catalog and the cost model from the shell."""

from __future__ import annotations

import sys
from typing import Any

import click

from mtia_cluster.catalog import Chip, load_catalog
from mtia_cluster.cli._common import echo_json, echo_table, json_option
from mtia_cluster.errors import UserError
from mtia_cluster.perf import llm_iteration_model, rr_batch_cost
from mtia_cluster.workloads import LLMModel, RRModel, SyntheticModel


def _chip_row(c: Chip) -> dict[str, Any]:
    return {
        "name": c.name,
        "display_name": c.display_name,
        "vendor": c.vendor,
        "peak_basis": c.peak_basis,
        "op_model": c.op_params.family,
        "compute_units": c.compute_units,
        "gemm_dense_tflops": {k: v / 1e12 for k, v in c.gemm_dense_flops.items()},
        "gemm_sparse_tflops": {k: v / 1e12 for k, v in c.gemm_sparse_flops.items()},
        "sram_mb": c.sram.capacity_bytes / 1e6,
        "sram_gb_s": c.sram.bandwidth_bytes_per_s / 1e9,
        "offchip_kind": c.offchip.kind,
        "offchip_gb": c.offchip.capacity_bytes / 1e9,
        "offchip_gb_s": c.offchip.bandwidth_bytes_per_s / 1e9,
        "tdp_w": c.tdp_w,
        "typical_w": c.typical_w,
        "idle_w": c.idle_w,
        "host_link": c.host_link,
        "host_link_gb_s": c.host_link_bytes_per_s / 1e9,
        "scale_up_domain": c.scale_up_domain,
        "scale_up_gb_s": c.scale_up_bytes_per_s / 1e9,
        "scale_out_gb_s": c.scale_out_bytes_per_s / 1e9,
        "provenance": {
            k: {"status": p.status, "source": p.source, "note": p.note}
            for k, p in c.provenance.items()
        },
    }


@click.command()
@json_option
def chips(as_json: bool) -> None:
    """List the accelerator catalog (every number with its source in --json)."""
    cat = load_catalog()
    rows = [_chip_row(c) for c in cat.chips.values()]
    if as_json:
        echo_json(rows)
        return
    echo_table(
        [
            "name",
            "vendor",
            "bf16/fp16 TF",
            "fp8/int8 TF",
            "SRAM MB",
            "mem",
            "mem GB",
            "mem GB/s",
            "TDP W",
        ],
        [
            [
                r["name"],
                r["vendor"],
                max(r["gemm_dense_tflops"].get(d, 0.0) for d in ("bf16", "fp16")),
                max(r["gemm_dense_tflops"].get(d, 0.0) for d in ("fp8", "int8")),
                r["sram_mb"],
                r["offchip_kind"],
                r["offchip_gb"],
                r["offchip_gb_s"],
                r["tdp_w"],
            ]
            for r in rows
        ],
    )


def _model_row(m: RRModel | LLMModel | SyntheticModel) -> dict[str, Any]:
    row: dict[str, Any] = {"name": m.name, "kind": m.kind, "display_name": m.display_name}
    if isinstance(m, RRModel):
        row |= {
            "dense_mflop_per_sample": m.dense_flop_per_sample / 1e6,
            "size_gb": m.size_bytes / 1e9,
            "accelerators": m.accelerators,
            "embedding_kb_per_sample": m.embedding_bytes_per_sample / 1e3,
            "max_batch": m.max_batch,
        }
    elif isinstance(m, LLMModel):
        row |= {
            "params_b": m.params / 1e9,
            "active_params_b": m.active_params / 1e9,
            "layers": m.layers,
            "hidden": m.hidden,
            "kv_bytes_per_token": m.kv_bytes_per_token,
            "experts": m.moe.experts if m.moe else 0,
            "active_experts": m.moe.active_experts if m.moe else 0,
        }
    else:
        row |= {"distribution": m.distribution, "mean_ms": m.mean_s * 1e3, "cv": m.cv}
    return row


@click.command()
@json_option
def models(as_json: bool) -> None:
    """List the workload models (R&R, LLM, synthetic)."""
    rows = [_model_row(m) for m in load_catalog().models.values()]
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["name", "kind", "description"], [[r["name"], r["kind"], r["display_name"]] for r in rows]
    )


@click.command()
@click.option("--chip", "chip_name", required=True, help="Chip name (see `chips`).")
@click.option("--model", "model_name", required=True, help="Model name (see `models`).")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Items (R&R) or sequences (LLM) per batch; R&R default: the model's max.",
)
@click.option("--dtype", default=None, help="Compute dtype (default: the model's).")
@click.option(
    "--phase",
    type=click.Choice(["prefill", "decode"]),
    default="decode",
    show_default=True,
    help="LLM only.",
)
@click.option(
    "--context",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="LLM only: prompt length (prefill) or current context (decode).",
)
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--pp", type=click.IntRange(min=1), default=1, show_default=True)
@json_option
def estimate(
    chip_name: str,
    model_name: str,
    batch: int | None,
    dtype: str | None,
    phase: str,
    context: int,
    tp: int,
    pp: int,
    as_json: bool,
) -> None:
    """Cost-model estimate for one batch: latency, throughput, bound, power, energy."""
    cat = load_catalog()
    chip = cat.chip(chip_name)
    model = cat.model(model_name)
    if isinstance(model, RRModel):
        out = _estimate_rr(cat, chip, model, batch or model.max_batch, dtype)
    elif isinstance(model, LLMModel):
        out = _estimate_llm(chip, model, batch or 1, dtype, phase, context, tp, pp)
    else:
        raise UserError(
            "synthetic models have no cost model; they are for the engine",
            field="--model",
            value=model_name,
        )
    if as_json:
        echo_json(out)
        return
    echo_table(["field", "value"], [[k, v] for k, v in out.items()])


def _estimate_rr(
    cat: Any, chip: Chip, model: RRModel, batch: int, dtype: str | None
) -> dict[str, Any]:
    host = next((cat.host(p.host) for p in cat.platforms.values() if p.chip == chip.name), None)
    c = rr_batch_cost(chip, model, [batch], dtype=dtype, host=host)
    return {
        "chip": chip.name,
        "model": model.name,
        "kind": "rr",
        "dtype": dtype or model.dtype,
        "batch": batch,
        "accelerators": c.group,
        "latency_s": float(c.latency_s[0]),
        "device_s": float(c.device_s[0]),
        "throughput_per_s": float(c.throughput_per_s[0] / c.group),
        "throughput_unit": "samples/s per accelerator",
        "bound": c.bound[0],
        "sram_hit_fraction": c.sram_hit_fraction,
        "weights_in_sram": c.weights_in_sram,
        "activations_spill": bool(c.activations_spill[0]),
        "utilization": float(c.utilization[0]),
        "power_w": float(c.power_w[0]),
        "energy_per_sample_j": float(c.energy_per_sample_j[0]),
        "host": host.name if host else None,
    }


def _estimate_llm(
    chip: Chip,
    model: LLMModel,
    batch: int,
    dtype: str | None,
    phase: str,
    context: int,
    tp: int,
    pp: int,
) -> dict[str, Any]:
    it = llm_iteration_model(chip, model, tp=tp, pp=pp, dtype=dtype)
    _check_kv_fits(it, chip, batch, context)
    if phase == "prefill":
        args = (batch * context, 0, batch * context)
        pairs: float | None = batch * context * context / 2.0
        tokens = batch * context
    else:
        args, pairs, tokens = (0, batch, batch * context), None, batch
    t = float(it.time_s(*args, attn_pairs=pairs))
    power = float(chip.power_w(1.0))
    tps = tokens / t
    return {
        "chip": chip.name,
        "model": model.name,
        "kind": "llm",
        "dtype": it.dtype,
        "kv_dtype": it.kv_dtype,
        "phase": phase,
        "batch": batch,
        "context": context,
        "tp": tp,
        "pp": pp,
        "latency_s": t,
        "throughput_per_s": tps,
        "throughput_unit": "tokens/s per replica",
        "bound": it.bound(*args),
        # Operator classes of the iteration (attention's two sides overlap: the larger counts).
        "breakdown_ms": {
            k.removesuffix("_s"): round(float(v) * 1e3, 4)
            for k, v in it.breakdown(*args, attn_pairs=pairs).items()
        },
        "kv_capacity_tokens": it.kv_capacity_tokens,
        "power_w": power * it.chips,
        "energy_per_token_j": power * it.chips / tps,
    }


def _check_kv_fits(it: Any, chip: Chip, batch: int, context: int) -> None:
    """Refuse a batch whose KV cache (batch x context tokens, both phases) cannot fit beside
    the weights: the replica's `kv_capacity_tokens`, as the engine's LLM cells use."""
    need, cap = batch * context, it.kv_capacity_tokens
    if need > cap:
        raise UserError(
            f"batch {batch:,} x context {context:,} = {need:,} KV tokens exceed the {cap:,} "
            f"that fit beside the weights on {it.chips} x {chip.name} at {it.kv_dtype}",
            field="--context",
            value=context,
        )


@click.command()
@json_option
def validate(as_json: bool) -> None:
    """Compare the cost model with published results (never tuned to them). Exits 1 when
    any check fails (for CI)."""
    from mtia_cluster.planning.validation import run_all

    results = run_all(load_catalog())
    failed = [r.id for r in results if not r.passed]
    if as_json:
        echo_json([r.as_dict() for r in results])
        _exit_if_failed(failed)
        return
    echo_table(
        ["id", "published", "simulated", "rel_error", "tolerance", "result"],
        [
            [
                r.id,
                f"{r.published:,.4g} {r.unit}",
                f"{r.simulated:,.4g}",
                f"{r.rel_error:+.1%}",
                f"≤ +{r.tolerance:.0%}" if r.bound == "at-most" else f"±{r.tolerance:.0%}",
                "PASS" if r.passed else "FAIL",
            ]
            for r in results
        ],
    )
    for r in results:
        click.echo(f"\n{r.id}: {r.description}\n  source: {r.source}\n  method: {r.method}")
    if not failed:
        click.echo(f"\nall {len(results)} checks passed")
    _exit_if_failed(failed)


def _exit_if_failed(failed: list[str]) -> None:
    """Exit status 1 naming the failed checks (a CI gate), after the report is printed."""
    if failed:
        click.echo(f"validate: {len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)
