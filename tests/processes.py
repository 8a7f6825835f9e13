"""Processes and servers a test starts: their signals set up by the test, all of them stopped at its end.

A test run started in the background (``nohup make test &`` from a script) ignores SIGINT, and a
child inherits that: a Ctrl-C test would deliver a signal its command never sees. ``own_signals``
gives each child the default handling of the signals tests send, whatever pytest inherited.
``Processes`` (the ``processes`` fixture) starts children that way and ends every one still
running when the test ends, pass or fail. ``listening_sockets`` lets the session check, at its
end, that no server a test opened is still listening.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The signals tests deliver to their children (Ctrl-C, a polite stop).
SENT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def own_signals() -> None:
    """``preexec_fn``: SIGINT and SIGTERM at their defaults and unblocked in the child, before exec.

    Python installs its KeyboardInterrupt handler only when it starts with SIGINT at the default;
    an ignored SIGINT stays ignored across exec.
    """
    for sent in SENT_SIGNALS:
        signal.signal(sent, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SENT_SIGNALS)


class Processes:
    """Children of one test: started with ``own_signals``, ended when the test ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: Sequence, **options) -> subprocess.Popen:
        if "preexec_fn" in options:
            raise ValueError("Processes.start sets preexec_fn itself (own_signals)")
        proc = subprocess.Popen([str(a) for a in args], preexec_fn=own_signals, **options)
        self.started.append(proc)
        return proc

    def stop_all(self, grace: float = 5.0) -> list[str]:
        """End every child still running (SIGTERM, then SIGKILL after ``grace`` seconds); what was ended."""
        ended = []
        for proc in self.started:
            if proc.poll() is None:
                ended.append(" ".join(map(str, proc.args))[:200])
                _end(proc, grace)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        return ended


def _end(proc: subprocess.Popen, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


# ----------------------------------------------------------------------------- listening sockets


@dataclass(frozen=True)
class Listener:
    inode: str
    address: str  # host:port as the kernel lists it
    pid: int
    command: str


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name field may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _address(hexadecimal: str) -> str:
    """The kernel's hex address (32-bit words in host byte order) as the usual text form."""
    raw = bytes.fromhex(hexadecimal)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _listening_inodes() -> dict[str, str]:
    """inode -> local address of every TCP socket in LISTEN state (IPv4 and IPv6)."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # 0A: LISTEN
                host, port = fields[1].rsplit(":", 1)
                inodes[fields[9]] = f"{_address(host)}:{int(port, 16)}"
    return inodes


def listening_sockets(root: int | None = None) -> set[Listener]:
    """Listening TCP sockets held by ``root`` (default: this process) or a process below it.

    Empty where /proc is not there (not Linux): the check is then skipped, never failed.
    """
    if not Path("/proc/net/tcp").exists():
        return set()
    inodes = _listening_inodes()
    found = set()
    for pid in _descendants(root or os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[len("socket:["):-1]
                if inode in inodes:
                    found.add(Listener(inode, inodes[inode], pid, command[:200]))
    return found


def leaked_listeners(before: set[Listener], settle: float = 5.0) -> set[Listener]:
    """Sockets listening now that were not ``before``, after waiting up to ``settle`` seconds for
    servers that are shutting down to close them."""
    deadline = time.monotonic() + settle
    while True:
        leaked = {s for s in listening_sockets() if s.inode not in {b.inode for b in before}}
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(0.2)


def end_listeners(listeners: set[Listener]) -> None:
    """SIGTERM, then SIGKILL, the child processes holding ``listeners`` (never this process)."""
    pids = {s.pid for s in listeners if s.pid != os.getpid()}
    for sent in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sent)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
