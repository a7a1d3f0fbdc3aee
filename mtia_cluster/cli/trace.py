"""`mtia-cluster trace generate | import | inspect`: thin commands over mtia_cluster.traces."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from mtia_cluster.cli._common import (
    claim_output,
    echo_json,
    echo_table,
    json_option,
    overwrite_option,
    set_option,
)
from mtia_cluster.cli.progress import progress
from mtia_cluster.errors import UserError


@click.group()
def trace() -> None:
    """Generate, import and inspect request traces (Parquet)."""


@trace.command()
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML mix spec (see configs/traces/); change it with --set, not the options below.",
)
@set_option
@click.option("--service", default="rr-ranking", show_default=True, help="Service name.")
@click.option("--kind", type=click.Choice(["rr", "llm"]), default="rr", show_default=True)
@click.option(
    "--rate",
    "rate_per_s",
    type=float,
    default=100.0,
    show_default=True,
    help="Mean requests per second.",
)
@click.option(
    "--duration", "duration_s", type=float, help="Seconds of trace (60 unless --requests)."
)
@click.option("--requests", type=int, help="Number of requests (instead of --duration).")
@click.option(
    "--arrivals",
    "process",
    default="poisson",
    show_default=True,
    type=click.Choice(["poisson", "gamma", "weibull", "onoff", "offline"]),
)
@click.option(
    "--cv", type=float, default=2.0, show_default=True, help="Inter-arrival CV for gamma/weibull."
)
@click.option(
    "--items",
    "items_dist",
    default="mlperf-dlrm-v2",
    show_default=True,
    type=click.Choice(["mlperf-dlrm-v2", "lognormal", "pareto"]),
)
@click.option("--items-mean", type=float, default=270.0, show_default=True)
@click.option("--items-p99", type=float, default=700.0, show_default=True)
@click.option(
    "--lengths",
    default="azure-2023-conv",
    show_default=True,
    type=click.Choice(["azure-2023-conv", "azure-2023-code"]),
)
@click.option("--region", "regions", multiple=True, help="Region name (repeatable).")
@click.option("--peak-to-trough", type=float, help="Apply a diurnal profile with this ratio.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@overwrite_option
def generate(
    spec_file: Path | None,
    overrides: tuple[str, ...],
    output: Path,
    overwrite: bool,
    seed: int,
    **opts: Any,
) -> None:
    """Generate a synthetic trace (a single service from options, or a --spec mix)."""
    from mtia_cluster.config import apply_overrides, load_yaml
    from mtia_cluster.output import TRACE_FILE
    from mtia_cluster.traces.generators import generate_table
    from mtia_cluster.traces.io import write_trace

    claim_output(output, TRACE_FILE, overwrite)  # refused before any work
    if spec_file:
        ctx = click.get_current_context()
        given = [
            param.opts[0]
            for param in ctx.command.params
            if param.name in opts
            and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise UserError(
                "the single-service options cannot be combined with --spec (use --set)",
                field=given[0],
            )
    spec = load_yaml(spec_file) if spec_file else _spec_from_options(**opts)
    from mtia_cluster.config.schema import validate
    from mtia_cluster.config.trace_spec import TraceSpecFile

    spec = apply_overrides(spec, list(overrides), TraceSpecFile)
    try:
        validate(TraceSpecFile, spec, spec_file)  # before the progress bar: errors first
        with progress("generating", "streams") as bar:
            table, metadata = generate_table(spec, seed, spec_file, progress=bar.update)
            bar.note = "writing"
            write_trace(table, output, metadata, overwrite=overwrite)
    except UserError as exc:
        raise exc if spec_file or overrides else _as_option(exc) from None
    click.echo(f"wrote {output}: {table.num_rows:,} requests", err=True)


# the mix-spec field each single-service option becomes (_spec_from_options)
_OPTION_OF = {
    "services[0].name": "--service",
    "services[0].rate_per_s": "--rate",
    "duration_s": "--duration",
    "requests": "--requests",
    "services[0].arrivals.cv": "--cv",
    "services[0].diurnal.peak_to_trough": "--peak-to-trough",
    "mean/p99": "--items-mean/--items-p99",
}


def _as_option(exc: Any) -> Any:
    """A refusal of the spec built from the options, naming the option instead of the
    spec's field (which the user never wrote); other refusals unchanged."""
    option = _OPTION_OF.get(exc.field or "")
    if option is None or exc.file is not None:
        return exc
    shown = str(exc).endswith(f"(got {exc.value!r})")
    return type(exc)(exc.reason, field=option, value=exc.value, has_value=shown)


