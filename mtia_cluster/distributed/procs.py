"""Processes and listening sockets of one Ray instance, read from Linux's /proc.

`down` stops exactly the processes of the head that `launch` started: the ones it recorded
(a pid is only trusted together with its start time, so a reused pid is never taken for
ours) and their descendants (Ray's workers and agents are the raylet's children), plus any
process whose command line names the head's own temporary directory. Nothing is matched by
port. The tests use `listening_sockets` to check that a Ray instance listens on 127.0.0.1
only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """A process identity that survives pid reuse: the pid and its start time (clock ticks)."""

    pid: int
    start_ticks: int

    def alive(self) -> bool:
        """True while this very process exists (not zombie, not a later one with its pid)."""
        st = _stat(self.pid)
        return st is not None and st[2] == self.start_ticks and st[0] != "Z"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in ticks) of a pid, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def identify(pid: int) -> Proc | None:
    """The process `pid` is now, or None if it is gone."""
    st = _stat(pid)
    return None if st is None else Proc(pid, st[2])


def cmdline(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def with_cmdline_containing(text: str) -> list[Proc]:
    """Processes whose command line contains `text` (a directory only one instance uses)."""
    out = []
    for pid in _pids():
        if pid != os.getpid() and text in cmdline(pid):
            proc = identify(pid)
            if proc is not None:
                out.append(proc)
    return out


def descendants(roots: list[Proc]) -> list[Proc]:
    """The live roots and every live process below them (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(st[1], []).append(pid)
    seen: dict[int, Proc] = {}
    todo = [r for r in roots if r.alive()]
    while todo:
        proc = todo.pop()
        if proc.pid in seen:
            continue
        seen[proc.pid] = proc
        for kid in children.get(proc.pid, []):
            found = identify(kid)
            if found is not None:
                todo.append(found)
    return list(seen.values())


def own_descendants() -> set[Proc]:
    """Every live process below this one (not itself)."""
    me = identify(os.getpid())
    return set() if me is None else {p for p in descendants([me]) if p != me}


def terminate(procs: list[Proc], grace_s: float = 5.0) -> list[Proc]:
    """SIGTERM the processes, SIGKILL what is left after `grace_s`; wait until they are gone.

    Only processes that are still the recorded ones (pid and start time) are signalled.
    Returns those still alive at the end (normally none)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for proc in procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(p.alive() for p in procs):
            time.sleep(0.1)
    return [p for p in procs if p.alive()]


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(PROC / str(pid) / "fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(PROC / str(pid) / "fd" / fd)
                if target.startswith("socket:["):
                    out.add(int(target[8:-1]))
    return out


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    text = socket.inet_ntop(socket.AF_INET6, words)
    return text.removeprefix("::ffff:") if text.startswith("::ffff:") and "." in text else text


def _listening_table() -> dict[int, tuple[str, str, int]]:
    """inode -> (protocol, address, port) of every listening TCP / bound UDP socket."""
    table = {}
    for name, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        with contextlib.suppress(OSError):
            for line in (PROC / "net" / name).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == state:
                    ip, port = f[1].split(":")
                    table[int(f[9])] = (name, _address(ip), int(port, 16))
    return table


def listening_sockets(procs: list[Proc]) -> list[tuple[int, str, str, int]]:
    """(pid, protocol, address, port) of every socket the processes listen on (IPv4-mapped
    IPv6 addresses shown as IPv4)."""
    table = _listening_table()
    return sorted(
        (p.pid, *table[ino]) for p in procs for ino in _socket_inodes(p.pid) if ino in table
    )
