"""chat_batch on the OpenAI-compatible and Gemini backends: the real SDKs against loopback fakes send
the conversations concurrently (at most max_concurrency in flight), answers come back in order, and
a conversation the server rejects fails alone."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("openai")
pytest.importorskip("google.genai")

from imageedit_r1.backends import BackendError, ChatMessage, ChatResponse, build_backend  # noqa: E402
from imageedit_r1.testing.fake_servers import (  # noqa: E402
    error_response,
    fake_gemini_server,
    fake_openai_server,
    gemini_text,
    openai_text,
)


class Counting:
    """A reply function that answers "echo: <last word>" after a pause, counting requests in flight."""

    def __init__(self, read_text):
        self.read_text = read_text
        self.lock = threading.Lock()
        self.in_flight = self.most = 0

    def __call__(self, body):
        text = self.read_text(body)
        if "reject" in text:
            return error_response(400, "this request is malformed", status_name="INVALID_ARGUMENT")
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.2)
        with self.lock:
            self.in_flight -= 1
        return "echo: " + text.split()[-1]


CONVERSATIONS = [[ChatMessage("user", f"item {i}")] for i in range(7)]
CONVERSATIONS[3] = [ChatMessage("user", "reject this")]


def check(replies, reply_fn):
    assert isinstance(replies[3], BackendError) and "malformed" in str(replies[3])
    answered = [reply for index, reply in enumerate(replies) if index != 3]
    assert all(isinstance(reply, ChatResponse) for reply in answered)
    assert [reply.text for reply in answered] == [f"echo: {i}" for i in range(7) if i != 3]
    assert reply_fn.most == 3  # concurrent, never more than max_concurrency


def test_openai_compatible_server_gets_the_batch_concurrently_and_a_rejected_item_fails_alone():
    reply_fn = Counting(openai_text)
    with fake_openai_server(reply_fn) as server:
        backend = build_backend("openai", model="served", base_url=server.url + "/v1", api_key_env=None,
                                retry={"attempts": 1}, max_concurrency=3)
        check(backend.chat_batch(CONVERSATIONS, max_tokens=8), reply_fn)
        assert len(server.requests) == 7


def test_gemini_gets_the_batch_concurrently_and_a_rejected_item_fails_alone(monkeypatch):
    monkeypatch.setenv("FAKE_GEMINI_KEY", "k")
    reply_fn = Counting(gemini_text)
    with fake_gemini_server(reply_fn) as server:
        backend = build_backend("gemini", model="gemini-fake", base_url=server.url, api_key_env="FAKE_GEMINI_KEY",
                                retry={"attempts": 1}, max_concurrency=3)
        check(backend.chat_batch(CONVERSATIONS, max_tokens=8), reply_fn)
