"""ImageEditR1.plan_batch: one batched call per agent stage (re-asks too), one plan or error per request."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from imageedit_r1.agents.decomposer import Decomposer
from imageedit_r1.agents.sequencer import Sequencer
from imageedit_r1.backends import ChatResponse, RefusalError
from imageedit_r1.images import ImageLoadError
from imageedit_r1.pipeline import EditFailed, ImageEditR1, PipelineConfig, Plan
from imageedit_r1.pipeline.core import AgentUnavailableError

TAGS = ('<think>t</think><action>["Recoloring"]</action><subjects>["{subject}"]</subjects>'
        '<goals>["red"]</goals>')


class BatchingBackend:
    """Answers decomposition prompts with tags naming the request's last word, sequencing prompts with
    JSON; "garble" gets an unreadable first answer, "refuse" a refusal. Records every batch it gets."""

    name, model, supports_json_schema = "batching", "batching-vlm", False

    def __init__(self):
        self.batches: list[list[str]] = []

    def chat(self, messages, **settings):
        raise AssertionError("the agents must ask in batches")

    def chat_batch(self, conversations, **settings):
        self.batches.append([conversation[0].text() for conversation in conversations])
        return [self._answer(conversation) for conversation in conversations]

    def _answer(self, conversation):
        text = conversation[0].text()
        request = re.search(r"Edit request: (.*)", text).group(1)
        if "refuse" in request:
            return RefusalError("declined", reason="declined")
        if "sequencing agent" in text:
            subject = (json.loads(re.search(r"Subjects: (.*)", text).group(1)) or ["image"])[0]
            return ChatResponse(json.dumps([f"Recolor the {subject} red"]), self.model, 10, 5)
        if "garble" in request and len(conversation) == 1:  # the first ask; the repair turn reads fine
            return ChatResponse("no tags here", self.model, 10, 3)
        return ChatResponse(TAGS.replace("{subject}", request.split()[-1]), self.model, 10, 5)


def pipeline(backend, **config) -> ImageEditR1:
    return ImageEditR1(decomposer=Decomposer(backend), sequencer=Sequencer(backend), config=PipelineConfig(**config))


def picture(colour=(10, 200, 30)):
    return Image.new("RGB", (40, 30), colour)


REQUESTS = ["make the coat", "garble the hat", "paint the door", "garble the car", "tint the sky"]


def test_each_agent_is_asked_once_for_the_whole_batch_and_the_plans_equal_one_by_one_planning():
    backend = BatchingBackend()
    plans = pipeline(backend).plan_batch([picture() for _ in REQUESTS], REQUESTS)
    # Decompose all five, re-ask the two unreadable ones together, then sequence all five.
    assert [len(batch) for batch in backend.batches] == [5, 2, 5]
    assert all(isinstance(plan, Plan) for plan in plans)
    assert all(plan.record["planning"] == {"batch": 5} for plan in plans)
    alone = BatchingBackend()
    for request, plan in zip(REQUESTS, plans, strict=True):
        single = pipeline(alone).plan(picture(), request)
        assert (plan.decomposition, plan.sub_requests) == (single.decomposition, single.sub_requests)
        assert plan.record["raw_outputs"] == single.record["raw_outputs"]
        assert plan.record["repairs"] == single.record["repairs"]
        assert single.record["planning"] == {"batch": 1}
    assert plans[1].record["repairs"] == ["re-asked with the parse error"]
    assert plans[2].sub_requests == ["Recolor the door red"]


def test_a_bad_pair_fails_alone_with_the_error_plan_would_raise(tmp_path):
    backend = BatchingBackend()
    images = [picture(), tmp_path / "missing.png", picture(), picture(), picture()]
    requests = ["make the coat", "paint the door", "   ", "refuse the hat", "tint the sky"]
    results = pipeline(backend).plan_batch(images, requests)
    assert isinstance(results[0], Plan) and isinstance(results[4], Plan)
    assert isinstance(results[1], ImageLoadError)
    assert isinstance(results[2], ValueError) and "empty" in str(results[2])
    refused = results[3]
    assert isinstance(refused, EditFailed) and isinstance(refused.__cause__, RefusalError)
    assert refused.trace["status"] == "refused" and refused.trace["refusal"]["stage"] == "decompose"
    assert [len(batch) for batch in backend.batches] == [3, 2]  # the refused request is not sequenced
    with pytest.raises(ImageLoadError):
        pipeline(backend).plan(tmp_path / "missing.png", "paint the door")


def test_modes_per_request_and_the_original_mode_asks_no_agent():
    backend = BatchingBackend()
    plans = pipeline(backend).plan_batch([picture()] * 3, ["make the coat", "paint the door", "tint the sky"],
                                         mode=["original", "multi-turn", None])
    assert [plan.mode for plan in plans] == ["original", "multi-turn", "single-turn"]
    assert plans[0].instructions == ["make the coat"] and plans[0].decomposition is None
    assert [len(batch) for batch in backend.batches] == [2, 2]
    with pytest.raises(ValueError, match="2 modes for 3 requests"):
        pipeline(backend).plan_batch([picture()] * 3, ["a", "b", "c"], mode=["original", None])


def test_fallbacks_apply_per_request():
    backend = BatchingBackend()
    pipe = ImageEditR1(decomposer=Decomposer(backend, repair="none"), sequencer=Sequencer(backend),
                       config=PipelineConfig(on_decompose_failure="keywords"))
    plans = pipe.plan_batch([picture()] * 2, ["garble the hat and remove the car", "paint the door"])
    assert plans[0].record["fallbacks"][0]["used"] == "keywords" and plans[0].decomposition.actions
    assert plans[1].record["fallbacks"] == [] and plans[1].sub_requests == ["Recolor the door red"]


def test_an_agent_that_cannot_start_stops_the_whole_batch(monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.delenv("IMAGEEDIT_TEST_NO_KEY", raising=False)
    pipe = ImageEditR1.from_config({"decomposer": {"backend": "openai", "model": "gpt-4o",
                                                   "api_key_env": "IMAGEEDIT_TEST_NO_KEY"}})
    with pytest.raises(AgentUnavailableError, match="decomposition agent cannot start"):
        pipe.plan_batch([picture()] * 2, ["make the coat", "tint the sky"])


def test_a_manifest_is_planned_in_batches_then_edited_and_a_rerun_asks_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("openai")
    from imageedit_r1.agents import editors
    from imageedit_r1.pipeline.cli import main
    from imageedit_r1.store import read_jsonl
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind, sub_requests_by_rule

    monkeypatch.setitem(editors.EDITORS, "darken", "tests.test_eval_plans:Darken")
    items = []
    for index in range(5):
        if index != 3:
            Image.new("RGB", (30 + index, 20), (40 * index, 80, 120)).save(tmp_path / f"{index}.png")
        items.append({"id": f"i{index}", "image": f"{index}.png", "request": f"make item {index} red"})
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text("".join(json.dumps(item) + "\n" for item in items))
    with fake_openai_server(lambda body: reply_in_kind(openai_text(body))) as server:
        args = ["--manifest", str(manifest), "--out-dir", str(tmp_path / "out"), "--editor", "darken", "seed=1",
                "decomposer.backend=openai", "decomposer.model=fake-model", f"decomposer.base_url={server.url}/v1",
                "plan_batch=2"]
        assert main(args) == 1  # one item's image is missing
        assert "editing:" in capsys.readouterr().err  # the batch's progress bar
        assert len(server.requests) == 2 * 4  # a decomposition and a sequencing request per readable item
        records = {record["id"]: record for record in read_jsonl(tmp_path / "out" / "results.jsonl")}
        assert [records[f"i{i}"]["status"] for i in range(5)] == ["ok", "ok", "ok", "failed", "ok"]
        traces = [json.loads((tmp_path / "out" / f"i{i}.trace.json").read_text()) for i in (0, 1, 2, 4)]
        assert [trace["planning"]["batch"] for trace in traces] == [2, 2, 1, 1]  # batches of two; i3 failed alone
        assert [trace["sub_requests"] for trace in traces] == [sub_requests_by_rule(f"make item {i} red") for i in (0, 1, 2, 4)]
        assert main([*args, "-q"]) == 1 and len(server.requests) == 8  # finished items are not planned again
        assert "editing:" not in capsys.readouterr().err  # -q: no progress bar, as for every command
