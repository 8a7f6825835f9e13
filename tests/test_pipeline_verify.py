"""The verify stage: the real openai / google-genai clients against fake judge servers with scripted
scores, scripted agents, and editors whose output depends on the seed and the instruction."""

import json

import pytest
from PIL import Image

from imageedit_r1.agents.editors import BaseEditor
from imageedit_r1.agents.judge import judge_prompt
from imageedit_r1.costs import Price
from imageedit_r1.endpoints import JudgeConfig, RetryConfig
from imageedit_r1.images import image_sha256
from imageedit_r1.pipeline import ImageEditR1, PipelineConfig, load_pipeline_config
from imageedit_r1.pipeline.config import VerifyConfig
from imageedit_r1.pipeline.plan import Plan
from imageedit_r1.pipeline.verify import SEED_STRIDE, RefineLoop
from imageedit_r1.testing import fake_servers as fakes
from tests.test_pipeline import DECOMPOSITION, REQUEST, SUBS, ScriptedDecomposer, ScriptedSequencer, image

pytest.importorskip("openai")

JOINED = "Recoloring coat to scarlet. Recoloring hair to copper red."


class SeedEditor(BaseEditor):
    """A real Editor whose output is a colour set by the seed and the instruction; records calls."""

    name, model_id = "seed-colour", "test/seed-colour"

    def __init__(self, fail_on_call=None):
        self.calls, self.fail_on_call = [], fail_on_call

    def _edit(self, image, instruction, *, seed):
        self.calls.append({"image": image.copy(), "instruction": instruction, "seed": seed})
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("editor crashed")
        colour = (seed * 37 % 256, len(instruction) * 11 % 256, (seed // SEED_STRIDE) * 50 % 256)
        return Image.new("RGB", image.size, colour)


def table2(fulfillment, quality=3, preservation=3, unmet=(), reasoning="scripted"):
    return json.dumps({"reasoning": reasoning, "fulfillment": fulfillment, "quality": quality,
                       "preservation": preservation, "unmet": list(unmet)})


def checklist(*met, notes=None):
    notes = notes or {}
    return json.dumps({"checks": [{"index": i + 1, "met": m, "note": notes.get(i + 1, "")} for i, m in enumerate(met)]})


def verify_config(server, **options):
    judge = JudgeConfig(backend="openai", model="judge-vlm", base_url=server.url + "/v1",
                        retry=RetryConfig(attempts=1), timeout=5)
    return VerifyConfig(judge=judge, **options)


def make(server, editor=None, mode="single-turn", **verify):
    return ImageEditR1(editor=editor or SeedEditor(), decomposer=ScriptedDecomposer(DECOMPOSITION),
                       sequencer=ScriptedSequencer(SUBS),
                       config=PipelineConfig(mode=mode, seed=3, verify=verify_config(server, **verify)))


def edited_images(server):
    return [fakes.openai_images(r.json)[1] for r in server.requests_to("/chat/completions") if r.fault is None]


def test_it_keeps_the_best_attempt_and_traces_every_attempt():
    replies = [table2(1, 2, 2, unmet=[1, 2], reasoning="barely"), table2(4, 3, 2, reasoning="nearly"),
               table2(3, 2, 2, unmet=[2], reasoning="hair wrong")]
    with fakes.fake_openai_server(fakes.scripted(*replies)) as server:
        pipe = make(server, threshold=10, attempts=3, strategy="seed")
        result = pipe(image(), REQUEST)
        sent = server.requests_to("/chat/completions")
    editor = pipe.editor
    assert [c["seed"] for c in editor.calls] == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]
    assert [c["instruction"] for c in editor.calls] == [JOINED] * 3
    verify = result.trace["verify"]
    assert verify["stop_reason"] == "attempts" and len(verify["attempts"]) == 3
    assert verify["best"]["attempt"] == 2 and verify["best"]["score"] == 9.0
    assert verify["result"]["attempt"] == 2
    # The result is attempt 2's image, and the trace names it by hash.
    second = editor._edit(image(), JOINED, seed=3 + SEED_STRIDE)
    assert image_sha256(result.image) == image_sha256(second) == result.trace["output"]["sha256"]
    for attempt, score, critique in zip(verify["attempts"], (5.0, 9.0, 7.0), ("barely", "nearly", "hair wrong"), strict=True):
        candidate = attempt["candidates"][0]
        assert candidate["score"] == score and candidate["verdict"]["critique"] == critique
        assert candidate["image_sha256"] and attempt["plan"]["instructions"] == [JOINED]
        assert candidate["verdict"]["scores"]["total"] == score
    assert verify["attempts"][2]["candidates"][0]["verdict"]["unmet"] == [1]
    # The verifier saw the original, then the edit, with the Table 2 prompt and the plan.
    body = sent[0].json
    text = fakes.openai_text(body)
    assert judge_prompt(REQUEST) in text and "1. Recoloring coat to scarlet" in text and '"unmet"' in text
    assert body["response_format"]["type"] == "json_schema" and body["temperature"] == 0
    assert [im.getpixel((0, 0)) for im in fakes.openai_images(body)][0] == image().getpixel((0, 0))
    assert verify["spent"]["verifier_calls"] == 3 and verify["spent"]["editor_calls"] == 3
    assert result.trace["models"]["verifier"] == "judge-vlm"
    assert result.trace["seeds"] == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]


