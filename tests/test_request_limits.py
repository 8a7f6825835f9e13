"""The served surfaces' front door on its own: the throttle's arithmetic, the upload store's
sweep, the login policy, image checks on bytes, the secret hook, and ``FrontDoor`` on a FastAPI
app served by uvicorn on 127.0.0.1 the way an OpenAI-compatible service with API keys uses it."""

import contextlib
import io
import logging
import os
import threading
import time

import httpx
import pytest
from PIL import Image

from imageedit_r1.request_limits import (
    DoorRules,
    FrontDoor,
    LoginThrottle,
    UploadLimits,
    UploadRefused,
    UploadStore,
    check_logins,
    matches,
    protect_secrets,
    read_image,
)
from tests.app_fixtures import free_port


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_the_throttle_lets_a_few_fail_then_doubles_the_wait_and_forgets():
    clock = Clock()
    throttle = LoginThrottle(free=3, delay=1.0, max_delay=8.0, forget_after=60.0, clock=clock)
    for _ in range(3):
        assert throttle.wait("a") == 0
        throttle.failed("a")
    waits = []
    for _ in range(6):
        waits.append(throttle.wait("a"))
        clock.now += waits[-1]
        throttle.failed("a")
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert throttle.wait("b") == 0  # per client
    clock.now += 61
    assert throttle.wait("a") == 0  # quiet for longer than forget_after
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.wait("a") == 0


def test_the_throttle_remembers_a_bounded_number_of_clients():
    throttle = LoginThrottle(free=0, delay=10.0, max_clients=3, clock=Clock())
    for client in "abcd":
        throttle.failed(client)
    assert throttle.wait("a") == 0 and throttle.wait("d") > 0 and len(throttle._failures) == 3


def test_logins_need_a_long_password_and_a_user():
    assert check_logins([("alice", "x" * 15)]) == [("alice", "x" * 15)]
    with pytest.raises(ValueError, match="password of 'bob' has 14 characters; use at least 15"):
        check_logins([("alice", "x" * 15), ("bob", "y" * 14)])
    with pytest.raises(ValueError, match="empty user name"):
        check_logins([(" ", "x" * 20)])


def test_routes_match_exactly_or_by_a_starred_prefix():
    routes = ("/", "/assets/*", "/login")
    assert matches("/", routes) and matches("/assets/a.js", routes) and matches("/login", routes)
    assert not matches("/config", routes) and not matches("/login/x", routes) and matches("/x", ("*",))
    rules = DoorRules(body_bytes=1000, upload_bytes=5000, anonymous_body_bytes=100, upload_routes=("/up",))
    assert rules.body_limit("/up", True) == 5000 + 64 * 1024 and rules.body_limit("/x", True) == 1000
    assert rules.body_limit("/up", False) == 100


def _touch(path, size, age, now):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age, now - age))
    return path


def test_the_upload_store_deletes_by_age_then_oldest_first_to_make_room(tmp_path):
    now = 10_000.0
    store = UploadStore(tmp_path / "up", max_bytes=1000, max_files=3, keep_seconds=100, clock=lambda: now)
    old = _touch(tmp_path / "up/a/old.png", 10, 500, now)
    first = _touch(tmp_path / "up/b/first.png", 400, 50, now)
    second = _touch(tmp_path / "up/c/second.png", 400, 40, now)
    outside = _touch(tmp_path / "outside.png", 10, 10_000, now)
    (tmp_path / "up/link.png").symlink_to(outside)
    os.utime(tmp_path / "up/link.png", (now - 30, now - 30), follow_symlinks=False)
    assert store.sweep(room=0) == 2  # the old file; then the oldest, for a fourth file to fit
    assert not old.exists() and not first.exists() and second.exists() and outside.exists()
    assert store.sweep(room=700) == 1  # the oldest left goes so that 700 more bytes fit
    assert not second.exists() and (tmp_path / "up/link.png").is_symlink() and outside.exists()


