"""The service's front door: the served surfaces' shared one, set up for API keys and OpenAI's errors.

The checks are ``imageedit_r1.request_limits``'s, the same the app runs (DESIGN decision 14):
``FrontDoor`` answers before any route runs (a client throttled for wrong keys gets 429, a client
without a valid key 401 with its body unread, a body over its route's limit 413 from its
Content-Length or as its bytes arrive, never read whole), and ``read_image`` checks an upload's
bytes, format and pixels from its header before decoding it within the pixel limit. What this
module adds is what only the service knows:

- **Keys.** Clients send ``Authorization: Bearer <key>``. Keys come from ``--api-keys-file`` (one a
  line) or ``$IMAGEEDIT_R1_API_KEYS`` (comma-separated), each at least ``MIN_PASSWORD_CHARS``
  long; the door holds only their SHA-256 digests, so no key travels to a replica or sits in
  Ray's stores. Every route but the probes' (``PUBLIC_ROUTES``) needs one, and a wrong one counts
  as a failed login.
- **OpenAI's shape.** ``OpenAIRefusals`` rewrites the door's own refusals into
  ``{"error": {"message", "type", "param", "code"}}``, so SDK clients raise what they raise for
  OpenAI (``imageedit_r1.serve.errors``).
- **Where it stands.** In the ingress's app always (``door_middlewares``), and in Ray Serve's HTTP
  proxy wherever the proxy is told to (``proxy_middlewares``: a local instance the service starts,
  or a RayService's nodes): there it answers before the proxy routes a request, which otherwise
  reads a body ahead into memory while the replica decides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imageedit_r1.request_limits import (
    MIN_PASSWORD_CHARS,
    DoorRules,
    FrontDoor,
    LoginThrottle,
    UploadLimits,
    UploadRefused,
    read_image,
)
from imageedit_r1.serve.errors import APIError, unauthorized

KEYS_ENV = "IMAGEEDIT_R1_API_KEYS"
# Ray Serve's HTTP proxy builds its middleware from this import path (read when the proxy starts) ...
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "imageedit_r1.serve.front_door:proxy_middlewares"
# ... and the door's settings from this JSON: {"key_digests": [...], "upload_bytes": N}.
DOOR_ENV = "IMAGEEDIT_R1_SERVE_DOOR"
UPLOAD_ROUTES = ("/v1/images/edits", "/v1/plans", "/v1/plans/execute")
# Liveness, for probes: the service's own and the Serve proxy's (KubeRay's probe). Serve's
# /-/routes names the applications, so it takes a key like every other route.
PUBLIC_ROUTES = ("/healthz", "/-/healthz")
PLAN_FIELD_BYTES = 2**20  # the plan beside the image on /v1/plans/execute (a plan is a few kB)
SMALL_BODY_BYTES = 64 * 1024  # any other body
DOOR_STATUSES = (401, 413, 429)

__all__ = ["KEYS_ENV", "UploadLimits", "UploadRefused", "door_middlewares", "key_digest", "proxy_door_environment",
           "proxy_middlewares", "read_api_keys", "read_image"]


# ----------------------------------------------------------------------------- keys


def read_api_keys(path: str | os.PathLike | None, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Keys from ``path`` (one a line, ``#`` comments) or ``$IMAGEEDIT_R1_API_KEYS`` (comma-separated);
    ValueError (which never shows a key) for a key under ``MIN_PASSWORD_CHARS`` characters."""
    text = Path(path).read_text(encoding="utf-8") if path else environ.get(KEYS_ENV, "")
    keys = [item.strip() for item in text.replace(",", "\n").splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    for number, key in enumerate(keys, 1):
        if len(key) < MIN_PASSWORD_CHARS or any(char.isspace() for char in key):
            raise ValueError(f"API key {number} has {len(key)} characters or holds a space; use keys of at least "
                             f"{MIN_PASSWORD_CHARS} characters without spaces (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
    return keys


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyCheck:
    """The door's ``signed_in``: whether a request carries a key with one of these digests."""

    def __init__(self, digests: Iterable[str]) -> None:
        self.digests = tuple(digests)

    def __call__(self, scope: Mapping[str, Any]) -> bool:
        key = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, key = value.decode("latin-1").partition(" ")
                key = key.strip() if scheme.lower() == "bearer" else None
        if not key:
            return False
        presented = key_digest(key)
        # Compared with every digest, in constant time each: no early exit to time.
        return any([hmac.compare_digest(presented, digest) for digest in self.digests])


# ----------------------------------------------------------------------------- the door


def door_rules(upload_bytes: int) -> DoorRules:
    """What the service's door lets through: a key on every route but the probes' (a wrong key is a
    failed login), uploads of ``upload_bytes`` with a plan beside them, small bodies elsewhere."""
    return DoorRules(body_bytes=SMALL_BODY_BYTES, upload_bytes=upload_bytes + PLAN_FIELD_BYTES,
                     public_routes=PUBLIC_ROUTES, upload_routes=UPLOAD_ROUTES, login_routes=("*",),
                     failed_login_statuses=(401,))


def door_middlewares(key_digests: Iterable[str], upload_bytes: int) -> list:
    """Starlette middleware entries, innermost first: the shared front door, then ``OpenAIRefusals``
    around it. No digests: every client counts as signed in (a loopback service without keys)."""
    from starlette.middleware import Middleware

    digests = tuple(key_digests)
    return [Middleware(FrontDoor, rules=door_rules(upload_bytes), signed_in=KeyCheck(digests) if digests else None,
                     throttle=LoginThrottle()),
            Middleware(OpenAIRefusals)]


class OpenAIRefusals:
    """ASGI middleware: the front door's refusals (401, 413, 429, answered ``{"detail", "error"}``)
    re-worded as OpenAI's error object, their headers (``Retry-After``, ``Connection: close``) kept.
    The service's own errors are OpenAI's already and pass as they are."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        body = b""

        async def reshaping_send(message):
            nonlocal held, body
            if message["type"] == "http.response.start" and message["status"] in DOOR_STATUSES:
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                start, held = held, None
                await _send_reshaped(send, start, body)

        await self.app(scope, receive, reshaping_send)


async def _send_reshaped(send, start: dict, body: bytes) -> None:
    error = _door_refusal(start["status"], body)
    if error is not None:
        body = json.dumps(error.body()).encode()
        headers = [(name, value) for name, value in start["headers"] if name.lower() not in (b"content-length",)]
        start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
    await send(start)
    await send({"type": "http.response.body", "body": body})


def _door_refusal(status: int, body: bytes) -> APIError | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(data, dict) and isinstance(data.get("detail"), str) and isinstance(data.get("error"), str)):
        return None  # not the door's: the service's own answer
    if status == 401:
        return unauthorized()
    if status == 413:
        return APIError(413, data["detail"], code="request_too_large")
    return APIError(429, data["detail"], type="rate_limit_error", code="too_many_failed_keys")


# ----------------------------------------------------------------------------- at Serve's proxy


def proxy_middlewares() -> list:
    """The door for Ray Serve's HTTP proxy (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names
    this): keys and sizes checked as the proxy receives a request, before it routes the request or
    queues a byte of its body for a replica. Settings from ``$IMAGEEDIT_R1_SERVE_DOOR``; without
    digests there, keys from ``$IMAGEEDIT_R1_API_KEYS``."""
    settings = json.loads(os.environ.get(DOOR_ENV) or "{}")
    digests = settings.get("key_digests") or [key_digest(key) for key in read_api_keys(None)]
    return door_middlewares(digests, settings.get("upload_bytes") or UploadLimits().max_bytes)


def proxy_door_environment(key_digests: Iterable[str], upload_bytes: int) -> dict[str, str]:
    """The variables that put the door in a new local Ray instance's Serve proxy."""
    return {PROXY_CALLBACK_ENV: PROXY_CALLBACK,
            DOOR_ENV: json.dumps({"key_digests": list(key_digests), "upload_bytes": int(upload_bytes)})}
