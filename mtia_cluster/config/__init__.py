"""Config loading: YAML files, typed models (pydantic, strict) and `--set a.b=c` overrides.

Every error raised here is a :class:`mtia_cluster.errors.UserError` naming file, field, value.
"""

from mtia_cluster.config.loader import load_yaml
from mtia_cluster.config.overrides import apply_overrides, parse_override

__all__ = ["apply_overrides", "load_yaml", "parse_override"]
