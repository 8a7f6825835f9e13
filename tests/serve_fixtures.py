"""What the service's tests share: pipelines to serve, a key, images, and a raw HTTP upload.

The sleepy pipeline's agents ask a fake OpenAI server on 127.0.0.1 (``python -m
imageedit_r1.testing``'s replies, in kind) and its editor is the sleepy stand-in: plans are real
and fast, edits take ``IMAGEEDIT_R1_SLEEPY_SECONDS``.
"""

from __future__ import annotations

import io
import select
import socket
import time

from PIL import Image

from imageedit_r1.serve.front_door import key_digest

KEY = "sk-imageedit-r1-test-key-0123456789"
DIGESTS = (key_digest(KEY),)
SLEEPY_EDITOR = "imageedit_r1.testing.sleepy_editor:SleepyEditor"


def sleepy_pipeline(agents_url: str, **changes) -> dict:
    """A pipeline config: agents on the fake OpenAI server at ``agents_url`` (…/v1), the sleepy editor."""
    agent = {"backend": "openai", "model": "fake-model", "base_url": agents_url, "retry": {"attempts": 1},
             "timeout": 30}
    return {"mode": "single-turn", "decomposer": agent, "editor": {"name": SLEEPY_EDITOR},
            "on_decompose_failure": "keywords", "on_sequence_failure": "template", **changes}


def fake_agents():
    """A fake OpenAI chat server answering each agent's prompt in kind (a context manager)."""
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    return fake_openai_server(lambda request: reply_in_kind(openai_text(request)))


def png_bytes(size: tuple[int, int] = (97, 61), seed: int = 0) -> bytes:
    from imageedit_r1.sample_images import sample_image

    buffer = io.BytesIO()
    sample_image("portrait", size, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(b64: str) -> Image.Image:
    import base64

    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def upload_until_answered(port: int, path: str, total: int, *, key: str = KEY, chunked: bool = False,
                          chunk: int = 64 * 1024, pause: float = 0.02, limit_s: float = 60.0) -> tuple[int, bytes]:
    """POST a ``total``-byte body to ``path`` at the pace of ``chunk`` bytes per ``pause`` seconds,
    watching for an answer after each chunk; return (bytes sent when the answer came, the answer).
    The body opens a multipart image part, so the form parser reads on. The answer is b"" when the
    server closed without one or the whole body went out first."""
    headers = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {key}",
               "Content-Type: multipart/form-data; boundary=xxxx"]
    headers.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        part = (b'--xxxx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        deadline = time.monotonic() + limit_s
        while sent < total and time.monotonic() < deadline:
            if select.select([sock], [], [], pause)[0]:
                answer = _read_answer(sock)
                break
            size = min(chunk, total - sent)
            data = part[:size] + b"x" * (size - len(part[:size])) if sent == 0 else b"x" * size
            try:
                sock.sendall(f"{size:x}\r\n".encode() + data + b"\r\n" if chunked else data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += size
        if not answer and select.select([sock], [], [], 10)[0]:
            answer = _read_answer(sock)
    return sent, answer


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _content_length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0
