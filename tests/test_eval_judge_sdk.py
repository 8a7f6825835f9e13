"""Judges and the runner through the real openai / google-genai clients against loopback fake servers."""

import re

import pytest
from PIL import Image

from imageedit_r1.agents.judge import JUDGE_SCHEMA, build_judge
from imageedit_r1.endpoints import JudgeConfig, RetryConfig
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import config_for, expected_scores, judge_reply_json, make_benchmark

pytest.importorskip("openai")
pytest.importorskip("google.genai")
fakes = pytest.importorskip("imageedit_r1.testing.fake_servers", reason="needs the loopback fake API servers")

RED, GREEN = Image.new("RGB", (40, 30), (220, 10, 10)), Image.new("RGB", (40, 30), (10, 200, 10))
REQUEST_RE = re.compile(r'\*\*Edit Request:\*\* "(.*)"')


def judge_config(server, backend="openai", **kwargs):
    base_url = server.url if backend == "gemini" else server.url + "/v1"
    options = dict(name=backend, backend=backend, model=f"{backend}-judge-2025-01-01", base_url=base_url,
                   timeout=2.0, retry=RetryConfig(attempts=4, base_delay=0.01, max_delay=0.02))
    options.update(kwargs)
    return JudgeConfig(**options)


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-key-000000")
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key-000000")


def test_openai_judge_request_shape_and_scores():
    with fakes.fake_openai_server(lambda req: '{"reasoning": "ok", "fulfillment": 3, "quality": 2, "preservation": 1}',
                            model="served-gpt") as server:
        judge = build_judge(judge_config(server))
        judgment = judge(RED, GREEN, "make it green")
        body = server.requests[-1].json
    assert (judgment.scores.fulfillment, judgment.scores.quality, judgment.scores.preservation) == (3, 2, 1)
    assert judgment.requested_model == "openai-judge-2025-01-01"
    assert judgment.served_model == "openai-judge-2025-01-01"  # the fake echoes the requested model
    assert judgment.prompt_tokens > 0 and judgment.completion_tokens > 0
    assert body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == JUDGE_SCHEMA
    assert '**Edit Request:** "make it green"' in fakes.openai_text(body)
    original, edited = fakes.openai_images(body)  # the ORIGINAL first, then the EDITED, as the prompt says
    assert original.convert("RGB").getpixel((0, 0)) == (220, 10, 10)
    assert edited.convert("RGB").getpixel((0, 0)) == (10, 200, 10)


def test_gemini_judge_request_shape_and_scores():
    with fakes.fake_gemini_server(lambda req: '{"fulfillment": 4, "quality": 3, "preservation": 2, "reasoning": "x"}') \
            as server:
        judgment = build_judge(judge_config(server, "gemini"))(RED, GREEN, "make it green")
        body = server.requests[-1].json
    assert judgment.scores.total == 9
    assert body["generationConfig"]["temperature"] == 0.0
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseSchema" in body["generationConfig"]
    assert 'make it green' in fakes.gemini_text(body)
    assert [im.convert("RGB").getpixel((0, 0)) for im in fakes.gemini_images(body)] == [(220, 10, 10), (10, 200, 10)]


def test_free_text_reply_from_a_server_without_json_schema():
    reply = "Request Fulfillment: 3/4\nImage Quality: 2/3\nPreservation: 2/3\nThe coat is red."
    with fakes.fake_openai_server(lambda req: reply) as server:
        judgment = build_judge(judge_config(server, "openai", structured=False, api_key_env="NO_SUCH_KEY"))(
            RED, GREEN, "make it green")
        body = server.requests[-1].json
    assert "response_format" not in body
    assert judgment.scores.total == 7 and judgment.scores.parsed_from == "text"


def test_a_python_dict_reply_from_an_open_judge_is_read_with_one_call():
    # vLLM serving an open VLM with structured: false; the model prints a Python dict after thinking.
    reply = ("<think>The sky is red but the hat is missing.</think>\n"
             "{'reasoning': 'Sky done, hat missing.', 'fulfillment': 2, 'quality': 3, 'preservation': 3}")
    with fakes.fake_openai_server(lambda req: reply) as server:
        judgment = build_judge(judge_config(server, "openai", structured=False, api_key_env="NO_SUCH_KEY"))(
            RED, GREEN, "make the sky red and add a hat")
    assert (judgment.scores.fulfillment, judgment.scores.quality, judgment.scores.preservation) == (2, 3, 3)
    assert judgment.calls == 1 and len(server.requests) == 1  # no paid re-ask