def test_it_stops_as_soon_as_an_edit_reaches_the_threshold():
    with fakes.fake_openai_server(fakes.scripted(table2(2, 2, 2), table2(3, 3, 2), table2(4, 3, 3))) as server:
        pipe = make(server, threshold=8, attempts=5, strategy="seed")
        result = pipe(image(), REQUEST)
        assert len(server.requests) == 2
    verify = result.trace["verify"]
    assert verify["stop_reason"] == "threshold" and [a["attempt"] for a in verify["attempts"]] == [1, 2]
    assert len(pipe.editor.calls) == 2 and verify["result"]["attempt"] == 2


def test_a_first_edit_that_passes_is_the_plain_pipelines_edit():
    with fakes.fake_openai_server(fakes.scripted(table2(4, 3, 3))) as server:
        verified = make(server)(image(), REQUEST)
    plain = ImageEditR1(editor=SeedEditor(), decomposer=ScriptedDecomposer(DECOMPOSITION),
                        sequencer=ScriptedSequencer(SUBS), config=PipelineConfig(seed=3))(image(), REQUEST)
    assert image_sha256(verified.image) == image_sha256(plain.image)
    assert verified.trace["verify"]["stop_reason"] == "threshold" and "verify" not in plain.trace


def test_replan_sends_only_the_unmet_sub_requests_to_the_editor_on_the_best_edit():
    notes = {2: "the hair is still brown"}
    with fakes.fake_openai_server(fakes.scripted(checklist(True, False, notes=notes), checklist(True, True))) as server:
        pipe = make(server, rubric="checklist", strategy="replan", threshold=10, attempts=3)
        result = pipe(image(), REQUEST)
        sent = [fakes.openai_text(r.json) for r in server.requests]
    calls = pipe.editor.calls
    assert [c["instruction"] for c in calls] == [JOINED, "Recoloring hair to copper red."]
    first_output = pipe.editor._edit(image(), JOINED, seed=3)
    assert image_sha256(calls[1]["image"]) == image_sha256(first_output)  # it refines the best edit
    assert calls[1]["seed"] == 3  # replan alone changes the plan, not the seed
    attempt = result.trace["verify"]["attempts"][1]
    assert attempt["strategy"] == "replan" and attempt["plan"]["changed_by"] == "verifier"
    assert attempt["plan"]["sub_requests"] == ["Recoloring hair to copper red"]
    assert attempt["plan"]["source"] == "attempt 1 candidate 1" and "still brown" in attempt["plan"]["change"]
    revision = attempt["plan"]["edits"][-1]  # the Plan's own log: who changed what, and why
    assert revision["by"] == "verifier" and revision["op"] == "replace" and revision["before"] == SUBS
    assert revision["after"] == ["Recoloring hair to copper red"] and "still brown" in revision["reason"]
    first = result.trace["verify"]["attempts"][0]["candidates"][0]["verdict"]
    assert first["score"] == 5.0 and first["unmet"] == [1] and first["checks"][1]["met"] is False
    assert result.trace["verify"]["stop_reason"] == "threshold" and result.trace["verify"]["result"]["attempt"] == 2
    # Each check names every sub-request of the user's plan, never the revised subset.
    assert all("1. Recoloring coat to scarlet" in text and "2. Recoloring hair to copper red" in text for text in sent)


