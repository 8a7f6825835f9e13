"""The benchmark runner with injected editors and judges: caching, resume, failures, estimates."""

import json
import os

import pytest

from imageedit_r1.agents.judge import JudgeRefusal
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import MethodConfig
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.retry import RetriesExhausted
from imageedit_r1.store import RunBusy, read_jsonl
from tests.eval_fixtures import ScriptedJudge, config_for, expected_scores, make_benchmark
from tests.store_fixtures import lock_held_elsewhere


def make_runner(config, judges, **kwargs):
    def factory(cfg):
        judges.setdefault(cfg.name, ScriptedJudge(cfg.name, cfg.model))
        return judges[cfg.name]

    return EvalRunner(config, judge_factory=factory, progress=False, **kwargs)


@pytest.fixture
def small(tmp_path):
    return config_for(tmp_path, [make_benchmark(tmp_path, "A", 3), make_benchmark(tmp_path, "B", 2)])


def test_every_item_is_edited_and_judged_once_and_rerun_pays_nothing(small, tmp_path):
    judges = {}
    summary = make_runner(small, judges).run()
    assert summary.edits["done"] == 10 and summary.judgments["scored"] == 10
    results = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(results) == len({r["key"] for r in results}) == 10
    for record in results:
        seed = 0 if record["method"] == "base" else 1
        assert (record["fulfillment"], record["quality"], record["preservation"]) == expected_scores(
            record["request"], seed)
        assert record["total"] == record["fulfillment"] + record["quality"] + record["preservation"]
        assert record["judge_model"] == "judge-model-1" and record["served_model"] == "judge-model-1-served"
        assert len(record["prompt_sha256"]) == 64
        assert record["prompt_tokens"] == 100 and record["completion_tokens"] == 20
    edits = list(read_jsonl(tmp_path / "run" / "edits.jsonl"))
    assert all((tmp_path / "run" / e["edited_path"]).exists() for e in edits)
    assert edits[0]["trace"]["sub_requests"][-1] == "add a hat"

    calls_before = len(judges["J1"].calls)
    again = make_runner(small, judges).run()
    assert len(judges["J1"].calls) == calls_before
    assert again.edits["cached"] == 10 and again.judgments["cached"] == 10
    assert len(list(read_jsonl(tmp_path / "run" / "results.jsonl"))) == 10


def test_failures_are_recorded_never_scored_and_retried_by_kind(small, tmp_path):
    def reply(request, index, original, edited):
        if "A-0" in request:
            return JudgeRefusal("judge refused: I can't", raw="I can't")
        if "A-1" in request:
            return RetriesExhausted(4, RuntimeError("HTTP 503"))
        if "A-2" in request:
            return "The edit is fine."  # unreadable: no scores
        return json.dumps({"fulfillment": 4, "quality": 3, "preservation": 3, "reasoning": ""})

    judges = {"J1": ScriptedJudge("J1", "judge-model-1", reply)}
    summary = make_runner(small, judges).run()
    assert summary.judgments["failed"] == 6 and summary.judgments["scored"] == 4
    assert summary.failure_kinds == {"judge/refusal": 2, "judge/api_unavailable": 2, "judge/invalid_reply": 2}
    failed = [r for r in read_jsonl(tmp_path / "run" / "results.jsonl") if r["status"] == "failed"]
    assert all("total" not in r and "fulfillment" not in r for r in failed)
    assert {r["error_kind"]: r["retryable"] for r in failed} == {
        "refusal": False, "api_unavailable": True, "invalid_reply": False}

    # Next run: only the transient failures are asked again.
    judges["J1"].calls.clear()
    judges["J1"].reply = lambda request, index, original, edited: '{"fulfillment": 1, "quality": 1, "preservation": 1}'
    make_runner(small, judges).run()
    assert sorted(judges["J1"].calls) == sorted(r["request"] for r in failed if r["error_kind"] == "api_unavailable")
    # --retry-failed asks the permanent failures again too.
    judges["J1"].calls.clear()
    make_runner(small, judges, retry_failed=True).run()
    assert len(judges["J1"].calls) == 4
    records = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
    assert len(records) == 10 and all(r["status"] == "scored" for r in records)


def test_edit_failures_are_recorded_and_not_judged(tmp_path):
    config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 3)], methods=[
        MethodConfig(name="m", label="M", kind="callable", target="tests.eval_fixtures:failing_tint")])
    judges = {}
    summary = make_runner(config, judges).run()
    assert summary.edits == {"done": 2, "failed": 1}
    failed = [e for e in read_jsonl(tmp_path / "run" / "edits.jsonl") if e["status"] == "failed"]
    assert failed[0]["sample_id"] == "A-1" and "editor crashed" in failed[0]["error"]
    assert len(judges["J1"].calls) == 2


