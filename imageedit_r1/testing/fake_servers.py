"""Loopback HTTP servers that speak just enough of the OpenAI and Gemini REST APIs for tests.

The real ``openai`` and ``google-genai`` clients are pointed at these servers, so tests exercise
the SDKs' own request encoding, response parsing and error classes, with no network.

    with fake_openai_server(lambda req: "hello", faults=["429", "500"]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        ...
        assert len(server.requests) == 3          # two faulted attempts, then the answer

``FakeServer`` is generic: other modules add their own routes (``add_route``), e.g. an
``/v1/images/edits`` endpoint; ``RecordedRequest.multipart()`` reads multipart form uploads.

Faults, applied per request before routing, in arrival order (a list) or decided per request
(a callable returning a fault or None):
``"429"`` (rate limited, with ``Retry-After: 0``), ``"500"``/``"502"``/``"503"``/``"504"``,
``"timeout"`` (hold the request without answering), ``"disconnect"`` (close without answering),
``"malformed"`` (200 with a truncated JSON body).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qs, urlsplit

FAULTS = ("429", "500", "502", "503", "504", "timeout", "disconnect", "malformed")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any = None  # the parsed body when it is JSON, else None
    fault: str | None = None  # the fault this request was answered with, if any

    def multipart(self) -> dict[str, list[MultipartField]]:
        """Fields of a ``multipart/form-data`` body, by name (a name may repeat, e.g. ``image[]``)."""
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ValueError(f"not a multipart request (content-type {content_type!r})")
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields: dict[str, list[MultipartField]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields.setdefault(name, []).append(
                MultipartField(
                    name=name,
                    filename=part.get_filename(),
                    content_type=part.get_content_type(),
                    data=part.get_payload(decode=True) or b"",
                )
            )
        return fields


@dataclass
class MultipartField:
    name: str
    filename: str | None
    content_type: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = b""  # bytes, str, or anything JSON-serialisable
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode("utf-8")
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(self.body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        return data, headers


def error_response(status: int, message: str, *, status_name: str = "", headers: dict | None = None) -> FakeResponse:
    """An error body both SDKs read: OpenAI's ``error.message/type`` and Google's ``error.code/status``."""
    body = {"error": {"code": status, "message": message, "type": status_name or "error", "status": status_name}}
    return FakeResponse(status, body, headers or {})


Fault = Union[str, None]
FaultPlan = Union[Sequence[Fault], Callable[[RecordedRequest], Fault], None]
Handler = Callable[[RecordedRequest, "re.Match[str]"], Any]

_STATUS_NAMES = {
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 (a free port), used as a context manager.

    ``latency`` seconds are added before every answer; ``hang_seconds`` is how long a
    ``"timeout"`` fault holds a request (the client should give up first). Errors raised by a
    route handler are answered with a 500 and re-raised when the server stops, so a broken
    test fake never hides behind the client's retries.
    """

    def __init__(
        self,
        *,
        faults: FaultPlan = None,
        latency: float = 0.0,
        hang_seconds: float = 10.0,
        raise_handler_errors: bool = True,
        port: int = 0,
    ) -> None:
        self.port = int(port)  # 0: a free port chosen at start
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults = faults
        self._fault_offset = 0
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.raise_handler_errors = raise_handler_errors
        self.handler_errors: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -----------------------------------------------------------------------
    def add_route(self, method: str, path_regex: str, handler: Handler) -> FakeServer:
        """``handler(request, match)`` returns a FakeResponse, or a body (dict/list/str/bytes) for a 200."""
        self._routes.append((method.upper(), re.compile(path_regex), handler))
        return self

    def set_faults(self, faults: FaultPlan) -> None:
        """Replace the fault plan; a list is counted from the next request on."""
        with self._lock:
            self._faults = faults
            self._fault_offset = len(self._requests)

    # -- inspection --------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if pattern.search(r.path)]

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
                pass

            def _serve(self) -> None:
                server._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is None and self.raise_handler_errors and self.handler_errors:
            raise AssertionError("fake server handler failed:\n" + "\n".join(self.handler_errors))

    # -- request handling --------------------------------------------------------------------
    def _read_body(self, http: BaseHTTPRequestHandler) -> bytes:
        if http.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(http.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    http.rfile.readline()
                    return b"".join(chunks)
                chunks.append(http.rfile.read(size))
                http.rfile.readline()
        length = int(http.headers.get("Content-Length") or 0)
        return http.rfile.read(length) if length else b""

    def _next_fault(self, request: RecordedRequest, index: int) -> Fault:
        plan = self._faults
        if plan is None:
            return None
        if callable(plan):
            return plan(request)
        position = index - self._fault_offset
        return plan[position] if 0 <= position < len(plan) else None

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        body = self._read_body(http)
        headers = {name.lower(): value for name, value in http.headers.items()}
        parsed = None
        if body and "json" in headers.get("content-type", ""):
            try:
                parsed = json.loads(body)
            except json.JSONDecodeError:
                parsed = None
        request = RecordedRequest(http.command, parts.path, parse_qs(parts.query), headers, body, parsed)
        with self._lock:
            index = len(self._requests)
            self._requests.append(request)
        try:
            fault = self._next_fault(request, index)
        except Exception:  # noqa: BLE001 - a broken fault plan is a test bug: report it
            self.handler_errors.append(traceback.format_exc())
            fault = "500"
        request.fault = fault
        if self.latency:
            self._stopping.wait(self.latency)
        if fault is not None:
            self._answer_fault(http, fault)
            return
        response = self._route(request)
        self._write(http, response)

    def _route(self, request: RecordedRequest) -> FakeResponse:
        for method, pattern, handler in self._routes:
            if method != request.method:
                continue
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            try:
                result = handler(request, match)
            except Exception as exc:  # noqa: BLE001 - also re-raised on stop
                self.handler_errors.append(traceback.format_exc())
                return error_response(500, f"fake server handler raised {type(exc).__name__}: {exc}")
            return result if isinstance(result, FakeResponse) else FakeResponse(200, result)
        return error_response(404, f"no route for {request.method} {request.path}", status_name="NOT_FOUND")

    def _answer_fault(self, http: BaseHTTPRequestHandler, fault: str) -> None:
        if fault == "timeout":
            self._stopping.wait(self.hang_seconds)
            http.close_connection = True
            return
        if fault == "disconnect":
            http.close_connection = True
            return
        if fault == "malformed":
            self._write(http, FakeResponse(200, b'{"choices": [{"index": 0, "mess', {"Content-Type": "application/json"}))
            return
        if fault.isdigit():
            status = int(fault)
            headers = {"Retry-After": "0"} if status == 429 else {}
            name = _STATUS_NAMES.get(status, "ERROR")
            self._write(http, error_response(status, f"injected fault {status}", status_name=name, headers=headers))
            return
        raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, response: FakeResponse) -> None:
        data, headers = response.encoded()
        try:
            http.send_response(response.status)
            for name, value in headers.items():
                http.send_header(name, value)
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            http.close_connection = True  # the client gave up (its own timeout)