def test_both_revises_the_plan_and_takes_a_new_seed_in_multi_turn_mode():
    with fakes.fake_openai_server(fakes.scripted(table2(1, 2, 2, unmet=[1]), table2(4))) as server:
        pipe = make(server, mode="multi-turn", strategy="both", attempts=2)
        result = pipe(image(), REQUEST)
    calls = pipe.editor.calls
    assert [c["instruction"] for c in calls] == [*SUBS, "Recoloring coat to scarlet"]
    assert [c["seed"] for c in calls] == [3, 4, 3 + SEED_STRIDE]
    assert image_sha256(calls[2]["image"]) == image_sha256(pipe.editor._edit(image(), SUBS[1], seed=4))
    assert result.trace["verify"]["attempts"][1]["strategy"] == "both"


def test_a_critique_that_names_nothing_unmet_falls_back_to_a_new_seed():
    with fakes.fake_openai_server(fakes.scripted(table2(4, 1, 1, unmet=[]), table2(4, 3, 3))) as server:
        pipe = make(server, strategy="replan", attempts=2)
        result = pipe(image(), REQUEST)
    attempt = result.trace["verify"]["attempts"][1]
    assert attempt["strategy"] == "seed" and "names no unmet sub-request" in attempt["plan"]["change"]
    assert [c["instruction"] for c in pipe.editor.calls] == [JOINED, JOINED]
    assert pipe.editor.calls[1]["seed"] == 3 + SEED_STRIDE and attempt["plan"]["source"] == "original"


@pytest.mark.parametrize("reply, kind, stop, reason", [
    (fakes.ScriptedReply(refusal="I can't help with evaluating this image."), "refusal", "verifier_refused", None),
    (fakes.ScriptedReply(text="", finish_reason="content_filter"), "refusal", "verifier_refused", "content_filter"),
    ("I'm sorry, but I can't evaluate these images.", "refusal", "verifier_refused", "declined"),
    (fakes.FakeResponse(503, {"error": {"message": "overloaded"}}), "api_unavailable", "verifier_failed", None),
    ("scores: none of your business", "invalid_reply", "verifier_failed", None),
])
def test_a_failing_or_refusing_verifier_keeps_the_first_edit(reply, kind, stop, reason):
    with fakes.fake_openai_server(fakes.scripted(reply)) as server:
        pipe = make(server, attempts=3)
        result = pipe(image(), REQUEST)
    assert result.trace["status"] == "ok" and len(pipe.editor.calls) == 1
    assert image_sha256(result.image) == image_sha256(pipe.editor._edit(image(), JOINED, seed=3))
    verify = result.trace["verify"]
    assert verify["stop_reason"] == stop and verify["result"]["attempt"] == 1 and verify["best"] is None
    assert "first edit is kept" in verify["result"]["why"]
    candidate = verify["attempts"][0]["candidates"][0]
    assert candidate["status"] == "failed" and candidate["error"]["kind"] == kind
    assert result.trace["errors"][-1]["stage"] == "verify" and result.trace["errors"][-1]["kind"] == kind
    if kind == "refusal":  # recorded as a refusal with the provider's reason, like every refusal
        assert candidate["error"]["reason"] and result.trace["errors"][-1]["reason"] == candidate["error"]["reason"]
    if reason:
        assert candidate["error"]["reason"] == reason


def test_a_verifier_failing_on_one_candidate_keeps_every_candidate_in_the_trace():
    with fakes.fake_openai_server(fakes.scripted(table2(1, 1, 1), "I'm sorry, I can't evaluate this.")) as server:
        pipe = make(server, candidates=3, attempts=2)
        result = pipe(image(), REQUEST)
    candidates = result.trace["verify"]["attempts"][0]["candidates"]
    assert [c["status"] for c in candidates] == ["verified", "failed", "not verified"]
    assert all(c["image_sha256"] for c in candidates) and "verifier failed" in candidates[2]["why"]
    assert result.trace["verify"]["result"]["candidate"] == 1 and len(result.trace["verify"]["attempts"]) == 1


