"""The front door of every served surface (the app, the OpenAI-compatible service): limits that
hold before any work is done, in one place.

- **Images.** ``UploadLimits`` (file bytes, pixels, formats); ``read_image`` checks a file's size
  and header (format, pixel count) before any pixel is decoded, then decodes it upright RGB. A
  refusal is an ``UploadRefused`` whose message is safe to show a client.
- **Logins.** ``check_logins`` refuses passwords shorter than ``MIN_PASSWORD_CHARS``;
  ``LoginThrottle`` counts failed logins per client and makes each one after the first few wait
  longer.
- **Stored uploads.** ``UploadStore`` keeps a folder of uploads within an age, a size and a file
  count, deleting the oldest first.
- **Requests.** ``FrontDoor`` is plain ASGI middleware (no web framework is imported here), so a
  Starlette or FastAPI app, Gradio's included, takes it with ``add_middleware(FrontDoor, ...)``.
  In this order, before the app sees a request: a client throttled for failed logins gets 429; a
  client not signed in gets 401 on every route but the public ones, its body unread; a body over
  its route's limit gets 413, from its Content-Length or as its bytes arrive, never read whole.
- **Secrets.** ``protect_secrets`` registers the logins and the config's keys with the project's
  one secret policy (``imageedit_r1.masking``) and masks the server's logs.

Rules are data (``DoorRules``); the surface supplies what only it knows: how to tell a signed-in
client (``signed_in(scope)``) and which routes are public, uploads or logins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Formats a photo editor is expected to take; anything else (SVG, PDF, EPS, GIF, ...) is refused.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF")
# NIST SP 800-63B-4: a password that is the only factor has at least 15 characters.
MIN_PASSWORD_CHARS = 15
MULTIPART_SLACK = 64 * 1024  # a multipart upload's boundaries and part headers around the file


# ----------------------------------------------------------------------------- images


class UploadRefused(ValueError):
    """An upload is refused; the message says why and how to fix it, and names no server path."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 25 * 1024 * 1024  # 25 MiB: a 50 MP JPEG fits
    max_pixels: int = 40_000_000  # 40 MP: larger than phone photos, far below a bomb
    formats: tuple[str, ...] = ACCEPTED_FORMATS


def check_image(source: bytes | str | os.PathLike, limits: UploadLimits) -> tuple[str, int, int]:
    """Refuse ``source`` (a file or its bytes) over ``limits`` from its size and header alone;
    return its (format, width, height). Raises ``UploadRefused``."""
    import io

    from PIL import Image, UnidentifiedImageError

    in_memory = isinstance(source, (bytes, bytearray, memoryview))
    size = len(source) if in_memory else os.path.getsize(source)
    if size > limits.max_bytes:
        raise UploadRefused(f"the file is {size / 2**20:.1f} MiB; this server accepts at most "
                            f"{limits.max_bytes / 2**20:.0f} MiB (resize or compress it)")
    try:
        with Image.open(io.BytesIO(source) if in_memory else source) as header:  # reads the header only
            fmt, (width, height) = header.format, header.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard, for sizes far past any limit here
        declared = re.search(r"\(\d+ pixels\)", str(exc))
        raise UploadRefused(f"the image declares more pixels than Pillow will open {declared.group(0) if declared else ''}; "
                            f"this server accepts at most {limits.max_pixels / 1e6:.0f} megapixels "
                            "(a decompression bomb, or a scan to downscale first)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadRefused("the file is not a readable image (corrupt, truncated, or not an image); "
                            f"accepted formats: {', '.join(limits.formats)}") from exc
    if fmt not in limits.formats:
        raise UploadRefused(f"{fmt or 'this'} images are not accepted; use one of: {', '.join(limits.formats)}")
    if width * height > limits.max_pixels:
        raise UploadRefused(f"the image is {width}x{height} = {width * height / 1e6:.1f} megapixels; this server "
                            f"accepts at most {limits.max_pixels / 1e6:.0f} megapixels (downscale it)")
    return fmt, width, height


def read_image(source: bytes | str | os.PathLike, limits: UploadLimits):
    """``source`` decoded upright RGB, after ``check_image``; any shape within the pixel limit is
    decoded in memory bounded by that limit (``imageedit_r1.images``). Raises ``UploadRefused``."""
    from imageedit_r1.images import ImageLoadError, load_image

    check_image(source, limits)
    try:
        return load_image(source, max_pixels=limits.max_pixels)
    except ImageLoadError as exc:
        raise UploadRefused("the image could not be decoded (corrupt or truncated file)") from exc


