"""Analysis of finished runs: streaming tables, run comparison and plots (docs/results.md)."""

from mtia_cluster.results.analysis.core import analyze
from mtia_cluster.results.analysis.groups import DIMENSIONS, parse_by, parse_window

__all__ = ["DIMENSIONS", "analyze", "parse_by", "parse_window"]