def test_a_verifier_failing_later_keeps_the_best_verified_edit_and_an_editor_failure_too():
    with fakes.fake_openai_server(fakes.scripted(table2(3, 2, 2), table2(2, 1, 1), "I cannot assess this.")) as server:
        pipe = make(server, threshold=10, attempts=4, strategy="seed")
        result = pipe(image(), REQUEST)
    verify = result.trace["verify"]
    assert verify["stop_reason"] == "verifier_refused" and verify["result"]["attempt"] == 1
    assert image_sha256(result.image) == verify["attempts"][0]["candidates"][0]["image_sha256"]

    with fakes.fake_openai_server(fakes.scripted(table2(3, 2, 2))) as server:
        pipe = make(server, editor=SeedEditor(fail_on_call=2), threshold=10, attempts=3, strategy="seed")
        result = pipe(image(), REQUEST)
    verify = result.trace["verify"]
    assert verify["stop_reason"] == "editor_failed" and verify["result"]["attempt"] == 1
    assert result.trace["status"] == "ok" and "editor crashed" in result.trace["errors"][-1]["message"]


def test_the_first_edit_failing_is_still_the_runs_failure():
    from imageedit_r1.pipeline import EditFailed

    with fakes.fake_openai_server(fakes.scripted(table2(4))) as server:
        pipe = make(server, editor=SeedEditor(fail_on_call=1))
        with pytest.raises(EditFailed, match="editor crashed"):
            pipe(image(), REQUEST)
        assert server.requests == []


