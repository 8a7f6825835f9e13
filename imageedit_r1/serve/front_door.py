"""The service's front door: API keys, body sizes and uploaded images, checked before any work.

THE SEAM for the request limits the served surfaces share (DESIGN decision 14). Everything the
service checks at its door goes through this module, and only this module knows where the
shared rules live: the image checks are the app's (``imageedit_r1.app.uploads``), and the
body-size and key checks below are the ones the shared front door takes over when it lands.

- **Keys.** Clients send ``Authorization: Bearer <key>``. Keys come from ``--api-keys-file``
  (one a line) or ``$IMAGEEDIT_R1_API_KEYS`` (comma-separated); replicas hold only their
  SHA-256 digests, so no key travels to a replica or sits in Ray's stores. With no keys, only a
  loopback service may start (``imageedit_r1.serve.__main__``).
- **Bodies.** ``BodyLimit`` is ASGI middleware: a body over its route's limit gets 413 from its
  Content-Length, before a byte of it is read, or as its bytes arrive, never read whole; a
  client without a valid key gets 401 with its body unread. Both answer with
  ``Connection: close``, so the server stops reading the socket. It sits in the ingress's app
  and, where the proxy is configured for it (``proxy_middlewares``: a local instance started
  by the service, or a RayService's nodes), in Ray Serve's HTTP proxy itself, which otherwise
  reads a body ahead into memory while the replica decides.
- **Images.** ``read_image`` refuses a file over the byte limit, a format outside the accepted
  ones, or more pixels than the limit from its header, before decoding it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imageedit_r1.app.uploads import UploadLimits, UploadRefused, read_upload
from imageedit_r1.serve.errors import APIError, too_large, unauthorized

KEYS_ENV = "IMAGEEDIT_R1_API_KEYS"
# Ray Serve's HTTP proxy builds its middleware from this import path (read when the proxy starts) ...
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "imageedit_r1.serve.front_door:proxy_middlewares"
# ... and the door's settings from this JSON: {"key_digests": [...], "upload_bytes": N}.
DOOR_ENV = "IMAGEEDIT_R1_SERVE_DOOR"
UPLOAD_ROUTES = ("/v1/images/edits", "/v1/plans", "/v1/plans/execute")
# Liveness, for probes: the service's own and the Serve proxy's.
PUBLIC_ROUTES = ("/healthz", "/-/healthz", "/-/routes")
MIN_KEY_CHARS = 15  # the shortest login secret the served surfaces accept
MULTIPART_SLACK = 1024 * 1024 + 64 * 1024  # a plan field beside the image, boundaries and part headers
SMALL_BODY_BYTES = 64 * 1024  # any body but an upload

__all__ = ["KEYS_ENV", "BodyLimit", "UploadLimits", "UploadRefused", "key_digest", "proxy_door_environment",
           "proxy_middlewares", "read_api_keys", "read_image"]


# ----------------------------------------------------------------------------- keys


def read_api_keys(path: str | os.PathLike | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Keys from ``path`` (one a line, ``#`` comments) or ``$IMAGEEDIT_R1_API_KEYS`` (comma-separated);
    ValueError (which never shows a key) for a key under ``MIN_KEY_CHARS`` characters."""
    text = Path(path).read_text(encoding="utf-8") if path else environ.get(KEYS_ENV, "")
    keys = [item.strip() for item in text.replace(",", "\n").splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    for number, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_CHARS or any(char.isspace() for char in key):
            raise ValueError(f"API key {number} has {len(key)} characters or holds a space; use keys of at least "
                             f"{MIN_KEY_CHARS} characters without spaces (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
    return keys


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _presented_key(scope: Mapping[str, Any]) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else None
    return None


def _key_is_valid(scope: Mapping[str, Any], digests: Iterable[str]) -> bool:
    key = _presented_key(scope)
    if not key:
        return False
    presented = key_digest(key)
    # Compared with every digest, in constant time each: no early exit to time.
    return any([hmac.compare_digest(presented, digest) for digest in digests])


# ----------------------------------------------------------------------------- bodies


class BodyLimit:
    """ASGI middleware: 401 without a valid key (``key_digests``; none: every client may call),
    then 413 for a body over ``upload_bytes`` + slack on ``upload_routes`` or ``SMALL_BODY_BYTES``
    elsewhere. ``public_routes`` need no key.

    A body past its limit reads as the client's disconnect to the app behind (a Serve proxy stops
    forwarding it, a route stops parsing it); whatever the app then answers is dropped and the
    client gets the 413.
    """

    def __init__(self, app, *, key_digests: Iterable[str] = (), upload_bytes: int,
                 upload_routes: Iterable[str] = UPLOAD_ROUTES, public_routes: Iterable[str] = PUBLIC_ROUTES) -> None:
        self.app, self.digests = app, tuple(key_digests)
        self.upload_limit = upload_bytes + MULTIPART_SLACK
        self.upload_routes, self.public_routes = frozenset(upload_routes), frozenset(public_routes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if self.digests and path not in self.public_routes and not _key_is_valid(scope, self.digests):
            await answer(send, unauthorized())
            return
        limit = self.upload_limit if path in self.upload_routes else SMALL_BODY_BYTES
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await answer(send, too_large(limit))
            return
        received, refused, started = 0, False, False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if not refused:  # the app's own failure; a refused body's is the disconnect it was shown
                raise
        if refused and not started:
            await answer(send, too_large(limit))


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def answer(send, error: APIError) -> None:
    """Send ``error`` as a whole response and close the connection (the rest of a body stays unread)."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- at Serve's proxy


def proxy_middlewares() -> list:
    """The door for Ray Serve's HTTP proxy (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names
    this): keys and sizes checked as the proxy receives a request, before it routes the request or
    queues a byte of its body for a replica. Settings from ``$IMAGEEDIT_R1_SERVE_DOOR``; without
    digests there, keys from ``$IMAGEEDIT_R1_API_KEYS``."""
    from starlette.middleware import Middleware

    settings = json.loads(os.environ.get(DOOR_ENV) or "{}")
    digests = settings.get("key_digests") or [key_digest(key) for key in read_api_keys(None)]
    return [Middleware(BodyLimit, key_digests=digests, upload_bytes=settings.get("upload_bytes") or UploadLimits().max_bytes)]


def proxy_door_environment(key_digests: Iterable[str], upload_bytes: int) -> dict[str, str]:
    """The variables that put the door in a new local Ray instance's Serve proxy."""
    return {PROXY_CALLBACK_ENV: PROXY_CALLBACK,
            DOOR_ENV: json.dumps({"key_digests": list(key_digests), "upload_bytes": int(upload_bytes)})}


# ----------------------------------------------------------------------------- images


def read_image(data: bytes, limits: UploadLimits):
    """The uploaded ``data`` decoded upright RGB within ``limits`` (bytes, format, pixels checked
    from the header first); ``UploadRefused`` saying why otherwise."""
    with tempfile.TemporaryDirectory(prefix="imageedit-r1-serve-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        return read_upload(str(path), limits, [folder])
