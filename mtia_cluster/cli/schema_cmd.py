"""`mtia-cluster schema scenario|rollout|trace-spec`: the JSON Schema of a config file.

Editors validate YAML against it (e.g. a ``# yaml-language-server: $schema=…`` comment); it is
generated from the same typed models the loaders validate with (``config/``).
"""

from __future__ import annotations

import click
from pydantic import BaseModel

from mtia_cluster.cli._common import echo_json

DOCUMENTS = ("scenario", "rollout", "trace-spec")


@click.command()
@click.argument("document", type=click.Choice(DOCUMENTS))
def schema(document: str) -> None:
    """Print the JSON Schema of a scenario, rollout plan or trace spec file."""
    from mtia_cluster.config.models import ScenarioFile
    from mtia_cluster.config.rollout_plan import RolloutPlanFile
    from mtia_cluster.config.schema import json_schema
    from mtia_cluster.config.trace_spec import TraceSpecFile

    model: dict[str, type[BaseModel]] = {
        "scenario": ScenarioFile,
        "rollout": RolloutPlanFile,
        "trace-spec": TraceSpecFile,
    }
    echo_json(json_schema(model[document]))
