"""The openai backend through the real ``openai`` client against a loopback fake server."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("openai")

from PIL import Image  # noqa: E402

from imageedit_r1.backends import BackendError, ChatMessage, RefusalError, build_backend  # noqa: E402
from imageedit_r1.images import to_rgb  # noqa: E402
from imageedit_r1.retry import RetriesExhausted, RetryPolicy  # noqa: E402
from imageedit_r1.testing.fake_servers import (  # noqa: E402
    FakeResponse,
    ScriptedReply,
    error_response,
    fake_openai_server,
    openai_images,
    openai_message_parts,
)

KEY = "sk-test-DO-NOT-LOG-4f9a1c"
FAST = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, jitter=0.0)


def pattern_image(size=(17, 11), mode="RGB") -> Image.Image:
    width, height = size
    data = bytes((x * 37 + y * 11 + c * 91) % 256 for y in range(height) for x in range(width) for c in range(3))
    image = Image.frombytes("RGB", size, data)
    return image.convert(mode) if mode != "RGB" else image


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def backend_for(server, **options):
    options.setdefault("retry", FAST)
    return build_backend("openai", model="gpt-test", base_url=server.url + "/v1", **options)


def test_images_round_trip_as_base64_data_urls_and_text_keeps_order():
    first = pattern_image()
    second = pattern_image((9, 23), mode="RGBA")
    with fake_openai_server(lambda body: "done") as server:
        backend = backend_for(server)
        reply = backend.chat(
            [
                ChatMessage("system", "You are terse."),
                ChatMessage("user", ["Before image.", first, "Between.", second, "After."]),
            ]
        )
    assert reply.text == "done"
    assert reply.model == "gpt-test"
    assert reply.finish_reason == "stop"
    assert reply.prompt_tokens > 0 and reply.completion_tokens == 1
    body = server.requests[0].json
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    for part in body["messages"][1]["content"]:
        if part["type"] == "image_url":
            assert part["image_url"]["url"].startswith("data:image/png;base64,")
    parts = [part for role, part in openai_message_parts(body) if role == "user"]
    assert [p if isinstance(p, str) else "<img>" for p in parts] == ["Before image.", "<img>", "Between.", "<img>", "After."]
    assert parts[1].size == first.size and parts[1].tobytes() == first.tobytes()
    # RGBA arrives as the RGB the model should see (transparency composited onto white).
    assert parts[3].mode == "RGB" and parts[3].tobytes() == to_rgb(second).tobytes()


def test_json_schema_becomes_a_strict_response_format_and_options_are_forwarded():
    schema = {
        "type": "object",
        "properties": {"actions": {"type": "array", "items": {"type": "string"}}},
        "required": ["actions"],
        "additionalProperties": False,
    }
    with fake_openai_server(lambda body: '{"actions": ["Removal"]}') as server:
        reply = backend_for(server).chat(
            [ChatMessage("user", "decompose")], json_schema=schema, schema_name="decomposition",
            temperature=0.3, max_tokens=77, seed=5,
        )
    assert reply.text == '{"actions": ["Removal"]}'
    request = server.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "decomposition", "strict": True, "schema": schema},
    }
    assert (body["temperature"], body["max_completion_tokens"], body["seed"], body["model"]) == (0.3, 77, 5, "gpt-test")


def test_structured_output_off_sends_no_response_format():
    with fake_openai_server(lambda body: "{}") as server:
        backend = backend_for(server, structured_output=False)
        assert backend.supports_json_schema is False
        backend.chat([ChatMessage("user", "x")], json_schema={"type": "object"})
    assert "response_format" not in server.requests[0].json


@pytest.mark.parametrize("faults", [["429"], ["500", "503"], ["502", "disconnect", "malformed"]])
def test_transient_failures_are_retried_until_success(faults):
    with fake_openai_server(lambda body: "ok", faults=faults) as server:
        assert backend_for(server).chat([ChatMessage("user", "hi")]).text == "ok"
    assert len(server.requests) == len(faults) + 1
    assert [r.fault for r in server.requests] == [*faults, None]


def test_timeouts_are_retried():
    with fake_openai_server(lambda body: "late but fine", faults=["timeout"], hang_seconds=5) as server:
        backend = backend_for(server, timeout=0.5)
        assert backend.chat([ChatMessage("user", "hi")]).text == "late but fine"
    assert len(server.requests) == 2


def test_retries_are_bounded_then_exhausted():
    with fake_openai_server(lambda body: "never", faults=lambda request: "429") as server:
        backend = backend_for(server, retry=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0))
        with pytest.raises(RetriesExhausted) as info:
            backend.chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 3
    assert info.value.attempts == 3
    assert "429" in str(info.value)


@pytest.mark.parametrize(
    ("status", "code"), [(400, "invalid_request_error"), (401, "invalid_api_key"), (429, "insufficient_quota")]
)
def test_permanent_errors_are_not_retried(status, code):
    def reply(_body):
        response = error_response(status, f"permanent problem {status}")
        response.body["error"]["code"] = code
        return response

    with fake_openai_server(reply) as server:
        with pytest.raises(BackendError, match=str(status)):
            backend_for(server).chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 1


def test_refusal_raises_a_clear_error():
    refusal = ScriptedReply(refusal="I can't help with editing this image.")
    with fake_openai_server(lambda body: refusal) as server:
        with pytest.raises(RefusalError, match="refused: I can't help with editing this image"):
            backend_for(server).chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 1


def test_content_filter_raises_a_clear_error():
    filtered = ScriptedReply(text=None, finish_reason="content_filter")
    with fake_openai_server(lambda body: filtered) as server:
        with pytest.raises(RefusalError, match="content filter"):
            backend_for(server).chat([ChatMessage("user", "hi")])


def test_missing_key_is_a_clear_error_for_openai_but_optional_for_a_local_server(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        build_backend("openai", model="gpt-test")
    with fake_openai_server(lambda body: "served") as server:
        backend = build_backend("openai", model="local", base_url=server.url + "/v1", retry=FAST)
        assert backend.chat([ChatMessage("user", "hi")]).text == "served"
    assert KEY not in server.requests[0].headers["authorization"]


def test_api_key_never_reaches_logs_errors_or_repr(caplog):
    caplog.set_level(logging.DEBUG)
    with fake_openai_server(lambda body: FakeResponse(200, b"not json"), faults=["429", "500"]) as server:
        backend = backend_for(server, retry=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0))
        with pytest.raises(RetriesExhausted) as info:
            backend.chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 3
    assert caplog.records, "expected retry warnings to be logged"
    assert KEY not in caplog.text
    assert KEY not in str(info.value) and KEY not in repr(info.value.last_error)
    assert KEY not in repr(backend)


def test_concurrent_calls_share_one_backend():
    with fake_openai_server(lambda body: body["messages"][0]["content"].upper()) as server:
        backend = backend_for(server)
        with ThreadPoolExecutor(max_workers=4) as pool:
            replies = list(pool.map(lambda i: backend.chat([ChatMessage("user", f"req{i}")]).text, range(12)))
    assert replies == [f"REQ{i}" for i in range(12)]
    assert len(server.requests) == 12


def test_build_backend_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown chat backend 'nope'"):
        build_backend("nope")
    with pytest.raises(ValueError, match="bad options for chat backend 'openai'"):
        build_backend("openai", model="x", no_such_option=1)


def test_retry_policy_from_a_config_dict():
    with fake_openai_server(lambda body: "ok", faults=["500", "500"]) as server:
        backend = build_backend(
            "openai", model="m", base_url=server.url + "/v1", retry={"attempts": 2, "base_delay": 0.0}
        )
        with pytest.raises(RetriesExhausted):
            backend.chat([ChatMessage("user", "hi")])
    assert len(server.requests) == 2


def test_image_budget_resizes_in_the_client_with_qwens_arithmetic():
    """A vLLM server then sees the token count the agent was trained on, whatever its own bounds."""
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    photo = Image.new("RGB", (4032, 3024), (30, 120, 200))
    banner = Image.new("RGB", (4600, 20), (200, 30, 30))  # Qwen's processor would refuse it as is
    with fake_openai_server(lambda body: "done") as server:
        backend_for(server, image_budget="auto").chat([ChatMessage("user", ["Edit.", photo, banner])])
        backend_for(server).chat([ChatMessage("user", ["Edit.", photo])])  # default: sent as is
    fitted, padded = openai_images(server.requests[0].json)
    assert fitted.size == DEFAULT_BUDGET.resized_size(4032, 3024) == (1148, 840)
    assert padded.size == DEFAULT_BUDGET.fit(4600, 20).size and max(padded.size) / min(padded.size) < 200
    (as_is,) = openai_images(server.requests[1].json)
    assert as_is.size == (4032, 3024)
    with pytest.raises(BackendError, match="above max_pixels"):
        backend_for(server, image_budget={"min_pixels": 2_000_000, "max_pixels": 1_000_000})


def test_pipeline_gives_a_served_decomposer_the_image_budget():
    from imageedit_r1.image_budget import DEFAULT_BUDGET
    from imageedit_r1.pipeline import ImageEditR1
    from imageedit_r1.pipeline.config import AgentConfig

    pipeline = ImageEditR1()
    served = pipeline._backend("decomposition", AgentConfig(backend="openai", model="imageedit-r1",
                                                           base_url="http://127.0.0.1:9/v1"))
    assert served.image_budget == DEFAULT_BUDGET
    hosted = pipeline._backend("decomposition", AgentConfig(backend="openai", model="gpt-4o",
                                                           base_url="http://127.0.0.1:9/v1",
                                                           options={"image_budget": "off"}))
    assert hosted.image_budget is None


def test_a_decomposition_cut_off_at_max_tokens_says_so_and_the_same_ask_is_not_repeated():
    """A cut-off answer is asked again only by the repair that changes the ask (here: under the JSON
    schema); the same ask with the same room would be cut off again. The error names max_tokens."""
    from imageedit_r1.agents.decomposer import Decomposer, DecompositionError

    cut = ScriptedReply(text="<think>The coat is on the left, the car behind it, and", finish_reason="length")
    with fake_openai_server(lambda body: cut) as server:
        decomposer = Decomposer(backend_for(server), max_tokens=16, reasks=3, repair="schema")
        with pytest.raises(DecompositionError, match="cut off at max_tokens=16 .*raise max_tokens") as info:
            decomposer.run(pattern_image(), "recolor the coat")
        asked = server.requests_to(r"/v1/chat/completions")
    assert len(asked) == 2 and info.value.ask_log.asks == 2  # the tags ask, then the schema repair once
    assert "response_format" not in asked[0].json and "response_format" in asked[1].json
