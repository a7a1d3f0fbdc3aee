"""Workload models as data: R&R (DLRM-style), LLM (dense and MoE) and synthetic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mtia_cluster.config import Fields
from mtia_cluster.workloads.llm import LLMModel, MoE, parse_llm
from mtia_cluster.workloads.rr import RRModel, parse_rr
from mtia_cluster.workloads.synthetic import SyntheticModel, parse_synthetic

Model = RRModel | LLMModel | SyntheticModel
KINDS: dict[str, Callable[[dict, Path], Model]] = {
    "rr": parse_rr,
    "llm": parse_llm,
    "synthetic": parse_synthetic,
}


def parse_model(data: dict, path: Path) -> Model:
    """Dispatch on `kind` to the right parser."""
    kind = Fields(data, path).str("kind", choices=KINDS)
    parser: Callable[[dict, Path], Model] = KINDS[kind]
    return parser(data, path)


__all__ = ["KINDS", "LLMModel", "MoE", "Model", "RRModel", "SyntheticModel", "parse_model"]
