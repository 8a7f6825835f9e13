"""The test run's own hygiene: children get Ctrl-C even when the run ignores it, and no server outlives it.

``nohup make test &`` from a script ignores SIGINT in the whole job; children inherit that.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, "-m", "imageedit_r1.testing", "serve", "--port", "0"]


@pytest.fixture
def sigint_ignored():
    """This process ignores SIGINT, as a background job started from a script does."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_child_started_by_a_test_stops_on_ctrl_c_even_when_the_run_ignores_it(sigint_ignored, processes):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    # What an inherited SIG_IGN does to a plain child: Ctrl-C never reaches it.
    plain = subprocess.Popen(SERVE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert plain.stdout.readline().startswith("fake openai server")
        plain.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            plain.wait(timeout=2)
    finally:
        plain.kill()
        plain.communicate()

    child = processes.start(SERVE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert child.stdout.readline().startswith("fake openai server")
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 0 and "stopped after 0 request(s)" in err


LEAKY_TESTS = '''
import socket, subprocess, sys

LISTEN = "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {{port}})); s.listen(); print('up', flush=True); time.sleep(600)"


def _start(start, port):
    proc = start([sys.executable, "-c", LISTEN.format(port=port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_fails_with_its_server_running(processes):
    _start(processes.start, {kept})
    assert False, "the fixture ends the server anyway"


def test_forgets_its_server():
    _start(subprocess.Popen, {leaked})
'''


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_left_listening_is_named_ended_and_fails_the_run(tmp_path):
    kept, leaked = _free_port(), _free_port()
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY_TESTS).format(kept=kept, leaked=leaked))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert "1 failed, 1 passed" in done.stdout
    report = done.stdout[done.stdout.index("a test left a server listening (ended now):"):]
    assert f"127.0.0.1:{leaked} held by pid" in report  # the forgotten one, named with its command
    assert f":{kept} " not in report  # the fixture ended the other one when its test failed
    import socket

    for port in (kept, leaked):  # both are gone: the ports are free again
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
