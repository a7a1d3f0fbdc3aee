"""Ray as container and transport: shard actors, the window coordinator, launch/status/down.

Only this package (and the CLI) imports Ray; the engine never does.
"""