# ----------------------------------------------------------------------------- budgets


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class SlowEditor(SeedEditor):
    """Each edit takes ``seconds`` on an injected clock."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def _edit(self, image, instruction, *, seed):
        self.clock.now += self.seconds
        return super()._edit(image, instruction, seed=seed)


def run_loop(server, editor, clock=None, **options):
    from imageedit_r1.agents.verifier import Verifier
    from imageedit_r1.backends import build_backend
    from imageedit_r1.pipeline.trace import Trace

    config = verify_config(server, threshold=10, strategy="seed", **options)
    verifier = Verifier(build_backend("openai", model="judge-vlm", base_url=server.url + "/v1"))
    loop = RefineLoop(config, verifier, editor, clock=clock or Clock())
    trace = Trace(request=REQUEST, mode="single-turn")
    loop.run(image(), Plan(REQUEST, "single-turn", DECOMPOSITION, list(SUBS)), 0, trace)
    return trace.verify


def test_the_calls_budget_is_never_exceeded():
    with fakes.fake_openai_server(lambda body: table2(2)) as server:
        verify = run_loop(server, SeedEditor(), attempts=10, max_calls=5)
        assert len(server.requests) == 2
    # Two attempts of one edit + one check make 4 calls; a third would make 6 > 5.
    assert verify["stop_reason"] == "budget_calls" and verify["spent"]["calls"] == 4
    with fakes.fake_openai_server(lambda body: table2(2)) as server:
        verify = run_loop(server, SeedEditor(), attempts=10, max_calls=6, candidates=2)
    assert verify["spent"]["calls"] == 4 and len(verify["attempts"]) == 1  # 2 edits + 2 checks; 8 > 6


def test_a_reask_on_an_unreadable_reply_stays_inside_the_calls_budget():
    with fakes.fake_openai_server(fakes.scripted(table2(2), "no scores", table2(2))) as server:
        verify = run_loop(server, SeedEditor(), attempts=10, max_calls=4)
    # Attempt 2's check gets one ask (the budget's last call), not the usual two: it fails, unread.
    assert verify["spent"]["calls"] == 4 and verify["stop_reason"] == "verifier_failed"


def test_the_seconds_budget_stops_before_an_attempt_that_would_not_fit():
    clock = Clock()
    with fakes.fake_openai_server(lambda body: table2(2)) as server:
        verify = run_loop(server, SlowEditor(clock, 10.0), clock=clock, attempts=10, max_seconds=35)
    # Attempts take 10 s each: after 3 (30 s) a fourth would end at 40 s > 35 s.
    assert verify["stop_reason"] == "budget_seconds" and len(verify["attempts"]) == 3
    assert verify["spent"]["seconds"] <= 35


def test_the_cost_budget_counts_editor_images_and_verifier_tokens():
    prices = Price(per_image=0.10, input_per_mtok=100.0, output_per_mtok=100.0)
    with fakes.fake_openai_server(lambda body: table2(2)) as server:
        verify = run_loop(server, SeedEditor(), attempts=10, max_cost_usd=0.40, prices=prices)
    spent = verify["spent"]
    token_cost = (spent["prompt_tokens"] + spent["completion_tokens"]) * 100.0 / 1e6
    assert spent["prompt_tokens"] > 0 and spent["cost_usd"] == pytest.approx(0.1 * spent["images"] + token_cost)
    assert verify["stop_reason"] == "budget_cost" and spent["cost_usd"] <= 0.40
    assert len(verify["attempts"]) == 3  # ~0.126 an attempt: a fourth would pass 0.40


# ----------------------------------------------------------------------------- batching


def test_candidates_of_an_editor_that_cannot_batch_run_one_call_each():
    with fakes.fake_openai_server(fakes.scripted(table2(1, 1, 1), table2(3, 2, 2), table2(2, 1, 1))) as server:
        pipe = make(server, candidates=3, attempts=1, threshold=10)
        result = pipe(image(), REQUEST)
    attempt = result.trace["verify"]["attempts"][0]
    assert attempt["batched"] is False and attempt["editor_calls"] == 3
    assert [c["seed"] for c in pipe.editor.calls] == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]
    assert result.trace["verify"]["result"]["candidate"] == 2


@pytest.fixture(scope="module")
def flux_dir():
    pytest.importorskip("diffusers")
    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext

    return build_tiny_flux_kontext()


@pytest.mark.slow
def test_a_diffusers_editor_makes_all_candidates_in_one_batched_call(flux_dir):
    import numpy as np

    from imageedit_r1.agents.editors import build_editor

    steps = []
    editor = build_editor("flux-kontext", model_id=str(flux_dir), local_files_only=True, device="cpu",
                          dtype="float32", max_area=64 * 48, min_area=0, num_inference_steps=2,
                          max_sequence_length=32,
                          call_kwargs={"callback_on_step_end": lambda pipe, i, t, kw: (steps.append(i), kw)[1]})
    photo = Image.new("RGB", (67, 45), (10, 200, 30))
    with fakes.fake_openai_server(fakes.scripted(table2(1, 1, 1), table2(3, 2, 2), table2(2, 1, 1))) as server:
        pipe = make(server, editor=editor, candidates=3, attempts=1, threshold=10)
        result = pipe(photo, REQUEST)
        checked = edited_images(server)
    assert len(steps) == 2  # one pipeline call of two denoising steps made all three candidates
    attempt = result.trace["verify"]["attempts"][0]
    assert attempt["batched"] is True and attempt["editor_calls"] == 1 and len(attempt["candidates"]) == 3
    hashes = [c["image_sha256"] for c in attempt["candidates"]]
    assert len(set(hashes)) == 3 and result.image.size == (67, 45)
    # The verifier checked each candidate, and the kept one is the image it scored best.
    assert [image_sha256(im) for im in checked] == hashes and hashes[1] == image_sha256(result.image)
    # Candidate i is the edit a single call with its seed makes (up to the rounding of batched kernels).
    single = editor.edit(photo, JOINED, seed=3 + SEED_STRIDE)
    assert np.abs(np.asarray(result.image, dtype=int) - np.asarray(single, dtype=int)).max() <= 2


# ----------------------------------------------------------------------------- backends, config


def test_a_gemini_verifier_with_the_checklist_rubric():
    pytest.importorskip("google.genai")
    reply = "1. Recoloring coat to scarlet: met\n2. Recoloring hair to copper red: not met - still brown"
    with fakes.fake_gemini_server(fakes.scripted(reply)) as server:
        judge = JudgeConfig(backend="gemini", model="gemini-2.5-flash", base_url=server.url, api_key_env="FAKE_KEY",
                            retry=RetryConfig(attempts=1))
        pipe = ImageEditR1(editor=SeedEditor(), decomposer=ScriptedDecomposer(DECOMPOSITION),
                           sequencer=ScriptedSequencer(SUBS),
                           config=PipelineConfig(seed=0, verify=VerifyConfig(judge=judge, rubric="checklist",
                                                                             attempts=1)))
        import os

        os.environ["FAKE_KEY"] = "test-key-123"
        try:
            result = pipe(image(), REQUEST)
        finally:
            del os.environ["FAKE_KEY"]
        assert len(fakes.gemini_images(server.requests[0].json)) == 2
    verdict = result.trace["verify"]["attempts"][0]["candidates"][0]["verdict"]
    assert verdict["score"] == 5.0 and verdict["unmet"] == [1] and "still brown" in verdict["critique"]


def test_verify_settings_load_from_yaml_and_overrides_and_bad_ones_fail_clearly(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("verify:\n  judge: {backend: openai, model: gpt-4o-2024-08-06}\n  rubric: checklist\n")
    config = load_pipeline_config(path, ["verify.attempts=4", "verify.max_cost_usd=0.5"])
    assert config.verify.rubric == "checklist" and config.verify.attempts == 4 and config.verify.max_cost_usd == 0.5
    assert load_pipeline_config(None).verify is None
    for override, message in (("verify.strategy=retry", "verify.strategy"), ("verify.threshold=11", "0-10"),
                              ("verify.attempts=0", "verify.attempts"), ("verify.max_calls=0", "max_calls")):
        with pytest.raises(ValueError, match=message):
            load_pipeline_config(path, [override])
    with pytest.raises(Exception, match="rubrik"):
        load_pipeline_config(path, ["verify.rubrik=table2"])


def test_a_verifier_that_cannot_start_stops_the_run_before_any_edit(monkeypatch):
    from imageedit_r1.pipeline import AgentUnavailableError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    editor = SeedEditor()
    pipe = ImageEditR1(editor=editor, decomposer=ScriptedDecomposer(DECOMPOSITION), sequencer=ScriptedSequencer(SUBS),
                       config=PipelineConfig(verify=VerifyConfig(judge=JudgeConfig(backend="openai", model="gpt-4o"))))
    with pytest.raises(AgentUnavailableError, match="verification agent cannot start.*OPENAI_API_KEY"):
        pipe(image(), REQUEST)
    assert editor.calls == []


@pytest.mark.slow
def test_the_command_line_verifies_batches_and_revises_with_tiny_flux_and_served_agents(
        flux_dir, tmp_path, capsys, monkeypatch):
    from imageedit_r1.pipeline.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    tags = ('<think>two subjects</think><action>["Recoloring"]</action><subjects>["coat", "hair"]</subjects>'
            '<goals>["scarlet or copper red"]</goals>')
    agents = fakes.scripted(tags, json.dumps({"sub_requests": SUBS}))
    verdicts = fakes.scripted(checklist(True, False, notes={2: "brown"}), checklist(True, False),
                              checklist(True, True))
    photo = tmp_path / "photo.png"
    Image.new("RGB", (67, 45), (10, 200, 30)).save(photo)
    out = tmp_path / "out" / "edited.png"
    with fakes.fake_openai_server(agents, model="served-agent") as agent_server, \
            fakes.fake_openai_server(verdicts, model="judge-vlm") as judge_server:
        config = tmp_path / "pipeline.yaml"
        config.write_text(f"""