# ----------------------------------------------------------------------------- scripted replies


@dataclass
class ScriptedReply:
    """A reply with more than text: a refusal or a blocked/filtered answer.

    OpenAI: ``refusal`` fills ``message.refusal``; ``finish_reason`` (e.g. ``"content_filter"``).
    Gemini: ``block_reason`` fills ``promptFeedback.blockReason`` (no candidates);
    ``finish_reason`` (e.g. ``"SAFETY"``) ends the candidate; ``thought`` is sent first as a part
    marked ``thought: true`` (a thinking model's summary, which is not the answer).
    """

    text: str | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    block_reason: str | None = None
    thought: str | None = None


ReplyFn = Callable[[Any], Union[str, ScriptedReply, FakeResponse]]


def scripted(*replies: str | ScriptedReply | FakeResponse) -> ReplyFn:
    """A reply function answering the given replies in turn (thread-safe); the last one repeats."""
    if not replies:
        raise ValueError("scripted() needs at least one reply")
    lock = threading.Lock()
    position = [0]

    def reply(_request_json: Any):
        with lock:
            index = min(position[0], len(replies) - 1)
            position[0] += 1
        return replies[index]

    return reply


def _approx_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


# ----------------------------------------------------------------------------- OpenAI


def openai_message_parts(request_json: dict) -> list[tuple[str, Any]]:
    """(role, part) for every part of every message: parts are str or a decoded PIL image."""
    out: list[tuple[str, Any]] = []
    for message in request_json.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            out.append((message["role"], content))
            continue
        for part in content or []:
            if part.get("type") == "text":
                out.append((message["role"], part["text"]))
            elif part.get("type") == "image_url":
                out.append((message["role"], decode_data_url(part["image_url"]["url"])))
    return out


def openai_images(request_json: dict) -> list:
    """The images of an OpenAI chat request, decoded from their base64 data URLs."""
    return [part for _, part in openai_message_parts(request_json) if not isinstance(part, str)]


