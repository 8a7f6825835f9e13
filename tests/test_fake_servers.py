"""The loopback fake server itself: routes, fault plans, latency, multipart uploads, handler errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from imageedit_r1.testing.fake_servers import FakeResponse, FakeServer, scripted


def post(url, body: bytes, content_type="application/json", timeout=5.0):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def test_custom_route_records_requests_and_parses_json():
    server = FakeServer().add_route("POST", r"/v1/echo/(?P<name>\w+)", lambda req, m: {"name": m["name"], **req.json})
    with server:
        status, body = post(server.url + "/v1/echo/abc?x=1", b'{"k": 2}')
    assert status == 200 and json.loads(body) == {"name": "abc", "k": 2}
    (request,) = server.requests
    assert (request.method, request.path, request.query, request.json) == ("POST", "/v1/echo/abc", {"x": ["1"]}, {"k": 2})


def test_unknown_route_is_404():
    with FakeServer() as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            post(server.url + "/nowhere", b"{}")
    assert info.value.code == 404


def test_fault_plan_list_then_normal_answers():
    with FakeServer(faults=["429", "503"]).add_route("POST", "/x", lambda req, m: {"ok": True}) as server:
        codes = []
        for _ in range(3):
            try:
                codes.append(post(server.url + "/x", b"{}")[0])
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
                if exc.code == 429:
                    assert exc.headers["Retry-After"] == "0"
    assert codes == [429, 503, 200]
    assert [r.fault for r in server.requests] == ["429", "503", None]


def test_fault_callable_and_latency():
    def plan(request):
        return "500" if request.json.get("fail") else None

    with FakeServer(faults=plan, latency=0.2).add_route("POST", "/x", lambda req, m: "fine") as server:
        started = time.perf_counter()
        assert post(server.url + "/x", b'{"fail": false}') == (200, b"fine")
        assert time.perf_counter() - started >= 0.2
        with pytest.raises(urllib.error.HTTPError):
            post(server.url + "/x", b'{"fail": true}')


def test_timeout_fault_holds_the_request_until_the_client_gives_up():
    with FakeServer(faults=["timeout"], hang_seconds=5).add_route("POST", "/x", lambda req, m: "late") as server:
        started = time.perf_counter()
        with pytest.raises(OSError):
            post(server.url + "/x", b"{}", timeout=0.3)
        assert time.perf_counter() - started < 2
        assert post(server.url + "/x", b"{}") == (200, b"late")


def test_multipart_upload_is_readable():
    boundary = "XyZ"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it red\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + b"\x89PNG\x00\x01" + f"\r\n--{boundary}--\r\n".encode()
    seen = {}

    def edits(request, _match):
        seen.update(request.multipart())
        return FakeResponse(200, {"data": []})

    with FakeServer().add_route("POST", "/v1/images/edits", edits) as server:
        post(server.url + "/v1/images/edits", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert seen["prompt"][0].text == "make it red"
    image = seen["image[]"][0]
    assert (image.filename, image.content_type, image.data) == ("a.png", "image/png", b"\x89PNG\x00\x01")


def test_handler_errors_surface_when_the_server_stops():
    def broken(request, _match):
        raise KeyError("boom")

    server = FakeServer().add_route("POST", "/x", broken)
    with pytest.raises(AssertionError, match="KeyError"):
        with server:
            with pytest.raises(urllib.error.HTTPError) as info:
                post(server.url + "/x", b"{}")
            assert b"KeyError" in info.value.read()


def test_scripted_replies_advance_and_repeat_the_last():
    reply = scripted("a", "b")
    assert [reply({}) for _ in range(4)] == ["a", "b", "b", "b"]


def test_importing_backends_agents_and_fakes_stays_light():
    code = (
        "import sys, imageedit_r1.backends, imageedit_r1.testing.fake_servers, "
        "imageedit_r1.agents.decomposer, imageedit_r1.agents.sequencer; "
        "heavy = [m for m in ('torch', 'transformers', 'openai', 'google.genai', 'vllm') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
