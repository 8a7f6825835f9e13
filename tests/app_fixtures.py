"""The app served for tests: with scripted agents (no models), in this process or in a child of
its own (``python -m tests.app_fixtures``, whose memory a test can read), with private folders."""

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (220, 30, 30), (30, 40, 220)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_tone(size):
    """Left half red, right half blue: easy to find in a screenshot."""
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (size[0] // 2, 0, size[0], size[1]))
    return image


@contextlib.contextmanager
def private_upload_folder(folder):
    """Gradio's upload folder set to ``folder`` while the block runs: the app sweeps its upload
    folder, which must never be the machine's shared one."""
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield Path(folder)
    finally:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def scripted_service(output_dir, editor, auth=None, limits=None, store=None, editor_name=None):
    from gradio.utils import get_upload_folder

    from imageedit_r1.app.service import AppSettings, EditService
    from imageedit_r1.app.uploads import UploadLimits
    from imageedit_r1.pipeline import ImageEditR1, PipelineConfig
    from imageedit_r1.pipeline.config import EditorConfig
    from tests.test_pipeline import DECOMPOSITION, SUBS, ScriptedDecomposer, ScriptedSequencer

    config = PipelineConfig(editor=EditorConfig(name=editor_name)) if editor_name else PipelineConfig()
    planner = ImageEditR1(decomposer=ScriptedDecomposer(DECOMPOSITION), sequencer=ScriptedSequencer(SUBS),
                          config=config)
    settings = AppSettings(config=config, limits=limits or UploadLimits(), upload_roots=[get_upload_folder()],
                           output_dir=str(output_dir), auth_passwords=[password for _, password in auth or []],
                           **({"upload_store": store} if store else {}))
    return EditService(settings, planner=planner, editor=editor)


@contextlib.contextmanager
def scripted_app(tmp_path, editor, queue_size=4, auth=None, limits=None, store=None, editor_name=None, port=None):
    """The app served with scripted agents and ``editor`` (no models): yields (url, Gradio blocks)."""
    from imageedit_r1.app.server import launch
    from imageedit_r1.app.ui import build_app

    service = scripted_service(tmp_path / "out", editor, auth=auth, limits=limits, store=store, editor_name=editor_name)
    app = build_app(service)
    port = port or free_port()
    launch(app, host="127.0.0.1", port=port, share=False, auth=auth, limits=service.settings.limits,
           queue_size=queue_size, prevent_thread_lock=True, **({"store": store} if store else {}))
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", app=app, service=service)
    finally:
        app.close()


@contextlib.contextmanager
def app_process(tmp_path, *, auth: str | None = None):
    """The scripted app in a child process (its own memory to measure): yields (url, pid)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_TEMP_DIR": str(tmp_path / "uploads"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    if auth:
        env["IMAGEEDIT_R1_APP_AUTH"] = auth
    child = subprocess.Popen([sys.executable, "-m", "tests.app_fixtures", "--port", str(port),
                              "--output-dir", str(tmp_path / "out")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"the app exited: {child.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "gradio_api/startup-events", timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the app did not start in 120 s")
            time.sleep(0.3)
        yield url, child.pid
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


def main() -> None:
    """Serve the scripted app until terminated (for ``app_process``)."""
    import signal
    import threading

    from imageedit_r1.app.__main__ import read_auth
    from tests.test_pipeline import InvertingEditor

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    auth = read_auth(None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with scripted_app(Path(args.output_dir).parent, InvertingEditor(), auth=auth, port=args.port):
        stop.wait()


if __name__ == "__main__":
    main()
