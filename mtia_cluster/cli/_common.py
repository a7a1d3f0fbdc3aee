"""Helpers shared by CLI commands: JSON output, --set options, the -o check."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mtia_cluster import fmt

if TYPE_CHECKING:
    from mtia_cluster.output import Claim, OutputKind

overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier output of mtia-cluster at -o (anything else there is refused).",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="A.B=C",
    help="Override a config field (repeatable), e.g. --set router.policy=p2c.",
)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(_clean(data), indent=2, sort_keys=False))


def echo_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo(
            "  ".join(
                c.rjust(w) if n and _numeric(c) else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


def _fmt(v: Any) -> str:
    return fmt.number(v)


def _numeric(s: str) -> bool:
    return bool(s) and (s[0].isdigit() or (s[0] in "-+" and len(s) > 1 and s[1].isdigit()))


def claim_output(path: str | Path, kind: OutputKind, overwrite: bool) -> Claim:
    """Check -o before any work (mtia_cluster.output decides for every command) and report
    the temporaries of interrupted earlier runs that it removed or left alone."""
    from mtia_cluster import output

    claim = output.claim_output(path, kind, overwrite=overwrite)
    for note in claim.notes:
        click.echo(f"note: {note}", err=True)
    return claim
