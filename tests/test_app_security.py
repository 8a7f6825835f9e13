"""The app under attack over HTTP on loopback: the login holds on every route, bodies are refused
before they are read, the client cannot choose the editor, uploads are kept within a quota,
and login guessing is throttled."""

import os
import re
import select
import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from tests.app_fixtures import app_process, peak_rss_bytes, private_upload_folder, scripted_app, two_tone
from tests.test_pipeline import InvertingEditor

gradio = pytest.importorskip("gradio")
pytestmark = [pytest.mark.slow]

PASSWORD = "correct-horse-battery-staple"
AUTH = [("alice", PASSWORD)]


@pytest.fixture(autouse=True)
def uploads(tmp_path):
    """Each test's app keeps its uploads in a folder of its own (the app sweeps it)."""
    with private_upload_folder(tmp_path / "uploads") as folder:
        yield folder


def _routes(routes, prefix=""):
    """(path, methods) of every route a Starlette/FastAPI app serves, included routers too."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from _routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "routes") and not hasattr(route, "methods"):  # a mount
            yield from _routes(route.routes, prefix + route.path)
        else:
            yield prefix + route.path, set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"}


def test_without_a_login_every_route_but_the_login_page_answers_401_or_404(tmp_path, monkeypatch):
    """Gradio's run-history routes answered without the login (and call the Hub with the host's
    HF_TOKEN); so did /openapi.json, /gradio_api/runs and more. Every route Gradio registers is
    asked, so a route a later Gradio adds is covered too."""
    from imageedit_r1.app.server import PUBLIC_ROUTES
    from imageedit_r1.request_limits import matches

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_0123456789")
    with scripted_app(tmp_path, InvertingEditor(), auth=AUTH) as served:
        routes = sorted(_routes(served.app.server_app.routes))
        assert len(routes) > 40 and any("run-history" in path for path, _ in routes) is False
        answered, public = {}, []
        for path, methods in routes:
            if matches(path, PUBLIC_ROUTES):
                public.append(path)
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in sorted(methods):
                response = httpx.request(method, served.url.rstrip("/") + concrete, timeout=10,
                                         content=b'{"data": []}', headers={"content-type": "application/json"})
                answered[f"{method} {path}"] = response.status_code
        for path in ("/gradio_api/run-history/buckets", "/gradio_api/run-history/records"):
            answered[f"GET {path}"] = httpx.get(served.url.rstrip("/") + path, timeout=10).status_code
        leaks = {route: code for route, code in answered.items() if code not in (401, 404)}
        assert not leaks, leaks
        # Signed in, the run-history routes are not there at all.
        client = httpx.Client(base_url=served.url)
        assert client.post("login", data={"username": "alice", "password": PASSWORD}).status_code == 200
        assert client.get("gradio_api/run-history/buckets").status_code == 404
        assert client.get("config").status_code == 200
    assert {"/", "/login", "/assets/{path:path}"} <= set(public)


# ----------------------------------------------------------------------------- bodies


def _post_body(url: str, path: str, size: int, *, chunked: bool, content_type: str = "application/json") -> int:
    """POST ``size`` bytes to ``path`` over a raw socket, as a hostile client would (sending on
    while it can); the status of the answer, read as soon as it arrives."""
    parsed = urlparse(url)
    head = [f"POST {path} HTTP/1.1", f"Host: {parsed.netloc}", f"Content-Type: {content_type}"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    chunk = (b"[" + b"1," * (2**19 - 1) if content_type == "application/json"  # 1 MiB of JSON that never closes
             else b"username=alice&password=" + b"x" * (2**20 - 24))
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = chunk[: size - sent]
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            except OSError:  # the server closed the connection: its answer may already be there
                break
            sent += len(piece)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
def test_a_large_body_is_refused_before_it_is_read(tmp_path, chunked):
    """64-100 MB JSON bodies to /gradio_api/call/plan were read and parsed first (+385-650 MB of
    server memory each). The server's peak memory must not grow by the body's size."""
    size = 256 * 2**20
    with app_process(tmp_path) as (url, pid):
        httpx.get(url + "config", timeout=10)  # warm up the routes once
        before = peak_rss_bytes(pid)
        started = time.monotonic()
        status = _post_body(url, "/gradio_api/call/plan", size, chunked=chunked)
        elapsed = time.monotonic() - started
        grown = peak_rss_bytes(pid) - before
        assert httpx.get(url + "config", timeout=10).status_code == 200  # still serving
    assert status == 413
    assert grown < 48 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MiB for a {size // 2**20} MiB body"
    assert elapsed < 60


def test_without_a_login_a_large_body_is_refused_unread(tmp_path):
    size = 256 * 2**20
    with app_process(tmp_path, auth=f"alice:{PASSWORD}") as (url, pid):
        httpx.get(url, timeout=10)
        before = peak_rss_bytes(pid)
        status = _post_body(url, "/gradio_api/call/plan", size, chunked=False)
        login_form = _post_body(url, "/login", 8 * 2**20, chunked=True, content_type="application/x-www-form-urlencoded")
        grown = peak_rss_bytes(pid) - before
    assert status == 401 and login_form == 413
    assert grown < 48 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- the editor


def test_a_client_cannot_choose_another_editor(tmp_path, monkeypatch):
    """/execute with editor="qwen-image-edit" once unloaded the configured editor and loaded
    another from the hub (34-58 GB), or with a hosted editor spent the operator's keys."""
    from gradio_client import Client, handle_file

    import imageedit_r1.agents.editors as editors

    built = []
    monkeypatch.setattr(editors, "build_editor", lambda name, **options: built.append(name))
    path = tmp_path / "in.png"
    two_tone((48, 32)).save(path)
    editor = InvertingEditor()
    with scripted_app(tmp_path, editor) as served:
        client = Client(served.url, verbose=False)
        info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/execute"]
        editor_parameter = next(item for item in info["parameters"] if item["parameter_name"] == "editor_name")
        assert editor_parameter["python_type"]["type"] == "Literal['flux-kontext']"
        plan = client.predict(handle_file(str(path)), "Recolor it", "single-turn", api_name="/plan")
        for name in ("qwen-image-edit", "nano-banana", "openai-image"):
            with pytest.raises(Exception, match=f"runs the flux-kontext editor only, not '{name}'"):  # noqa: PT011
                client.predict(handle_file(str(path)), plan, name, 1, None, api_name="/execute")
        _, trace = client.predict(handle_file(str(path)), plan, "flux-kontext", 1, None, api_name="/execute")
    assert built == [] and len(editor.calls) == 1 and trace["status"] == "ok"


