"""mtia-cluster: simulate AI-inference fleets built from MTIA accelerators and GPUs."""

__version__ = "0.1.0"
