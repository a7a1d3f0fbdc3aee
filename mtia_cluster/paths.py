"""Where shipped data (configs/, traces/) lives.

The quick start installs the package in editable mode, so the repository's `configs/` sits
next to the package. `MTIA_CLUSTER_CONFIGS` points elsewhere (a user's own catalog).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def configs_dir() -> Path:
    """The directory holding `catalog/`, `models/`, `scenarios/`, `rollouts/`."""
    override = os.environ.get("MTIA_CLUSTER_CONFIGS")
    return Path(override) if override else _REPO_ROOT / "configs"


def shipped_traces_dir() -> Path:
    """The repository's `traces/` directory (generated samples only, never datasets)."""
    return _REPO_ROOT / "traces"
