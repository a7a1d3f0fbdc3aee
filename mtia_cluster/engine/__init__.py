"""Ray-free simulation engine: cells (exact per host/replica), shards, windows, routers.

See docs/engine.md. The cell protocol and the struct-of-arrays types are in
:mod:`mtia_cluster.engine.cell`. This package never imports ray or click.
"""