# ----------------------------------------------------------------------------- uploads


def _upload(url: str, data: bytes) -> str:
    response = httpx.post(url + "gradio_api/upload", files={"files": ("photo.png", data, "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()[0]


def _stored(folder) -> list:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_uploads_are_kept_within_a_quota_and_deleted_by_age(tmp_path, uploads):
    """100 uploads of 1 MiB were accepted and never deleted."""
    from imageedit_r1.request_limits import UploadStore

    store = UploadStore(uploads, max_bytes=3 * 2**20 + 2**19, max_files=100, keep_seconds=3600)
    with scripted_app(tmp_path, InvertingEditor(), store=store) as served:
        kept = [_upload(served.url, os.urandom(2**20)) for _ in range(8)]
        files = _stored(uploads)
        assert sum(path.stat().st_size for path in files) <= store.max_bytes
        assert {str(path) for path in files} == set(kept[-3:])  # the newest stay, the oldest went
        old = time.time() - 2 * 3600
        for path in files[:2]:
            os.utime(path, (old, old))
        newest = _upload(served.url, os.urandom(1000))
        assert {str(path) for path in _stored(uploads)} == {newest, *(str(path) for path in files[2:])}
        # An image whose upload was swept says so, in a sentence.
        with pytest.raises(Exception, match="no longer on the server.*upload it again"):  # noqa: PT011
            served.service.plan(kept[0], "Recolor it")


def test_the_command_line_sets_the_quota():
    from imageedit_r1.app.__main__ import build_parser, main

    args = build_parser().parse_args(["--upload-store-mb", "100", "--upload-keep-hours", "2"])
    assert (args.upload_store_mb, args.upload_keep_hours) == (100, 2)
    with pytest.raises(SystemExit):
        main(["--upload-store-mb", "10", "--max-upload-mb", "25"])


# ----------------------------------------------------------------------------- logins


def test_failed_logins_are_throttled_per_client(tmp_path):
    """200 wrong logins were answered in 0.4 s."""
    with scripted_app(tmp_path, InvertingEditor(), auth=AUTH) as served:
        guesser = httpx.Client(base_url=served.url)
        codes = [guesser.post("login", data={"username": "alice", "password": f"guess-{i}"}).status_code
                 for i in range(8)]
        assert codes == [400] * 5 + [429] * 3
        refused = guesser.post("login", data={"username": "alice", "password": PASSWORD})
        assert refused.status_code == 429 and "too many failed logins" in refused.json()["detail"]
        wait = int(refused.headers["retry-after"])
        # Another client is not held back by the guesser.
        other = httpx.Client(base_url=served.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        assert other.post("login", data={"username": "alice", "password": PASSWORD}).status_code == 200
        time.sleep(wait + 0.2)
        assert guesser.post("login", data={"username": "alice", "password": PASSWORD}).status_code == 200