def _spec_from_options(
    *,
    service: str,
    kind: str,
    rate_per_s: float,
    duration_s: float | None,
    requests: int | None,
    process: str,
    cv: float,
    items_dist: str,
    items_mean: float,
    items_p99: float,
    lengths: str,
    regions: tuple[str, ...],
    peak_to_trough: float | None,
) -> dict[str, Any]:
    """The mix spec equivalent to the single-service command-line options."""
    svc: dict[str, Any] = {
        "name": service,
        "kind": kind,
        "rate_per_s": rate_per_s,
        "arrivals": {"process": process},
    }
    if process in ("gamma", "weibull"):
        svc["arrivals"]["cv"] = cv
    if kind == "rr":
        svc["items"] = {"dist": items_dist}
        if items_dist != "mlperf-dlrm-v2":
            svc["items"].update(mean=items_mean, p99=items_p99)
    else:
        svc["lengths"] = {"dist": lengths}
    if peak_to_trough is not None:
        svc["diurnal"] = {"peak_to_trough": peak_to_trough}
    spec: dict[str, Any] = {"services": [svc]}
    if requests is not None:
        spec["requests"] = requests
    if duration_s is not None:
        spec["duration_s"] = duration_s
    if requests is None and duration_s is None:
        spec["duration_s"] = 60.0
    if regions:
        spec["regions"] = {r: {"weight": 1.0} for r in regions}
    return spec


@trace.command("import")
@click.option(
    "--format",
    "fmt",
    required=True,
    metavar="FORMAT",
    help="azure-llm | burstgpt | mooncake | splitwise",
)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--service", default=None, help="Service name (default: per format).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@overwrite_option
def import_(fmt: str, source: Path, service: str | None, output: Path, overwrite: bool) -> None:
    """Convert a public trace (CSV/JSONL) into the trace format."""
    from mtia_cluster.output import TRACE_FILE
    from mtia_cluster.traces.importers import import_trace

    claim_output(output, TRACE_FILE, overwrite)  # refused before any work
    size = source.stat().st_size if source.is_file() else 0
    with progress("importing", "B") as bar:
        table = import_trace(
            fmt,
            source,
            output,
            service=service,
            progress=lambda n: bar.update(bar.done + n, size),
            overwrite=overwrite,
        )
    click.echo(f"wrote {output}: {table.num_rows:,} requests", err=True)