# ----------------------------------------------------------------------------- logins


def check_logins(pairs: Iterable[tuple[str, str]], min_chars: int = MIN_PASSWORD_CHARS) -> list[tuple[str, str]]:
    """``pairs`` (user, password) as given; ValueError naming the user (never the password) for an
    empty user or a password under ``min_chars`` characters."""
    pairs = list(pairs)
    for user, password in pairs:
        if not user.strip():
            raise ValueError("a login has an empty user name")
        if len(password) < min_chars:
            raise ValueError(f"the password of {user!r} has {len(password)} characters; use at least {min_chars} "
                             "(a passphrase of a few words)")
    return pairs


class LoginThrottle:
    """Failed logins per client: ``free`` may fail at once; after that each attempt waits
    ``delay`` seconds, doubled per further failure up to ``max_delay``. A success, or
    ``forget_after`` seconds without a failure, clears a client. At most ``max_clients`` are
    remembered (the longest quiet are forgotten first), so the table itself stays bounded."""

    def __init__(self, *, free: int = 5, delay: float = 1.0, max_delay: float = 300.0, forget_after: float = 900.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.delay, self.max_delay = free, delay, max_delay
        self.forget_after, self.max_clients, self.clock = forget_after, max_clients, clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # client -> (count, last failure)
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try again; 0 when it may try now."""
        with self._lock:
            count, last = self._failures.get(client, (0, 0.0))
            now = self.clock()
            if count and now - last > self.forget_after:
                self._failures.pop(client, None)
                return 0.0
            if count < self.free:
                return 0.0
            pause = min(self.max_delay, self.delay * 2 ** (count - self.free))
            return max(0.0, last + pause - now)

    def failed(self, client: str) -> None:
        with self._lock:
            count, _ = self._failures.pop(client, (0, 0.0))
            self._failures[client] = (count + 1, self.clock())
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


# ----------------------------------------------------------------------------- stored uploads


@dataclass
class UploadStore:
    """A folder of uploads kept within bounds: files older than ``keep_seconds`` are deleted, and
    the oldest go first while the folder holds more than ``max_bytes`` or ``max_files``.
    ``sweep(room)`` makes room for an upload of ``room`` bytes; the front door calls it before an
    upload is read. Give the store a folder of its own: it deletes whatever it holds."""

    folder: str | os.PathLike
    max_bytes: int = 2 * 2**30
    max_files: int = 10_000
    keep_seconds: float = 24 * 3600.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[float, int, str]]:
        found = []
        for folder, _, names in os.walk(self.folder):  # links are not followed
            for name in names:
                path = os.path.join(folder, name)
                try:
                    stat = os.lstat(path)
                except OSError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
        return sorted(found)

    def sweep(self, room: int = 0) -> int:
        """Delete what is too old, then the oldest until ``room`` more bytes and one more file fit;
        the number of files deleted."""
        with self._lock:
            now, deleted = self.clock(), 0
            files = self._files()
            total = sum(size for _, size, _ in files)
            for mtime, size, path in files:
                too_old = now - mtime > self.keep_seconds
                too_much = total + room > self.max_bytes or len(files) - deleted + 1 > self.max_files
                if not (too_old or too_much):
                    break
                with _quietly():
                    os.unlink(path)
                    deleted += 1
                    total -= size
            self._drop_empty_folders(now)
            return deleted

    def _drop_empty_folders(self, now: float) -> None:
        for folder, _, _ in sorted(os.walk(self.folder), key=lambda entry: -len(entry[0])):
            if Path(folder) == Path(self.folder):
                continue
            with _quietly():
                # A folder made a moment ago may be about to receive its upload.
                if now - os.lstat(folder).st_mtime > 60 and not os.listdir(folder):
                    os.rmdir(folder)


class _quietly:
    """Ignore a file that vanished or cannot be removed (another sweep, another process)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, OSError)


# ----------------------------------------------------------------------------- the front door

