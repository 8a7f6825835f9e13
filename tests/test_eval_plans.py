"""The evaluation's plan stage: one plan per (agents, sample), made in batches before any edit, shared by
every method with the same agents, resumable; counted at a fake OpenAI-compatible agent server."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from PIL import Image

from imageedit_r1.endpoints import RetryConfig
from imageedit_r1.eval.config import MethodConfig, load_eval_config
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import ScriptedJudge, config_for, make_benchmark

pytest.importorskip("openai")
fakes = pytest.importorskip("imageedit_r1.testing.fake_servers")
from imageedit_r1.testing.stand_ins import reply_in_kind, sub_requests_by_rule  # noqa: E402

SAMPLES = 4


class Darken:
    """An editor that darkens by its ``factor`` once per call; ``interrupt_at``: the user presses Ctrl-C
    during that call (the main thread gets the KeyboardInterrupt; the call itself finishes)."""

    name, model_id = "darken", "darken-v1"
    calls = 0
    interrupt_at: int | None = None

    def __init__(self, factor: float = 0.8, **_):
        self.factor = factor

    def edit(self, image, instruction, *, seed=None):
        Darken.calls += 1
        if Darken.interrupt_at is not None and Darken.calls == Darken.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        return Image.eval(image.convert("RGB"), lambda value: int(value * self.factor))


@pytest.fixture
def agents(monkeypatch):
    from imageedit_r1.agents import editors

    monkeypatch.setitem(editors.EDITORS, "darken", "tests.test_eval_plans:Darken")
    Darken.calls, Darken.interrupt_at = 0, None
    with fakes.fake_openai_server(lambda body: reply_in_kind(fakes.openai_text(body))) as server:
        yield server


def two_methods(tmp_path, server, **pipeline):
    """Two methods with the same agents (served by ``server``) that differ in the editor only."""
    agent = {"backend": "openai", "model": "fake-model", "base_url": server.url + "/v1",
             "retry": RetryConfig(attempts=1)}
    methods = [MethodConfig(name=name, label=name, group="Darken", kind="pipeline", decomposer=dict(agent),
                            editor={"name": "darken", "options": {"factor": factor}}, **pipeline)
               for name, factor in (("dark", 0.5), ("dim", 0.8))]
    return config_for(tmp_path, [make_benchmark(tmp_path, "A", SAMPLES)], methods=methods)


def runner_for(config, **kwargs):
    return EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model), **kwargs)


def ok_edits(tmp_path) -> list[dict]:
    return [e for e in read_jsonl(tmp_path / "run" / "edits.jsonl") if e["status"] == "ok"]


def agent_requests(server) -> int:
    return len(server.requests_to(r"/v1/chat/completions"))


def test_two_methods_sharing_agents_make_one_plan_per_sample_and_a_rerun_makes_none(tmp_path, agents):
    config = two_methods(tmp_path, agents)
    fresh = runner_for(config)
    plan_rows = [row for row in fresh.estimate() if row.what.startswith("plan")]
    assert [(row.calls, row.cost_usd) for row in plan_rows] == [(2 * SAMPLES, None)]  # one row, shared
    assert "shared by dark, dim" in plan_rows[0].what

    summary = runner_for(config).run()
    # One plan per sample: a decomposition and a sequencing request each, for both methods together.
    assert agent_requests(agents) == 2 * SAMPLES
    assert summary.plans == {"made": SAMPLES} and summary.edits["done"] == 2 * SAMPLES, summary.lines()
    assert Darken.calls == 2 * SAMPLES
    run = tmp_path / "run"
    plans = list(read_jsonl(run / "plans.jsonl"))
    assert len(plans) == SAMPLES and all(p["methods"] == ["dark", "dim"] and p["batch"] == SAMPLES for p in plans)
    edits = {(e["method"], e["sample_id"]): e for e in read_jsonl(run / "edits.jsonl")}
    for index in range(SAMPLES):
        dark, dim = edits[("dark", f"A-{index}")]["trace"], edits[("dim", f"A-{index}")]["trace"]
        assert dark["planning"] == dim["planning"]
        assert dark["planning"]["shared_by"] == ["dark", "dim"] and dark["planning"]["batch"] == SAMPLES
        assert dark["planning"]["key"] in {p["key"] for p in plans}
        # The stand-in agents plan by rule (imageedit_r1.testing.stand_ins): two steps for these requests.
        planned = sub_requests_by_rule(f"[A-{index}] make it brighter and add a hat")
        assert dark["sub_requests"] == dim["sub_requests"] == planned and len(planned) == 2
        assert dark["models"]["decomposer"] == "fake-model"
        assert edits[("dark", f"A-{index}")]["edited_sha256"] != edits[("dim", f"A-{index}")]["edited_sha256"]
    manifest = json.loads((run / "run.json").read_text())
    assert len({method["agents"] for method in manifest["methods"]}) == 1

    again = runner_for(config).run()
    assert agent_requests(agents) == 2 * SAMPLES  # nothing asked again
    assert again.edits["cached"] == 2 * SAMPLES and not again.plans
    assert [row.calls for row in runner_for(config).estimate() if row.what.startswith("plan")] == [0]


def test_ctrl_c_in_the_plan_stage_and_in_the_edit_stage_resumes_without_asking_twice(tmp_path, agents):
    from imageedit_r1.eval.plans import build_planner

    config = two_methods(tmp_path, agents, plan_batch=2)
    batches = []

    def interrupted_after_one_batch(pipeline_config):
        planner = build_planner(pipeline_config)
        plan_batch = planner.plan_batch

        def plan_once(*args, **kwargs):
            batches.append(len(args[1]))
            if len(batches) == 2:
                raise KeyboardInterrupt
            return plan_batch(*args, **kwargs)

        planner.plan_batch = plan_once
        return planner

    with pytest.raises(KeyboardInterrupt):
        runner_for(config, planner_factory=interrupted_after_one_batch).run()
    assert batches == [2, 2] and agent_requests(agents) == 4  # the first batch's two plans
    assert len(list(read_jsonl(tmp_path / "run" / "plans.jsonl"))) == 2 and Darken.calls == 0

    Darken.interrupt_at = 3  # Ctrl-C during the third edit
    with pytest.raises(KeyboardInterrupt):
        runner_for(config).run()
    assert agent_requests(agents) == 8  # only the two missing plans were made
    deadline = time.monotonic() + 10  # the edit in flight at Ctrl-C finishes and is recorded; no other starts
    while len(ok_edits(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(ok_edits(tmp_path)) == 3 and Darken.calls == 3

    Darken.interrupt_at = None
    summary = runner_for(config).run()
    assert agent_requests(agents) == 8 and not summary.plans  # no plan made twice
    assert summary.edits == {"done": 2 * SAMPLES - 3, "cached": 3}, summary.lines()
    assert Darken.calls == 2 * SAMPLES  # and no edit made twice


def test_a_failed_plan_fails_each_methods_edit_with_its_kind_and_no_editor_call(tmp_path, agents):
    config = two_methods(tmp_path, agents)
    agents.set_faults(lambda request: "500" if "A-2" in fakes.openai_text(request.json or {}) else None)
    summary = runner_for(config).run()
    assert summary.plans == {"made": SAMPLES - 1, "failed": 1}
    failed = [e for e in read_jsonl(tmp_path / "run" / "edits.jsonl") if e["status"] == "failed"]
    assert {e["method"] for e in failed} == {"dark", "dim"} and {e["sample_id"] for e in failed} == {"A-2"}
    (plan,) = [p for p in read_jsonl(tmp_path / "run" / "plans.jsonl") if p["status"] == "failed"]
    assert "HTTP 500" in plan["error"] and plan["retryable"]
    assert all(e["error_kind"] == plan["error_kind"] and e["retryable"] and "HTTP 500" in e["error"] for e in failed)
    assert all(e["trace"]["errors"][0]["stage"] == "decompose" for e in failed)
    assert Darken.calls == 2 * (SAMPLES - 1)
    agents.set_faults(None)
    before = agent_requests(agents)
    again = runner_for(config).run()  # a transient failure: planned again once, then edited by both methods
    assert agent_requests(agents) - before == 2 and again.plans == {"made": 1} and again.edits["done"] == 2


def test_the_table_1_config_makes_exactly_one_plan_per_agent_pair_and_sample(tmp_path):
    config = load_eval_config(None, [f"out_dir={tmp_path / 'run'}"])
    samples = [type("Sample", (), {"id": f"s{i}", "image": None, "request": f"make item {i} red"})()
               for i in range(3)]
    runner = EvalRunner(config, progress=False, sample_loader=lambda bench: list(samples))
    from imageedit_r1.eval.plans import plan_groups

    groups = plan_groups(runner)
    pairs = {(m.decomposer.model, (m.sequencer or m.decomposer).model) for m in config.methods if m.kind == "pipeline"}
    assert len(groups) == len(pairs) == 2
    benchmarks = len(config.benchmarks)
    assert [len(group.todo) for group in groups] == [benchmarks * len(samples)] * 2
    assert sorted(len(group.methods) for group in groups) == [3, 3]  # one per edit model
    rows = [row for row in runner.estimate() if row.what.startswith("plan")]
    assert [row.calls for row in rows] == [2 * benchmarks * len(samples)] * 2 and all(r.cost_usd == 0 for r in rows)


def test_plans_key_on_the_agents_not_the_editor_mode_or_executor():
    from imageedit_r1.eval.plans import method_agents_key

    agent = {"backend": "transformers", "model": "Qwen/Qwen2.5-VL-7B-Instruct"}
    base = MethodConfig(name="a", kind="pipeline", decomposer=dict(agent))
    same = [MethodConfig(name="b", kind="pipeline", decomposer=dict(agent), editor="qwen-image-edit", mode="multi-turn",
                         seed=5, executor="ray", plan_batch=4),
            MethodConfig(name="c", kind="pipeline", decomposer={**agent, "timeout": 5.0,
                                                                 "options": {"max_batch_size": 4}})]
    other = [MethodConfig(name="d", kind="pipeline", decomposer={**agent, "temperature": 0.7}),
             MethodConfig(name="e", kind="pipeline", decomposer={**agent, "model": "ckpt/trained"}),
             MethodConfig(name="f", kind="pipeline", decomposer=dict(agent), sequencer={**agent, "max_tokens": 64}),
             MethodConfig(name="g", kind="pipeline", decomposer={**agent, "options": {
                 "image_budget": {"min_pixels": 3136, "max_pixels": 401408}}}),
             MethodConfig(name="h", kind="pipeline", decomposer=dict(agent), on_decompose_failure="keywords")]
    key = method_agents_key(base)
    assert all(method_agents_key(method) == key for method in same)
    assert len({key, *(method_agents_key(method) for method in other)}) == 1 + len(other)
