"""`calibrate fit|check`: fit the operator model to measured profiles, and measure its error."""

from __future__ import annotations

from pathlib import Path

import click

from mtia_cluster.catalog import load_catalog
from mtia_cluster.cli._common import echo_json, echo_table, json_option
from mtia_cluster.errors import UserError


def _models(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


_data = click.argument("data_dir", type=click.Path(file_okay=False))
_chip = click.option("--chip", required=True, help="catalog chip the measurements were made on")
_models_opt = click.option(
    "--models", default=None, help="comma-separated model folders to use (default: all)"
)


@click.group()
def calibrate() -> None:
    """Fit the LLM operator model to Vidur-format profiles, or check it against them."""


@calibrate.command()
@_data
@_chip
@_models_opt
@click.option(
    "--part",
    type=click.Choice(["all", "ops", "collectives", "attention"]),
    default="all",
    help="what to fit: operators (family-wide), collectives (the chip's interconnect), "
    "the attention kernel (from attention.csv), or all",
)
def fit(data_dir: str, chip: str, models: str | None, part: str) -> None:
    """Fit CHIP's family parameters to DATA_DIR and write them to the catalog."""
    from mtia_cluster.calibrate import fit_profile, read_profile, write_fit
    from mtia_cluster.catalog.op_model import op_model_path

    c = load_catalog().chip(chip)
    prof = read_profile(data_dir, chip, _models(models))
    if models:  # collectives come from the whole directory, operators from the subset
        prof.collectives = read_profile(data_dir, chip).collectives
    result = fit_profile(prof, c, part)
    if not result.rows:
        raise UserError("nothing to fit in the data for this part", field="--part", value=part)
    path = op_model_path(c.op_params.family, Path(c.file))
    write_fit(path, result, prof, chip, data_dir, c.interconnect)
    echo_table(
        ["group", "rows", "in-sample MAPE"],
        [[k, f"{result.rows[k]:,}", f"{v:.1%}"] for k, v in result.mape.items()],
    )
    click.echo(f"wrote {path} (family {c.op_params.family})")


@calibrate.command()
@_data
@_chip
@_models_opt
@json_option
def check(data_dir: str, chip: str, models: str | None, as_json: bool) -> None:
    """Per-op and overall error of the model against every row of DATA_DIR for CHIP."""
    from mtia_cluster.calibrate import check_profile, read_profile

    c = load_catalog().chip(chip)
    report = check_profile(read_profile(data_dir, chip, _models(models)), c)
    if as_json:
        echo_json(report.as_dict())
        return
    echo_table(
        ["op", "rows", "MAPE"],
        [[k, f"{report.rows_per_op[k]:,}", f"{v:.1%}"] for k, v in report.per_op.items()],
    )
    click.echo(
        f"overall: {report.rows:,} rows, MAPE {report.mape:.1%} "
        f"(chip {report.chip}, family {report.family}; skipped {report.skipped_rows} rows)"
    )
    for m, v in report.per_model.items():
        click.echo(f"  {m}: {v:.1%}")
