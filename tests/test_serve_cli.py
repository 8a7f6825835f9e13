"""``python -m imageedit_r1.serve`` as a user runs it: a config file, a keys file, then SIGTERM.

The command starts its own local Ray instance (fake GPUs through an override), deploys the
service, answers the ``openai`` SDK, and on SIGTERM exits 0 leaving no process of its session
and its port free. The test kills the whole session itself if anything goes wrong.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow  # a Ray instance of its own: about a minute on two cores

from imageedit_r1.config import to_yaml  # noqa: E402
from imageedit_r1.testing import sleepy_editor  # noqa: E402
from tests.app_fixtures import free_port  # noqa: E402
from tests.serve_fixtures import KEY, fake_agents, png_bytes, sleepy_pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def session_processes(sid: int) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == sid:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def test_the_command_serves_with_keys_and_leaves_nothing_behind_on_sigterm(tmp_path):
    port = free_port()
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# the team\n{KEY}\n")
    log = tmp_path / "serve.log"
    with fake_agents() as agents:
        config = tmp_path / "serve.yaml"
        config.write_text(to_yaml({"pipelines": {"sleepy": sleepy_pipeline(f"{agents.url}/v1")},
                                   "editor": {"replicas": 1}}))
        env = {**os.environ, "PYTHONPATH": str(ROOT), sleepy_editor.SECONDS_VARIABLE: "0.1"}
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "imageedit_r1.serve", "--config", str(config), "--port", str(port),
                 "--api-keys-file", str(keys), "ray.num_cpus=2", "ray.num_gpus=1"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while "Ctrl-C stops it." not in log.read_text() and server.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
            assert server.poll() is None, log.read_text()[-3000:]
            text = log.read_text()
            assert f"at http://127.0.0.1:{port}/v1" in text and "Prometheus metrics" in text
            assert KEY not in text  # the key itself is never printed
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
            edited = client.images.edit(model="sleepy", image=("a.png", png_bytes(), "image/png"), prompt="Make it red")
            assert len(edited.data) == 1
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-another-key-0123456789",
                              max_retries=0).models.list()
            server.send_signal(signal.SIGTERM)
            assert server.wait(120) == 0, log.read_text()[-3000:]
            deadline = time.monotonic() + 30
            while session_processes(server.pid) and time.monotonic() < deadline:
                time.sleep(1)
            assert session_processes(server.pid) == []  # Ray's GCS, raylet, proxy and replicas are gone
            import socket

            with socket.socket() as probe:  # nothing listens on the port: a server can take it again
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))
                probe.listen()
        finally:
            for pid in session_processes(server.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
