"""Sourced quantities: every number in the catalog says where it came from.

In YAML a quantity is a mapping ``{value, status, source, note}`` (:class:`~mtia_cluster.
catalog.models.Quantity`, whose shape the loader has already validated). ``status`` is one of
``published`` (primary or a transcription of it), ``derived`` (computed from published
numbers; ``note`` gives the formula) or ``estimated`` (no public number; ``note`` must give
the reasoning) or ``calibrated`` (fitted to measurements by ``mtia-cluster calibrate fit``;
``source`` names the data). ``source`` is a key of the file's ``sources:`` map or a URL.

The typed model checks keys and types; :class:`SourcedReader` checks what a field type cannot
(the range a builder needs, the provenance rules) and names file and dotted field in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtia_cluster.catalog.models import Quantity
from mtia_cluster.errors import UserError

STATUSES = ("published", "derived", "estimated", "calibrated")
_MISSING = object()


@dataclass(frozen=True)
class Provenance:
    """Where one catalog number came from."""

    status: str
    source: str
    note: str = ""


def field_error(file: str | Path, field: str, message: str, value: Any = _MISSING) -> UserError:
    """A one-line UserError naming `file` and dotted `field` (and `value` when given)."""
    if value is _MISSING:
        return UserError(message, file=file, field=field)
    return UserError(message, file=file, field=field, value=value, has_value=True)


class SourcedReader:
    """Reads validated quantities of one catalog file and records their provenance by path."""

    def __init__(self, file: str | Path, sources: dict[str, str]) -> None:
        self.file = file
        self.sources = sources
        self.provenance: dict[str, Provenance] = {}

    def error(self, field: str, message: str, value: Any = _MISSING) -> UserError:
        """A UserError for dotted `field` of this file."""
        return field_error(self.file, field, message, value)

    def quantity(
        self,
        q: Quantity | None,
        path: str,
        *,
        positive: bool = False,
        default: Any = ...,
        min_value: float | None = 0.0,
        max_value: float | None = None,
    ) -> float:
        """The value of quantity `q` at dotted `path`, range and provenance checked."""
        if q is None:
            if default is ...:
                raise self.error(path, "missing required field")
            return float(default) if default is not None else float("nan")
        self._check_range(q.value, f"{path}.value", positive, min_value, max_value)
        if q.status in ("published", "derived", "calibrated") and not q.source:
            raise self.error(f"{path}.source", f"a {q.status} number needs a source")
        if q.status == "estimated" and not q.note:
            raise self.error(f"{path}.note", "an estimated number needs its reasoning in 'note'")
        if q.source and not q.source.startswith("http") and q.source not in self.sources:
            raise self.error(
                f"{path}.source", "unknown source key (not in this file's 'sources:')", q.source
            )
        self.provenance[path] = Provenance(q.status, self.sources.get(q.source, q.source), q.note)
        return float(q.value)

    def _check_range(
        self,
        value: float,
        path: str,
        positive: bool,
        min_value: float | None,
        max_value: float | None,
    ) -> None:
        x = float(value)
        if positive and x <= 0:
            raise self.error(path, "must be > 0", value)
        if min_value is not None and x < min_value:
            raise self.error(path, f"must be >= {min_value:g}", value)
        if max_value is not None and x > max_value:
            raise self.error(path, f"must be <= {max_value:g}", value)

    def table(
        self, quantities: Mapping[Any, Quantity], path: str, *, positive: bool = True
    ) -> dict[str, float]:
        """A mapping of name -> quantity (e.g. peak TFLOPS per dtype); may be empty."""
        return {
            str(k): self.quantity(q, f"{path}.{k}", positive=positive)
            for k, q in quantities.items()
        }
