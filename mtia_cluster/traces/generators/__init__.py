"""Seeded, vectorized trace generators: arrivals, diurnal shapes, sizes, mixes, the demo."""

from mtia_cluster.traces.generators.demo import DEMO_SPEC, generate_demo_trace
from mtia_cluster.traces.generators.diurnal import DiurnalProfile
from mtia_cluster.traces.generators.mix import generate_table, stream_rng

__all__ = ["DEMO_SPEC", "DiurnalProfile", "generate_demo_trace", "generate_table", "stream_rng"]