def test_a_gemini_judges_thought_summary_is_not_read_as_its_answer():
    reply = fakes.ScriptedReply(thought="Fulfillment: 1? Quality: 0?", text='{"fulfillment": 4, "quality": 3, '
                                '"preservation": 2}')
    with fakes.fake_gemini_server(lambda req: reply) as server:
        judgment = build_judge(judge_config(server, "gemini"))(RED, GREEN, "make it green")
    assert (judgment.scores.fulfillment, judgment.scores.quality, judgment.scores.preservation) == (4, 3, 2)


def test_unreadable_reply_is_asked_again_once_then_fails():
    from imageedit_r1.agents.judge import JudgmentParseError

    with fakes.fake_openai_server(lambda req: "Looks good to me.") as server:
        with pytest.raises(JudgmentParseError):
            build_judge(judge_config(server))(RED, GREEN, "make it green")
        assert len(server.requests) == 2


def _sample_of(text):
    return REQUEST_RE.search(text).group(1)


def test_runner_with_faults_every_item_scored_or_failed_once(tmp_path):
    """429, 500, timeouts and malformed bodies on first attempts; refusals and blocks for some items."""
    seen: dict[str, int] = {}

    def fault_for(request):
        if request.json is None:
            return None
        text = fakes.openai_text(request.json) if "messages" in request.json else fakes.gemini_text(request.json)
        key = _sample_of(text) + request.path
        seen[key] = seen.get(key, 0) + 1
        faults = {"A-0": "429", "A-1": "500", "A-2": "timeout", "A-3": "malformed"}
        tag = re.search(r"\[(A-\d)\]", text).group(1)
        if seen[key] == 1 and tag in faults:
            return faults[tag]
        if tag == "A-4":
            return "503"  # never recovers: retries run out
        return None

    def openai_reply(body):
        request = _sample_of(fakes.openai_text(body))
        if "[A-5]" in request:
            return fakes.ScriptedReply(refusal="I can't help with that.")
        return judge_reply_json(request)

    def gemini_reply(body):
        request = _sample_of(fakes.gemini_text(body))
        if "[A-5]" in request:
            return fakes.ScriptedReply(block_reason="SAFETY")
        return judge_reply_json(request)

    config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 7)], concurrency=4)
    config.methods = config.methods[:1]
    with fakes.fake_openai_server(openai_reply, faults=fault_for, hang_seconds=3) as openai_server, \
            fakes.fake_gemini_server(gemini_reply, faults=fault_for, hang_seconds=3) as gemini_server:
        config.judges = [judge_config(openai_server, name="GPT", timeout=0.5),
                         judge_config(gemini_server, "gemini", name="Gemini", timeout=0.5)]
        summary = EvalRunner(config, progress=False).run()
        served = {"GPT": openai_server.requests, "Gemini": gemini_server.requests}
    for judge, requests in served.items():
        assert {"429", "500", "timeout", "malformed", "503"} <= {r.fault for r in requests}
        answered = [r for r in requests if r.fault is None]
        texts = [fakes.openai_text(r.json) if judge == "GPT" else fakes.gemini_text(r.json) for r in answered]
        tags = sorted(re.search(r"\[(A-\d)\]", t).group(1) for t in texts)
        assert tags == ["A-0", "A-1", "A-2", "A-3", "A-5", "A-6"]  # each answered once; A-4 never
    records = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(records) == len({r["key"] for r in records}) == 14
    by = {(r["judge"], r["sample_id"]): r for r in records}
    for judge in ("GPT", "Gemini"):
        for index in (0, 1, 2, 3, 6):
            record = by[(judge, f"A-{index}")]
            assert record["status"] == "scored", record
            assert (record["fulfillment"], record["quality"], record["preservation"]) == expected_scores(
                record["request"])
        assert by[(judge, "A-4")]["status"] == "failed"
        assert by[(judge, "A-4")]["error_kind"] == "api_unavailable" and by[(judge, "A-4")]["retryable"]
        assert by[(judge, "A-5")]["status"] == "failed" and by[(judge, "A-5")]["error_kind"] == "refusal"
        assert "total" not in by[(judge, "A-4")] and "total" not in by[(judge, "A-5")]
    assert summary.judgments == {"scored": 10, "failed": 4}
