"""`mtia-cluster schema scenario|rollout|trace-spec|plan`: the JSON Schema of a config file.

Editors validate YAML against it (e.g. a ``# yaml-language-server: $schema=…`` comment); it is
generated from the same typed models the loaders validate with (``config/``; the plan
file's: ``planning/plan_file.py``).
"""

from __future__ import annotations

import click
from pydantic import BaseModel

from mtia_cluster.cli._common import echo_json

DOCUMENTS = ("scenario", "rollout", "trace-spec", "plan")


@click.command()
@click.argument("document", type=click.Choice(DOCUMENTS))
def schema(document: str) -> None:
    """Print the JSON Schema of a scenario, rollout plan, trace spec or plan file."""
    from mtia_cluster.config.models import ScenarioFile
    from mtia_cluster.config.rollout_plan import RolloutPlanFile
    from mtia_cluster.config.schema import json_schema
    from mtia_cluster.config.trace_spec import TraceSpecFile
    from mtia_cluster.planning.plan_file import PlanFile

    model: dict[str, type[BaseModel]] = {
        "scenario": ScenarioFile,
        "rollout": RolloutPlanFile,
        "trace-spec": TraceSpecFile,
        "plan": PlanFile,
    }
    echo_json(json_schema(model[document]))
