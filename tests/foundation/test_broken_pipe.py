"""A reader that goes away (`mtia-cluster ... | head`) stops the command quietly with
128 + SIGPIPE, as a shell tool killed by SIGPIPE does, instead of an error line and exit 1."""

from __future__ import annotations

import subprocess
import sys


def test_closed_stdout_is_quiet_exit_141() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtia_cluster", "schema", "scenario"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""