@trace.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--scale-rate", type=float, help="Multiply the request rate by this factor.")
@click.option("--start-s", type=float, help="Keep arrivals at or after this time (s).")
@click.option("--end-s", type=float, help="Keep arrivals before this time (s).")
@click.option("--sample", "fraction", type=float, help="Keep this fraction of requests.")
@click.option("--remap", multiple=True, metavar="OLD=NEW", help="Rename a service.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@overwrite_option
def transform(
    inputs: tuple[Path, ...],
    scale_rate: float | None,
    start_s: float | None,
    end_s: float | None,
    fraction: float | None,
    remap: tuple[str, ...],
    seed: int,
    output: Path,
    overwrite: bool,
) -> None:
    """Merge INPUTS (by arrival), then slice, sample, rescale and remap; write one trace."""
    from mtia_cluster.output import TRACE_FILE
    from mtia_cluster.traces import transforms as tf
    from mtia_cluster.traces.io import read_metadata, read_trace, write_trace

    claim_output(output, TRACE_FILE, overwrite)  # refused before any work
    window = _transform_window(start_s, end_s)  # options, too, before any input is read
    _check_factors(scale_rate, fraction)
    mapping = {}
    for item in remap:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise UserError("expected OLD=NEW", field="--remap", value=item)
        mapping[old] = new
    tables = [read_trace(p) for p in inputs]
    table = tables[0] if len(tables) == 1 else tf.merge(tables)
    if window is not None:
        table = tf.time_slice(table, *window)
    if fraction is not None:
        table = tf.sample_fraction(table, fraction, seed)
    if scale_rate is not None:
        table = tf.scale_rate(table, scale_rate)
    if mapping:
        table = tf.remap_services(table, mapping)
    sources = [read_metadata(p) for p in inputs]
    metadata = {
        "source": " + ".join(str(m.get("source")) for m in sources),
        "licence": " + ".join(sorted({str(m.get("licence")) for m in sources})),
        "generator": "mtia-cluster trace transform",
        "parameters": {
            "inputs": [str(p) for p in inputs],
            "scale_rate": scale_rate,
            "start_s": start_s,
            "end_s": end_s,
            "sample": fraction,
            "seed": seed,
            "remap": mapping,
            "input_parameters": [m.get("parameters") for m in sources],
        },
    }
    write_trace(table, output, metadata, overwrite=overwrite)
    click.echo(f"wrote {output}: {table.num_rows:,} requests", err=True)


_END_NS = 2**62  # an open end: after any int64 arrival a trace can hold


def _transform_window(start_s: float | None, end_s: float | None) -> tuple[int, int] | None:
    """`--start-s`/`--end-s` as a [start, end) slice in ns, or None; a NaN, infinite,
    negative or empty window is refused naming its option."""
    if start_s is None and end_s is None:
        return None
    for option, value in (("--start-s", start_s), ("--end-s", end_s)):
        if value is not None and not 0 <= value * 1e9 < _END_NS:  # NaN fails too
            raise UserError(
                f"must be a time from 0 to {_END_NS / 1e9:,.0f} s", field=option, value=value
            )
    start_ns = round((start_s or 0.0) * 1e9)
    end_ns = _END_NS if end_s is None else round(end_s * 1e9)
    if end_ns <= start_ns:
        raise UserError("must be after --start-s", field="--end-s", value=end_s)
    return start_ns, end_ns


def _check_factors(scale_rate: float | None, fraction: float | None) -> None:
    if scale_rate is not None and not 0 < scale_rate < math.inf:
        raise UserError("must be a finite number > 0", field="--scale-rate", value=scale_rate)
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError("must be in (0, 1]", field="--sample", value=fraction)


@trace.command()
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def inspect(path: Path, as_json: bool) -> None:
    """Summarise a trace: rows, span, rates, burstiness, mixes, size quantiles."""
    from mtia_cluster.traces.inspect import inspect_trace
    from mtia_cluster.traces.io import read_metadata

    total = int(read_metadata(path)["rows"])
    with progress("reading", "rows", as_json=as_json) as bar:
        summary = inspect_trace(path, progress=lambda n: bar.update(bar.done + n, total))
    if as_json:
        echo_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    rpm = s["rate_per_min"]
    echo_table(
        ["metric", "value"],
        [
            ["rows", s["rows"]],
            ["span_s", s["span_s"]],
            ["rate_per_s", s["rate_per_s"]],
            ["rate_per_min mean/min/max", f"{rpm['mean']:.1f} / {rpm['min']} / {rpm['max']}"],
            ["iat_cv", s["iat_cv"]],
            ["peak_to_mean (per minute)", s["peak_to_mean"]],
        ]
        + ([["failed", s["failed"]]] if "failed" in s else []),
    )
    for key in ("services", "regions"):
        if s.get(key):
            click.echo("")
            echo_table(
                [key[:-1], "rows", "share", "rate_per_s"],
                [[k, v["rows"], v["share"], v["rate_per_s"]] for k, v in s[key].items()],
            )
    if s["sizes"]:
        click.echo("")
        echo_table(
            ["column", "mean", "min", "p50", "p90", "p99", "max"],
            [
                [c, q["mean"], q["min"], q["p50"], q["p90"], q["p99"], q["max"]]
                for c, q in s["sizes"].items()
            ],
        )
