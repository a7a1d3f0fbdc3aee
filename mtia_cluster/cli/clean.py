"""`mtia-cluster clean [PATH ...]`: remove temporaries that interrupted runs left behind."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def clean(paths: tuple[Path, ...], dry_run: bool) -> None:
    """Remove the temporaries (.NAME.tmp-*) of interrupted runs beside each output PATH, and
    of every output inside a directory PATH (default: the current directory). Only
    temporaries the tool recognises and no running process holds are removed."""
    from mtia_cluster.output import clean as clean_path

    lines = [line for p in paths or (Path("."),) for line in clean_path(p, dry_run=dry_run)]
    for line in lines:
        click.echo(line)
    if not lines:
        click.echo("nothing to clean", err=True)
