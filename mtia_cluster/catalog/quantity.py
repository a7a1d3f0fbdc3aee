"""Sourced quantities: every number in the catalog says where it came from.

In YAML a quantity is either a mapping ``{value, status, source, note}`` or, for derived
structure such as counts, a plain number inherited from the entry's ``default_source``.
``status`` is one of ``published`` (primary or a transcription of it), ``derived`` (computed
from published numbers; ``note`` gives the formula) or ``estimated`` (no public number;
``note`` must give the reasoning) or ``calibrated`` (fitted to measurements by ``mtia-cluster
calibrate fit``; ``source`` names the data). ``source`` is a key of the file's ``sources:``
map or a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mtia_cluster.config import Fields

STATUSES = ("published", "derived", "estimated", "calibrated")


@dataclass(frozen=True)
class Provenance:
    """Where one catalog number came from."""

    status: str
    source: str
    note: str = ""


class SourcedReader:
    """Reads quantities from one catalog file and records their provenance by dotted path."""

    def __init__(self, fields: Fields, sources: dict[str, str]) -> None:
        self.root = fields
        self.sources = sources
        self.provenance: dict[str, Provenance] = {}

    def quantity(
        self,
        f: Fields,
        key: str,
        *,
        positive: bool = False,
        default: Any = ...,
        min_value: float | None = 0.0,
        max_value: float | None = None,
    ) -> float:
        """Read quantity `key` from mapping `f`, validating value and provenance."""
        if not f.has(key):
            if default is ...:
                raise f.error(key, "missing required field")
            return float(default) if default is not None else float("nan")
        raw = f.raw(key)
        if not isinstance(raw, dict):
            raise f.error(key, "expected {value, status, source, note}", raw)
        q = f.sub(key)
        value = q.number("value", positive=positive, min_value=min_value, max_value=max_value)
        status = q.str("status", choices=STATUSES)
        source = q.str("source", default="")
        note = q.str("note", default="")
        if status in ("published", "derived", "calibrated") and not source:
            raise q.error("source", f"a {status} number needs a source")
        if status == "estimated" and not note:
            raise q.error("note", "an estimated number needs its reasoning in 'note'")
        if source and not source.startswith("http") and source not in self.sources:
            raise q.error("source", "unknown source key (not in this file's 'sources:')", source)
        self.provenance[f.path(key)] = Provenance(status, self.sources.get(source, source), note)
        return value

    def table(self, f: Fields, key: str, *, positive: bool = True) -> dict[str, float]:
        """A mapping of name -> quantity (e.g. peak TFLOPS per dtype); may be absent."""
        if not f.has(key):
            return {}
        sub = f.sub(key)
        return {str(k): self.quantity(sub, str(k), positive=positive) for k in sub.data}


def read_sources(fields: Fields) -> dict[str, str]:
    """The file's ``sources:`` map of short key -> citation/URL."""
    if not fields.has("sources"):
        return {}
    src = fields.sub("sources")
    return {str(k): src.str(str(k)) for k in src.data}
