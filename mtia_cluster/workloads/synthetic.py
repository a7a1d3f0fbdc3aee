"""Synthetic service-time models, for checking the engine against queueing theory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mtia_cluster.catalog.models import SyntheticModelFile
from mtia_cluster.catalog.quantity import field_error

DISTRIBUTIONS = ("deterministic", "exponential", "lognormal")


@dataclass(frozen=True)
class SyntheticModel:
    """Service time of one request (batch size 1): a given mean and coefficient of variation."""

    name: str
    display_name: str
    file: str
    distribution: str
    mean_s: float
    cv: float
    kind: Literal["synthetic"] = "synthetic"


def parse_synthetic(spec: SyntheticModelFile, path: Path) -> SyntheticModel:
    """Build a synthetic model from its validated file; `cv` must fit the distribution."""
    dist = spec.distribution
    cv = {"deterministic": 0.0, "exponential": 1.0}.get(dist)
    if spec.cv is None and cv is None:
        raise field_error(path, "cv", "missing required field")
    cv_value = float(spec.cv) if spec.cv is not None else float(cv or 0.0)
    if cv is not None and cv_value != cv:
        raise field_error(path, "cv", f"a {dist} service time has cv {cv:g}", cv_value)
    if dist == "lognormal" and cv_value <= 0:
        raise field_error(path, "cv", "must be > 0 for a lognormal", cv_value)
    return SyntheticModel(
        name=spec.name,
        display_name=spec.display_name,
        file=str(path),
        distribution=dist,
        mean_s=float(spec.mean_ms) * 1e-3,
        cv=cv_value,
    )
