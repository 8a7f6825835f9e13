"""The gemini backend through the real ``google-genai`` client against a loopback fake server."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("google.genai")

from PIL import Image  # noqa: E402

from imageedit_r1.backends import BackendError, ChatMessage, RefusalError, build_backend  # noqa: E402
from imageedit_r1.backends.gemini_backend import gemini_schema  # noqa: E402
from imageedit_r1.retry import RetriesExhausted, RetryPolicy  # noqa: E402
from imageedit_r1.testing.fake_servers import (  # noqa: E402
    ScriptedReply,
    error_response,
    fake_gemini_server,
    gemini_parts,
)

KEY = "AIza-test-DO-NOT-LOG-77e1"
FAST = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, jitter=0.0)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def backend_for(server, **options):
    options.setdefault("retry", FAST)
    return build_backend("gemini", model="gemini-test", base_url=server.url, **options)


def pattern_image(size=(13, 7)) -> Image.Image:
    width, height = size
    data = bytes((x * 53 + y * 29 + c * 7) % 256 for y in range(height) for x in range(width) for c in range(3))
    return Image.frombytes("RGB", size, data)


def test_images_round_trip_as_inline_data_with_system_instruction():
    first, second = pattern_image(), pattern_image((5, 31)).convert("L")
    with fake_gemini_server(lambda body: "ok") as server:
        reply = backend_for(server).chat(
            [ChatMessage("system", "Be brief."), ChatMessage("user", ["One", first, "two", second])]
        )
    assert reply.text == "ok" and reply.finish_reason == "stop"
    request = server.requests[0]
    assert request.path.endswith("/models/gemini-test:generateContent")
    assert request.headers["x-goog-api-key"] == KEY
    body = request.json
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    parts = [part for _, part in gemini_parts(body)]
    assert [p if isinstance(p, str) else "<img>" for p in parts] == ["One", "<img>", "two", "<img>"]
    assert parts[1].tobytes() == first.tobytes()
    assert parts[3].size == second.size and parts[3].tobytes() == second.convert("RGB").tobytes()


def test_json_schema_sets_mime_type_and_response_schema():
    schema = {
        "type": "object",
        "properties": {"subjects": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["subjects"],
        "additionalProperties": False,
    }
    with fake_gemini_server(lambda body: '{"subjects": ["car"]}') as server:
        reply = backend_for(server).chat(
            [ChatMessage("user", "x")], json_schema=schema, temperature=0.0, max_tokens=64, seed=3
        )
    assert reply.text == '{"subjects": ["car"]}'
    config = server.requests[0].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    sent = config["responseSchema"]
    assert sent["type"] == "OBJECT" and sent["required"] == ["subjects"]
    assert sent["properties"]["subjects"]["type"] == "ARRAY"
    assert sent["properties"]["subjects"]["items"]["type"] == "STRING"
    assert not any("additional" in key.lower() for key in sent)
    assert (config["maxOutputTokens"], config["seed"], config["temperature"]) == (64, 3, 0.0)


def test_gemini_schema_keeps_property_order_and_drops_unsupported_keywords():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "x",
        "type": "object",
        "properties": {"b": {"type": "string"}, "a": {"type": "array", "items": {"type": "string"}}},
        "additionalProperties": False,
    }
    assert gemini_schema(schema) == {
        "type": "object",
        "properties": {"b": {"type": "string"}, "a": {"type": "array", "items": {"type": "string"}}},
        "propertyOrdering": ["b", "a"],
    }


@pytest.mark.parametrize("faults", [["429"], ["500", "503"], ["disconnect", "malformed"]])
def test_transient_failures_are_retried_until_success(faults):
    with fake_gemini_server(lambda body: "fine", faults=faults) as server:
        assert backend_for(server).chat([ChatMessage("user", "hi")]).text == "fine"
    assert len(server.requests) == len(faults) + 1


def test_timeouts_are_retried_and_bounded():
    with fake_gemini_server(lambda body: "never", faults=lambda request: "timeout", hang_seconds=5) as server:
        backend = backend_for(server, timeout=0.3, retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        with pytest.raises(RetriesExhausted, match="timed out"):
            backend.chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 2


def test_bad_request_is_permanent():
    with fake_gemini_server(lambda body: error_response(400, "bad schema", status_name="INVALID_ARGUMENT")) as server:
        with pytest.raises(BackendError, match="400"):
            backend_for(server).chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 1


def test_blocked_prompt_raises_refusal():
    with fake_gemini_server(lambda body: ScriptedReply(block_reason="SAFETY")) as server:
        with pytest.raises(RefusalError, match=r"prompt was blocked \(SAFETY\)"):
            backend_for(server).chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 1


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT"])
def test_answer_stopped_for_safety_raises_refusal(reason):
    with fake_gemini_server(lambda body: ScriptedReply(text=None, finish_reason=reason)) as server:
        with pytest.raises(RefusalError, match=rf"answer was stopped \({reason}\).*DANGEROUS"):
            backend_for(server).chat([ChatMessage("user", "hi")])


def test_truncated_answer_is_returned_with_length_finish_reason():
    with fake_gemini_server(lambda body: ScriptedReply(text='{"a": [', finish_reason="MAX_TOKENS")) as server:
        reply = backend_for(server).chat([ChatMessage("user", "hi")])
    assert (reply.text, reply.finish_reason) == ('{"a": [', "length")


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(BackendError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        build_backend("gemini", model="gemini-test")


def test_api_key_never_reaches_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    with fake_gemini_server(lambda body: "x", faults=lambda request: "503") as server:
        backend = backend_for(server, retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        with pytest.raises(RetriesExhausted) as info:
            backend.chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 2
    assert KEY not in caplog.text
    assert KEY not in str(info.value) and KEY not in repr(backend)