def _png(size, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_images_are_checked_from_their_bytes_before_decoding():
    limits = UploadLimits(max_bytes=200_000, max_pixels=1_000_000)
    assert read_image(_png((40, 30), "RGBA"), limits).size == (40, 30)
    with pytest.raises(UploadRefused, match="10000x10000 = 100.0 megapixels; this server accepts at most 1"):
        read_image(_png((10_000, 10_000), "1"), limits)
    with pytest.raises(UploadRefused, match="not a readable image"):
        read_image(b"GIF89a" + b"\0" * 20, limits)
    with pytest.raises(UploadRefused, match="MiB; this server accepts at most"):
        read_image(os.urandom(300_000), limits)


def test_protect_secrets_masks_the_server_logs(caplog):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("uvicorn.error")
    handler = Keep()
    logger.addHandler(handler)
    try:
        protect_secrets(["a-login-passphrase-long"], loggers=("uvicorn.error",))
        logger.error("login failed for password %s", "a-login-passphrase-long")
    finally:
        logger.removeHandler(handler)
    assert records == ["login failed for password [REDACTED]"]


# ----------------------------------------------------------------------------- a service with API keys

KEY = "service-key-0123456789abcdef"
LIMITS = UploadLimits(max_bytes=300_000, max_pixels=1_000_000)


def _service_app():
    """An OpenAI-compatible service's shape: a bearer key on every route, an image upload route."""
    from fastapi import FastAPI, File, UploadFile
    from fastapi.responses import JSONResponse

    app = FastAPI()

    def signed_in(scope) -> bool:
        headers = dict(scope.get("headers", ()))
        return headers.get(b"authorization", b"") == f"Bearer {KEY}".encode()

    app.add_middleware(FrontDoor, rules=DoorRules(body_bytes=64 * 1024, upload_bytes=LIMITS.max_bytes,
                                                  upload_routes=("/v1/images/edits",), login_routes=("*",),
                                                  failed_login_statuses=(401,)),
                       signed_in=signed_in, throttle=LoginThrottle(free=3, delay=30.0))

    @app.post("/v1/images/edits")
    async def edit(image: UploadFile = File(...)):
        try:
            decoded = read_image(await image.read(), LIMITS)
        except UploadRefused as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)
        return {"size": list(decoded.size)}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": "imageedit-r1"}]}

    return app


@contextlib.contextmanager
def _served(app):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_fastapi_service_takes_the_front_door_as_it_is():
    with _served(_service_app()) as url:
        key = {"Authorization": f"Bearer {KEY}"}
        files = {"image": ("a.png", _png((64, 48)), "image/png")}
        assert httpx.post(f"{url}/v1/images/edits", files=files, headers=key).json() == {"size": [64, 48]}
        bomb = {"image": ("b.png", _png((5_000, 5_000), "1"), "image/png")}
        refused = httpx.post(f"{url}/v1/images/edits", files=bomb, headers=key)
        assert refused.status_code == 400 and "25.0 megapixels" in refused.json()["error"]["message"]
        big = httpx.post(f"{url}/v1/images/edits", headers=key, content=b"x" * 400_000,
                         files=None, timeout=30)
        assert big.status_code == 413 and "over this server's limit" in big.json()["detail"]
        # Without the key: 401, the body unread; a few wrong keys, then 429 for that client.
        codes = [httpx.post(f"{url}/v1/images/edits", files=files,
                            headers={"Authorization": f"Bearer wrong-{i}"}).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        assert other.get(f"{url}/v1/models", headers=key).status_code == 200


def test_a_public_probe_neither_clears_nor_waits_out_a_clients_failed_keys():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"data": []}

    throttle = LoginThrottle(free=2, delay=30.0)
    app.add_middleware(FrontDoor, rules=DoorRules(public_routes=("/healthz",), login_routes=("*",),
                                                  failed_login_statuses=(401,)),
                       signed_in=lambda scope: (b"authorization", f"Bearer {KEY}".encode()) in scope["headers"],
                       throttle=throttle)
    client = TestClient(app)
    wrong = {"Authorization": "Bearer wrong-key-0123456789"}
    codes = []
    for _ in range(3):
        codes.append(client.get("/v1/models", headers=wrong).status_code)
        assert client.get("/healthz").status_code == 200  # a probe between guesses: answered, counted for nothing
    assert codes == [401, 401, 429]
    assert client.get("/healthz").status_code == 200  # a throttled address still answers its probes