def openai_text(request_json: dict) -> str:
    """All text of an OpenAI chat request, one part a line."""
    return "\n".join(part for _, part in openai_message_parts(request_json) if isinstance(part, str))


def decode_data_url(url: str):
    from PIL import Image

    match = re.fullmatch(r"data:(image/[\w.+-]+);base64,(.*)", url, re.DOTALL)
    if match is None:
        raise ValueError(f"not a base64 image data URL: {url[:60]!r}")
    image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
    image.load()
    return image


Snapshots = Union[dict[str, str], Callable[[str], str], None]


def _openai_completion(request: RecordedRequest, reply: str | ScriptedReply, model: str,
                       snapshots: Snapshots = None) -> dict:
    if isinstance(reply, str):
        reply = ScriptedReply(text=reply)
    text = reply.text
    if text is None and reply.refusal is None and reply.finish_reason is None:
        text = ""
    prompt_tokens = _approx_tokens(openai_text(request.json or {}))
    message = {"role": "assistant", "content": text, "refusal": reply.refusal}
    asked = (request.json or {}).get("model", model)
    # The service reports the snapshot it served: an alias (gpt-4o) answers as a dated model.
    served = snapshots(asked) if callable(snapshots) else (snapshots or {}).get(asked, asked)
    completion = _approx_tokens(text or "")
    return {
        "id": f"chatcmpl-fake-{int(time.time() * 1e6)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served,
        "system_fingerprint": f"fp_{abs(hash(served)) % 10**10:010d}",
        "choices": [
            {"index": 0, "message": message, "finish_reason": reply.finish_reason or "stop", "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        },
    }


def add_openai_chat_route(server: FakeServer, reply_fn: ReplyFn, *, model: str = "fake-model",
                          snapshots: Snapshots = None) -> FakeServer:
    """Serve ``POST /v1/chat/completions`` (and ``GET /v1/models``) from ``reply_fn(request_json)``.

    ``snapshots`` maps the model asked for onto the one the answer reports (a dict, or a callable
    that can change its mind between calls, as an alias does between days); default: as asked."""

    def chat(request: RecordedRequest, _match):
        if not isinstance(request.json, dict) or "messages" not in request.json:
            return error_response(400, "body must be a JSON object with 'messages'", status_name="invalid_request_error")
        reply = reply_fn(request.json)
        if isinstance(reply, FakeResponse):
            return reply
        return _openai_completion(request, reply, model, snapshots)

    def models(_request, _match):
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "fake"}]}

    server.add_route("POST", r"/v1/chat/completions", chat)
    server.add_route("GET", r"/v1/models", models)
    return server


def fake_openai_server(
    reply_fn: ReplyFn, *, model: str = "fake-model", faults: FaultPlan = None, latency: float = 0.0,
    snapshots: Snapshots = None, **server_options
) -> FakeServer:
    """A FakeServer answering OpenAI chat completions; use it as a context manager."""
    server = FakeServer(faults=faults, latency=latency, **server_options)
    return add_openai_chat_route(server, reply_fn, model=model, snapshots=snapshots)


# ----------------------------------------------------------------------------- Gemini


def _b64decode_any(data: str) -> bytes:
    """Standard or URL-safe base64 (google-genai sends URL-safe), padding optional."""
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)


def gemini_parts(request_json: dict) -> list[tuple[str, Any]]:
    """(role, part) for every part of every content: parts are str or a decoded PIL image."""
    from PIL import Image

    out: list[tuple[str, Any]] = []
    for content in request_json.get("contents", []):
        for part in content.get("parts", []):
            if "text" in part:
                out.append((content.get("role", "user"), part["text"]))
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                image = Image.open(io.BytesIO(_b64decode_any(inline["data"])))
                image.load()
                out.append((content.get("role", "user"), image))
    return out


def gemini_images(request_json: dict) -> list:
    return [part for _, part in gemini_parts(request_json) if not isinstance(part, str)]


def gemini_text(request_json: dict) -> str:
    return "\n".join(part for _, part in gemini_parts(request_json) if isinstance(part, str))


# Gemini chat models that think unless told not to, and how much a fake one thinks when free to.
THINKING_PREFIXES = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3")
FREE_THOUGHTS = 1500


