"""`python -m mtia_cluster ...`: the same command group as the `mtia-cluster` script (what a
`ray job submit` entrypoint can call without the script on its PATH)."""

from mtia_cluster.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="mtia-cluster")