ASGIApp = Callable[[Mapping[str, Any], Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def matches(path: str, routes: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``routes``: an exact path, or a prefix written with a final ``*``
    (``/assets/*``; ``*`` alone is every path)."""
    return any(path.startswith(route[:-1]) if route.endswith("*") else path == route for route in routes)


@dataclass(frozen=True)
class DoorRules:
    """What the front door lets through. Routes are matched by ``matches``."""

    body_bytes: int = 1024 * 1024  # any request body but an upload
    upload_bytes: int = UploadLimits.max_bytes  # one uploaded file; its body may add MULTIPART_SLACK
    anonymous_body_bytes: int = 64 * 1024  # the body of a client not signed in (a login form)
    public_routes: tuple[str, ...] = ()  # answered without a login (login page, static assets)
    upload_routes: tuple[str, ...] = ()  # bodies that are uploads
    login_routes: tuple[str, ...] = ()  # where an answer in failed_login_statuses is a failed login
    failed_login_statuses: tuple[int, ...] = (400, 401, 403)  # a service checking keys on every route ("*"): (401,)

    def body_limit(self, path: str, signed_in: bool) -> int:
        limit = self.upload_bytes + MULTIPART_SLACK if matches(path, self.upload_routes) else self.body_bytes
        return limit if signed_in else min(limit, self.anonymous_body_bytes)


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes its limit; the front door answers 413."""


class FrontDoor:
    """ASGI middleware enforcing ``rules`` (see the module docstring for the order of checks).

    ``signed_in(scope)`` says whether a request comes from a signed-in client; None: the surface
    has no login (every client counts as signed in). ``throttle`` counts failed logins on
    ``rules.login_routes``; ``store`` makes room before an upload is read.
    """

    def __init__(self, app: ASGIApp, *, rules: DoorRules, signed_in: Callable[[Mapping[str, Any]], bool] | None = None,
                 throttle: LoginThrottle | None = None, store: UploadStore | None = None) -> None:
        self.app, self.rules, self.signed_in, self.throttle, self.store = app, rules, signed_in, throttle, store

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        client = (scope.get("client") or ("unknown", 0))[0]
        public = matches(path, self.rules.public_routes)
        # A public route is a login route only by its own name (a login form), never through a
        # pattern: a probe of /healthz must neither clear a client's failed logins nor be throttled.
        login = self.throttle is not None and matches(path, self.rules.login_routes) and (
            not public or path in self.rules.login_routes)
        if login:
            wait = self.throttle.wait(client)
            if wait > 0:
                await _refuse(scope, receive, send, 429, f"too many failed logins from this address; try again in "
                              f"{math.ceil(wait)} s", [(b"retry-after", str(math.ceil(wait)).encode())])
                return
        signed_in = self.signed_in is None or self.signed_in(scope)
        if not signed_in and not public:
            if login:  # a service that checks a key on every route: a wrong key is a failed login
                self.throttle.failed(client)
            await _refuse(scope, receive, send, 401, "Not authenticated: sign in first")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        limit = self.rules.body_limit(path, signed_in)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, 413, _too_large(limit))
            return
        if self.store is not None and matches(path, self.rules.upload_routes):
            await asyncio.to_thread(self.store.sweep, declared if declared is not None else limit)
        await self._bounded(scope, receive, send, limit, client if login else None)

    async def _bounded(self, scope, receive, send, limit: int, login_client: str | None) -> None:
        received, refused, started = 0, False, False
        status = 0

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge(_too_large(limit))
            return message

        async def watched_send(message):
            nonlocal started, status
            if refused:  # whatever the app makes of the refusal, the client gets the 413
                return
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            pass
        if refused and not started:
            await _answer(send, 413, _too_large(limit))
        if login_client is not None and status:
            if status in self.rules.failed_login_statuses:
                self.throttle.failed(login_client)
            elif status < 400:
                self.throttle.succeeded(login_client)


def _route_path(scope) -> str:
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> str:
    return f"the request body is over this server's limit of {limit:,} bytes ({limit / 2**20:.1f} MiB)"


async def _answer(send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": message, "error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope, receive, send, status: int, message: str, headers=()) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    await _answer(send, status, message, list(headers))


# ----------------------------------------------------------------------------- secrets

SERVER_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "gradio", "fastapi", "starlette", "ray.serve")


def protect_secrets(passwords: Iterable[str] = (), config: Any = None, loggers: Iterable[str] = SERVER_LOGGERS) -> None:
    """Mask the login passwords and every key ``config`` names wherever text leaves the server:
    answers go through ``imageedit_r1.masking.mask`` (the surface calls it); here the values are
    registered and each handler of the server's ``loggers`` gets a ``MaskingFilter``."""
    from imageedit_r1.masking import MaskingFilter, register_config, register_values

    register_values(passwords)
    if config is not None:
        register_config(config)
    for name in loggers:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            if not any(isinstance(item, MaskingFilter) for item in target.filters):
                target.addFilter(MaskingFilter())