def gemini_thoughts(model: str, request_json: dict, free: int | Callable[[], int] | None = None) -> int | FakeResponse:
    """Tokens a fake Gemini model thinks for this request, as the documented rules have it: 2.5 Flash
    and Pro and Gemini 3 think by default (``free`` tokens), Flash-Lite only when given a budget;
    ``thinkingConfig.thinkingBudget`` bounds it (0: off, refused by 2.5 Pro)."""
    name = model.lower()
    lite = name.startswith("gemini-2.5-flash-lite")
    thinks = name.startswith(THINKING_PREFIXES) and "image" not in name
    free = FREE_THOUGHTS if free is None else (free() if callable(free) else free)
    # The service reads proto JSON: either spelling of a field (google-genai sends thinking_budget).
    config = (request_json.get("generationConfig") or {}).get("thinkingConfig") or {}
    budget = config.get("thinkingBudget", config.get("thinking_budget"))
    if budget == 0 and name.startswith(("gemini-2.5-pro", "gemini-3")):
        return error_response(400, "Budget 0 is invalid. This model only works in thinking mode.",
                              status_name="INVALID_ARGUMENT")
    if not thinks or budget == 0 or (lite and budget is None):
        return 0
    return free if budget in (None, -1) else min(free, int(budget))


def _gemini_response(request: RecordedRequest, reply: str | ScriptedReply, model: str,
                     free_thoughts: int | Callable[[], int] | None = None) -> dict | FakeResponse:
    if isinstance(reply, str):
        reply = ScriptedReply(text=reply)
    request_json = request.json or {}
    prompt_tokens = _approx_tokens(gemini_text(request_json))
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens,
                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}
    body: dict[str, Any] = {"modelVersion": model, "usageMetadata": usage, "responseId": f"fake-{time.time_ns()}"}
    if reply.block_reason:
        body["promptFeedback"] = {"blockReason": reply.block_reason, "blockReasonMessage": "blocked by a fake filter"}
        usage["totalTokenCount"] = prompt_tokens
        return body
    thoughts = gemini_thoughts(model, request_json, free_thoughts)
    if isinstance(thoughts, FakeResponse):
        return thoughts
    # Thinking counts against maxOutputTokens: what is left is the answer's.
    limit = int((request_json.get("generationConfig") or {}).get("maxOutputTokens") or 65536)
    thoughts = min(thoughts, limit)
    text, finish = reply.text, reply.finish_reason or "STOP"
    if text is not None and thoughts + _approx_tokens(text) > limit:
        kept = limit - thoughts
        text, finish = (" ".join(text.split()[:kept]) or None), "MAX_TOKENS"
    candidate: dict[str, Any] = {"index": 0, "finishReason": finish}
    parts = [{"text": reply.thought, "thought": True}] if reply.thought else []
    if text is not None:
        parts.append({"text": text})
    candidate["content"] = {"role": "model", "parts": parts} if parts else {"role": "model"}
    if reply.finish_reason and reply.finish_reason not in ("STOP", "MAX_TOKENS"):
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
    body["candidates"] = [candidate]
    completion = _approx_tokens(text or "")
    usage["candidatesTokenCount"] = completion
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts  # billed as output, reported apart from the answer
    usage["totalTokenCount"] = prompt_tokens + completion + thoughts
    return body


def add_gemini_route(server: FakeServer, reply_fn: ReplyFn, *, model: str = "gemini-fake",
                     free_thoughts: int | Callable[[], int] | None = None) -> FakeServer:
    """Serve ``POST /{version}/models/{model}:generateContent`` from ``reply_fn(request_json)``.

    Thinking models think ``free_thoughts`` tokens (default ``FREE_THOUGHTS``; a callable is asked
    at each request) unless a budget
    bounds it (``gemini_thoughts``); the usage carries ``thoughtsTokenCount`` apart from
    ``candidatesTokenCount``, as the service reports it."""

    def generate(request: RecordedRequest, match):
        if not isinstance(request.json, dict) or "contents" not in request.json:
            return error_response(400, "body must be a JSON object with 'contents'", status_name="INVALID_ARGUMENT")
        reply = reply_fn(request.json)
        if isinstance(reply, FakeResponse):
            return reply
        return _gemini_response(request, reply, match.group("model"), free_thoughts)

    server.add_route("POST", r"/(?P<version>v1(?:beta|alpha)?)/models/(?P<model>[^/:]+):generateContent", generate)
    return server


def fake_gemini_server(
    reply_fn: ReplyFn, *, model: str = "gemini-fake", faults: FaultPlan = None, latency: float = 0.0,
    free_thoughts: int | Callable[[], int] | None = None, **server_options
) -> FakeServer:
    """A FakeServer answering Gemini ``generateContent``; use it as a context manager."""
    server = FakeServer(faults=faults, latency=latency, **server_options)
    return add_gemini_route(server, reply_fn, model=model, free_thoughts=free_thoughts)