seed: 5
decomposer: {{backend: openai, model: served-agent, base_url: "{agent_server.url}/v1"}}
editor:
  name: flux-kontext
  options: {{model_id: "{flux_dir}", local_files_only: true, device: cpu, dtype: float32, min_area: 0,
            max_area: 3072, num_inference_steps: 2, max_sequence_length: 48}}
""")
        code = main(["--config", str(config), "--image", str(photo), "--request", REQUEST, "--out", str(out),
                     "--verify", "openai:judge-vlm", f"verify.judge.base_url={judge_server.url}/v1",
                     "verify.rubric=checklist", "verify.candidates=2", "verify.strategy=both"])
        checked = len(judge_server.requests)
    assert code == 0 and checked == 3
    trace = json.loads((tmp_path / "out" / "edited.png.trace.json").read_text())
    verify = trace["verify"]
    assert [a["batched"] for a in verify["attempts"]] == [True, True]
    assert verify["attempts"][1]["plan"]["instructions"] == ["Recoloring hair to copper red."]
    assert verify["attempts"][1]["plan"]["source"] == "attempt 1 candidate 1"
    assert verify["result"] == {"attempt": 2, "candidate": 1, "seed": 5 + 2 * SEED_STRIDE,
                                "why": "the best verified edit"}
    assert verify["attempts"][1]["candidates"][1]["status"] == "not verified"
    assert trace["output"]["sha256"] == verify["attempts"][1]["candidates"][0]["image_sha256"]
    assert image_sha256(Image.open(out)) == trace["output"]["sha256"] and Image.open(out).size == (67, 45)
    printed = capsys.readouterr().out
    assert "verify: 1.1: 5, 1.2: 5, 2.1: 10, 2.2: not verified (threshold 8)" in printed
    assert "kept attempt 2 candidate 1" in printed
