"""Calibrate the operator model against measured operator times (Vidur-format profiles)."""

from mtia_cluster.calibrate.check import CheckReport, check_profile
from mtia_cluster.calibrate.fit import FitResult, fit_profile
from mtia_cluster.calibrate.profiling import Profile, read_profile
from mtia_cluster.calibrate.writer import write_fit

__all__ = [
    "CheckReport",
    "FitResult",
    "Profile",
    "check_profile",
    "fit_profile",
    "read_profile",
    "write_fit",
]
