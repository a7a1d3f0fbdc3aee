"""Workload models as data: R&R (DLRM-style), LLM (dense and MoE) and synthetic."""

from __future__ import annotations

from pathlib import Path

from mtia_cluster.catalog.models import LLMModelFile, RRModelFile, SyntheticModelFile
from mtia_cluster.workloads.llm import LLMModel, MoE, parse_llm
from mtia_cluster.workloads.rr import RRModel, parse_rr
from mtia_cluster.workloads.synthetic import SyntheticModel, parse_synthetic

Model = RRModel | LLMModel | SyntheticModel
KINDS = ("rr", "llm", "synthetic")


def parse_model(spec: RRModelFile | LLMModelFile | SyntheticModelFile, path: Path) -> Model:
    """Build the model of the validated file's kind (the typed union chose the class)."""
    if isinstance(spec, RRModelFile):
        return parse_rr(spec, path)
    if isinstance(spec, LLMModelFile):
        return parse_llm(spec, path)
    return parse_synthetic(spec, path)


__all__ = ["KINDS", "LLMModel", "MoE", "Model", "RRModel", "SyntheticModel", "parse_model"]
