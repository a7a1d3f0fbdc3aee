"""Load one YAML document as a mapping, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtia_cluster.config.yaml_limits import DuplicateKeyError, YamlLimitError, load_limited
from mtia_cluster.errors import UserError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read `path` as a YAML mapping; a missing file or bad YAML is a UserError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", file=p) from None
    except IsADirectoryError:
        raise UserError("is a directory, expected a YAML file", file=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", file=p) from None
    try:
        data = load_limited(text)  # safe, with depth/alias-expansion limits
    except DuplicateKeyError as exc:
        raise UserError(str(exc.problem), file=p, field=exc.path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "" if isinstance(exc, YamlLimitError) else "invalid YAML: "
        raise UserError(f"{kind}{problem}", file=p, field=where) from None
    if not isinstance(data, dict):
        raise UserError("expected a mapping at the top level", file=p, value=type(data).__name__)
    return data