def test_unreadable_input_image_is_an_input_error(tmp_path):
    bench = make_benchmark(tmp_path, "A", 2)
    (tmp_path / "bench_A" / "0.png").write_bytes(b"not a png")
    config = config_for(tmp_path, [bench])
    summary = make_runner(config, {}).run()
    assert summary.failure_kinds["edit/input_error"] == 2  # one sample, two methods
    assert summary.judgments["scored"] == 2


def test_method_hash_decides_reuse_label_does_not(small, tmp_path):
    judges = {}
    make_runner(small, judges).run()
    small.methods[0].label = "Renamed"
    summary = make_runner(small, judges).run()
    assert summary.edits["done"] == 0 and summary.judgments.get("scored", 0) == 0
    small.methods[0].seed = 3
    summary = make_runner(small, judges).run()
    assert summary.edits["done"] == 5 and summary.judgments["scored"] == 5


def test_a_new_judge_only_judges(small, tmp_path):
    judges = {}
    make_runner(small, judges).run()
    small.judges.append(JudgeConfig(name="J2", backend="gemini", model="judge-model-2"))
    summary = make_runner(small, judges).run()
    assert summary.edits["done"] == 0 and summary.judgments["scored"] == 10
    assert len(judges["J1"].calls) == 10 and len(judges["J2"].calls) == 10


def test_estimate_counts_pending_calls_and_prices_them(small, tmp_path):
    from imageedit_r1.costs import Price

    small.prices = {"judge-model-1": Price(input_per_mtok=1.0, output_per_mtok=2.0)}
    runner = make_runner(small, {})
    rows = {row.what.split()[1]: row for row in runner.estimate()}
    assert rows["J1"].calls == 10
    assert rows["J1"].prompt_tokens > 10 * 2 * 85  # two images a call at least
    assert rows["J1"].cost_usd == pytest.approx((rows["J1"].prompt_tokens * 1 + rows["J1"].completion_tokens * 2) / 1e6)
    text = runner.format_estimate(runner.estimate())
    assert "J1" in text and "total" in text
    summary = runner.run()
    assert summary.cost_usd == pytest.approx(10 * (100 * 1 + 20 * 2) / 1e6)
    assert summary.prompt_tokens == 1000
    assert {row.what.split()[1]: row.calls for row in make_runner(small, {}).estimate()}["J1"] == 0


def test_judge_setup_failure_leaves_items_pending(small, tmp_path):
    def broken(cfg):
        raise RuntimeError("no API key; set OPENAI_API_KEY")

    summary = EvalRunner(small, judge_factory=broken, progress=False).run()
    assert summary.setup_errors and "OPENAI_API_KEY" in summary.setup_errors[0]
    assert not (tmp_path / "run" / "results.jsonl").exists()
    summary = make_runner(small, {}).run()
    assert summary.judgments["scored"] == 10


def test_secrets_in_errors_are_redacted(small, tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    judges = {"J1": ScriptedJudge("J1", "judge-model-1",
                                  lambda r, i, o, e: RuntimeError(f"401 bad key {secret} for url"))}
    make_runner(small, judges).run()
    for root, _, files in os.walk(tmp_path / "run"):
        for name in files:
            assert secret.encode() not in open(os.path.join(root, name), "rb").read()
    record = next(iter(read_jsonl(tmp_path / "run" / "results.jsonl")))
    assert "[REDACTED]" in record["error"]


def test_a_second_run_on_the_same_dir_stops_when_asked_to(small, tmp_path):
    with lock_held_elsewhere(tmp_path / "run") as pid:
        with pytest.raises(RunBusy, match=rf"run is in use by another run \(pid {pid} on "):
            make_runner(small, {}, if_busy="stop").run()
    assert not (tmp_path / "run" / "edits.jsonl").exists()


def test_config_errors_are_clear(tmp_path):
    bad = config_for(tmp_path, [make_benchmark(tmp_path, "A", 1)], judges=[
        JudgeConfig(name="J", backend="vllm-server", model="", reasks=-1)])
    with pytest.raises(ValueError, match="backend 'openai' with its base_url") as info:
        bad.validate()
    assert "set 'model'" in str(info.value) and "judges[0].reasks must be >= 0" in str(info.value)


def missing_weights(image, request, *, seed=0, sample=None):
    raise ImportError("diffusers is not installed")


def test_an_unavailable_method_stops_without_recording_failures(tmp_path):
    config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 3)], methods=[
        MethodConfig(name="gone", label="Gone", kind="callable", target="tests.test_eval_runner:missing_weights"),
        MethodConfig(name="ok", label="OK", kind="identity")])
    summary = make_runner(config, {}).run()
    assert "diffusers is not installed" in summary.setup_errors[0]
    edits = list(read_jsonl(tmp_path / "run" / "edits.jsonl"))
    assert {e["method"] for e in edits} == {"ok"} and summary.judgments["scored"] == 3
