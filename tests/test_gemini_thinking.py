"""Gemini 2.5 thinking, with the real google-genai client against a fake that thinks as documented:
2.5 Flash and Pro think unless bounded, thinking counts against maxOutputTokens, and the usage
reports it apart (``thoughtsTokenCount``) though it is billed as output."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from imageedit_r1.agents.judge import build_judge
from imageedit_r1.costs import Price
from imageedit_r1.endpoints import JudgeConfig, RetryConfig
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.store import read_jsonl
from imageedit_r1.testing import fake_servers as fakes
from tests.eval_fixtures import config_for, judge_reply_json, make_benchmark

pytest.importorskip("google.genai")

RED, GREEN = Image.new("RGB", (40, 30), (220, 10, 10)), Image.new("RGB", (40, 30), (10, 200, 10))
SCORES = '{"reasoning": "the coat is red now", "fulfillment": 4, "quality": 3, "preservation": 2}'


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-thinking-key")


def gemini_judge(server, model="gemini-2.5-flash", **options) -> JudgeConfig:
    return JudgeConfig(name="Gemini", backend="gemini", model=model, base_url=server.url, timeout=5,
                       retry=RetryConfig(attempts=2, base_delay=0.01, max_delay=0.02), **options)


def generation_config(server) -> dict:
    return server.requests[-1].json["generationConfig"]


def thinking_budget(server):
    thinking = generation_config(server)["thinkingConfig"]  # proto JSON: either spelling
    return thinking.get("thinkingBudget", thinking.get("thinking_budget"))


@pytest.mark.parametrize(("model", "budget"), [("gemini-2.5-flash", 1024), ("gemini-2.5-pro", 1024)])
def test_a_default_25_judge_bounds_its_thinking_and_keeps_room_for_the_answer(model, budget):
    with fakes.fake_gemini_server(lambda body: SCORES) as server:  # thinks 1,500 tokens when free to
        judgment = build_judge(gemini_judge(server, model))(RED, GREEN, "make the coat red")
    assert thinking_budget(server) == budget
    assert generation_config(server)["maxOutputTokens"] == 1024 + budget  # max_tokens is the answer's room; thinking has its own
    assert (judgment.scores.fulfillment, judgment.scores.quality, judgment.scores.preservation) == (4, 3, 2)
    answer_tokens = len(SCORES.split())
    assert judgment.completion_tokens == answer_tokens + budget  # thinking is billed as output


def test_flash_lite_is_sent_its_own_default_of_no_thinking():
    with fakes.fake_gemini_server(lambda body: SCORES) as server:
        judgment = build_judge(gemini_judge(server, "gemini-2.5-flash-lite"))(RED, GREEN, "make the coat red")
    assert thinking_budget(server) == 0
    assert judgment.completion_tokens == len(SCORES.split())


def test_an_answer_cut_off_while_thinking_is_a_retryable_truncated_failure_naming_the_limit(tmp_path):
    bench = make_benchmark(tmp_path, "T", 2)
    thinking = {"free": 30000}  # more than the room the judge leaves: every answer is cut off

    def answer(body):
        return judge_reply_json(re.search(r'\*\*Edit Request:\*\* "(.*)"', fakes.gemini_text(body)).group(1))

    with fakes.fake_gemini_server(answer, free_thoughts=lambda: thinking["free"]) as server:
        judge = gemini_judge(server, thinking_budget=-1)  # the model decides: room 24,576 + 1,024
        config = config_for(tmp_path, [bench], judges=[judge],
                            prices={"gemini-2.5-flash": Price(input_per_mtok=0.30, output_per_mtok=2.50)})
        config.methods = config.methods[:1]
        summary = EvalRunner(config, progress=False).run()
        records = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
        assert summary.judgments == {"failed": 2} and len(server.requests) == 2  # not asked again in the run
        for record in records:
            assert record["error_kind"] == "truncated" and record["retryable"] is True
            assert "max_output_tokens=25600" in record["error"] and "25600 of them thinking" in record["error"]
            assert record["completion_tokens"] == 25600  # billed all the same, and counted
            assert record["cost_usd"] == pytest.approx((record["prompt_tokens"] * 0.30 + 25600 * 2.50) / 1e6)
        assert summary.failure_kinds == {"judge/truncated": 2}
        thinking["free"] = 2000  # the next run (more room, or a model that thinks less) retries them
        again = EvalRunner(config, progress=False).run()
    assert again.judgments == {"scored": 2}


def test_25_pro_cannot_turn_thinking_off_and_says_so_before_any_call():
    problems = JudgeConfig(name="G", backend="gemini", model="gemini-2.5-pro", thinking_budget=0).problems("judge")
    assert problems == ["judge.thinking_budget: gemini-2.5-pro cannot turn thinking off (thinking_budget 0); "
                        "give 128..32768, or -1 to let the model decide"]
    assert JudgeConfig(backend="gemini", model="gemini-2.5-flash", thinking_budget=0).problems("judge") == []
    assert "thinking_budget is for the gemini backend" in JudgeConfig(model="gpt-4o", thinking_budget=512).problems(
        "judge")[0]


def test_the_judges_thinking_budget_is_part_of_what_its_scores_depend_on():
    flash = JudgeConfig(backend="gemini", model="gemini-2.5-flash")
    assert flash.settings()["thinking_budget"] == 1024
    assert JudgeConfig(backend="gemini", model="gemini-2.5-flash", thinking_budget=4096).settings()["thinking_budget"] == 4096
    assert "thinking_budget" not in JudgeConfig(model="gpt-4o").settings()


def test_a_label_pass_counts_thinking_in_its_tokens_and_cost(tmp_path, capsys):
    from imageedit_r1.data.__main__ import main
    from tests.data_fixtures import image_bytes

    (tmp_path / "0.png").write_bytes(image_bytes("rgb", seed=0))
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "r0", "image": "0.png", "request": "make the coat red"}) + "\n")
    label = json.dumps({"rationale": "a recolor", "actions": ["recolor"], "subjects": ["coat"], "goals": ["red"]})
    with fakes.fake_gemini_server(lambda body: label) as server:
        assert main(["-q", "label", "--source", f"manifest:{tmp_path / 'm.jsonl'}", "--out", str(tmp_path / "l.jsonl"),
                     "teacher.backend=gemini", "teacher.model=gemini-2.5-pro", f"teacher.base_url={server.url}",
                     "teacher.retry.base_delay=0.01"]) == 0
    assert thinking_budget(server) == 1024
    out = capsys.readouterr().out
    prompt = int(re.search(r"tokens: ([\d,]+) in", out).group(1).replace(",", ""))
    completion = int(re.search(r"in, ([\d,]+) out", out).group(1).replace(",", ""))
    assert completion == len(label.split()) + 1024  # the answer and the thinking billed with it
    cost = (prompt * 1.25 + completion * 10.00) / 1e6  # gemini-2.5-pro's price in the label config
    assert f"cost: ${cost:.4f} (priced as gemini-2.5-pro)" in out
    (record,) = read_jsonl(tmp_path / "l.jsonl")
    assert record["completion_tokens"] == completion


def test_the_verifiers_cost_budget_reads_the_thinking_tokens():
    from imageedit_r1.pipeline import ImageEditR1, PipelineConfig
    from imageedit_r1.pipeline.config import VerifyConfig
    from tests.test_pipeline import DECOMPOSITION, REQUEST, SUBS, ScriptedDecomposer, ScriptedSequencer, image
    from tests.test_pipeline_verify import SeedEditor, table2

    prices = Price(input_per_mtok=0.0, output_per_mtok=100.0)  # only output is priced: 1,024 thinking = $0.1024
    with fakes.fake_gemini_server(lambda body: table2(0, 0, 0)) as server:  # never passes
        judge = gemini_judge(server)
        pipe = ImageEditR1(editor=SeedEditor(), decomposer=ScriptedDecomposer(DECOMPOSITION),
                           sequencer=ScriptedSequencer(SUBS),
                           config=PipelineConfig(seed=0, verify=VerifyConfig(judge=judge, attempts=10, prices=prices,
                                                                             max_cost_usd=0.25)))
        result = pipe(image(), REQUEST)
    spent = result.trace["verify"]["spent"]
    per_call = len(table2(0, 0, 0).split()) + 1024
    assert spent["completion_tokens"] == spent["verifier_calls"] * per_call
    assert result.trace["verify"]["stop_reason"] == "budget_cost" and spent["verifier_calls"] == 2
    assert spent["cost_usd"] == pytest.approx(spent["completion_tokens"] * 100.0 / 1e6) and spent["cost_usd"] <= 0.25


def test_the_estimate_counts_a_gemini_judges_thinking_room_as_output(tmp_path):
    bench = make_benchmark(tmp_path, "E", 3)
    judges = [JudgeConfig(name="Gemini", backend="gemini", model="gemini-2.5-flash"),
              JudgeConfig(name="GPT", backend="openai", model="gpt-4o-2024-08-06")]
    config = config_for(tmp_path, [bench], judges=judges)
    rows = {row.what.split()[1]: row for row in EvalRunner(config, progress=False).estimate()
            if row.what.startswith("judge")}
    assert rows["Gemini"].completion_tokens == rows["Gemini"].calls * (250 + 1024)
    assert rows["GPT"].completion_tokens == rows["GPT"].calls * 250


def test_an_openai_reasoning_answer_cut_off_before_any_text_is_truncated_too(monkeypatch):
    from imageedit_r1.agents.asking import ask_log_of
    from imageedit_r1.backends import TruncatedReply
    from imageedit_r1.eval.records import classify_failure

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-reasoning")
    with fakes.fake_openai_server(lambda body: fakes.ScriptedReply(text="", finish_reason="length")) as server:
        judge = JudgeConfig(name="o", model="o4-mini", base_url=f"{server.url}/v1", retry=RetryConfig(attempts=1))
        with pytest.raises(TruncatedReply, match="cut off at max_completion_tokens=1024") as info:
            build_judge(judge)(RED, GREEN, "make the coat red")
    assert len(server.requests) == 1 and classify_failure(info.value) == ("truncated", True)
    assert ask_log_of(info.value).asks == 1 and ask_log_of(info.value).prompt_tokens > 0
