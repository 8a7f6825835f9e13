"""plan() → a typed, editable, serialisable Plan → execute(); the trace says whether and how a
person changed the plan. Scripted agents and a real (recording) Editor."""

import json

import pytest
from PIL import Image

from imageedit_r1.agents.editors import EditRefusedError
from imageedit_r1.decomposition import Decomposition, DecompositionParseError
from imageedit_r1.pipeline import EditFailed, ImageEditR1, PipelineConfig, Plan, PlanError, join_sub_requests
from tests.test_pipeline import (
    REQUEST,
    SUBS,
    InvertingEditor,
    ScriptedDecomposer,
    ScriptedSequencer,
    Untouchable,
    image,
    make,
)


def test_plan_is_typed_and_holds_decomposition_sub_requests_mode_and_instructions():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    assert isinstance(plan, Plan) and pipe.editor.calls == []
    assert plan.request == REQUEST and plan.mode == "single-turn"
    assert plan.decomposition.actions == ["Recoloring"] and plan.decomposition.subjects == ["coat", "hair"]
    assert plan.sub_requests == SUBS and plan.instructions == [join_sub_requests(SUBS)]
    assert plan.record["input"]["width"] == 67 and "decompose" in plan.record["seconds"]
    assert not plan.changed and plan.edits == []
    multi = pipe.plan(image(), REQUEST, mode="multi-turn")
    assert multi.instructions == SUBS


def test_call_is_plan_then_execute_and_records_an_unchanged_plan():
    called = make()(image(), REQUEST, seed=5)
    pipe = make()
    executed = pipe.execute(image(), pipe.plan(image(), REQUEST), seed=5)
    assert called.image.tobytes() == executed.image.tobytes()
    for result in (called, executed):
        trace = result.trace
        assert trace["status"] == "ok" and trace["sub_requests"] == SUBS and trace["seeds"] == [5]
        assert trace["plan"]["changed"] is False and trace["plan"]["changes"] == []
        assert trace["plan"]["image_matches"] is True
        assert {"decompose", "sequence", "edit", "total"} <= set(trace["seconds"])
        assert trace["decomposition"]["subjects"] == ["coat", "hair"]


def test_an_edited_sub_request_reaches_the_editor_and_the_trace_says_who_changed_what():
    pipe = make(mode="multi-turn")
    plan = pipe.plan(image(), REQUEST)
    plan.edit_sub_request(1, "Recolor the hair to copper red")
    result = pipe.execute(image(), plan, seed=0)
    assert [call[1] for call in pipe.editor.calls] == [SUBS[0], "Recolor the hair to copper red"]
    record = result.trace["plan"]
    assert record["changed"] is True and record["changed_by"] == ["person"]
    assert record["changes"] == [{"field": "sub_requests", "op": "edit", "index": 1,
                                  "before": SUBS[1], "after": "Recolor the hair to copper red"}]
    assert record["edits"][0]["op"] == "edit" and record["proposed"]["sub_requests"] == SUBS
    assert result.trace["sub_requests"] == [SUBS[0], "Recolor the hair to copper red"]


def test_add_remove_reorder_and_mode_changes_are_all_described():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    plan.move_sub_request(1, 0)
    assert plan.changes() == [{"field": "sub_requests", "op": "reorder", "before": SUBS, "after": SUBS[::-1]}]
    plan.add_sub_request("Add a red scarf", by="verifier")
    plan.remove_sub_request(0)
    plan.set_mode("multi-turn")
    changes = plan.changes()
    assert {"field": "mode", "before": "single-turn", "after": "multi-turn"} in changes
    assert {"field": "sub_requests", "op": "edit", "index": 1, "before": SUBS[1],
            "after": "Add a red scarf"} in changes
    assert [edit["op"] for edit in plan.edits] == ["move", "add", "remove", "mode"]
    result = pipe.execute(image(), plan, seed=1)
    assert [call[1] for call in pipe.editor.calls] == [SUBS[0], "Add a red scarf"]
    assert result.trace["mode"] == "multi-turn" and result.trace["seeds"] == [1, 2]
    assert result.trace["plan"]["changed_by"] == ["person", "verifier"]


def test_fields_assigned_directly_still_count_as_a_change():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    plan.sub_requests = ["Recolor the coat to scarlet"]
    record = pipe.execute(image(), plan, seed=0).trace["plan"]
    assert record["changed"] is True and record["changed_by"] == ["unknown"]
    assert record["changes"][0]["op"] == "edit" and record["changes"][1]["op"] == "remove"
    assert pipe.editor.calls[0][1] == "Recolor the coat to scarlet."


def test_plan_round_trips_through_json_and_executes_the_same():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    plan.edit_sub_request(0, "Recolor the coat to crimson, with care")
    again = Plan.from_json(json.dumps(plan.to_dict()))
    assert again == plan and again.instructions == plan.instructions
    assert again.to_dict() == plan.to_dict()
    result = pipe.execute(image(), plan.to_dict(), seed=0)  # a dict is accepted as is
    assert result.trace["plan"]["changes"] == plan.changes()
    assert json.loads(json.dumps(result.trace))["plan"]["changed"] is True


@pytest.mark.parametrize(("data", "message"), [
    ([], "must be a JSON object"),
    ({"mode": "single-turn"}, "no 'request'"),
    ({"request": "x", "mode": "two-turn"}, "mode must be one of"),
    ({"request": "x", "mode": "multi-turn", "sub_requests": "one"}, "list of strings"),
    ({"request": "x", "mode": "multi-turn", "sub_requests": ["ok", 3]}, "sub-request 2 must be a string"),
    ({"request": "x", "mode": "multi-turn", "sub_requests": ["  "]}, "sub-request 1 is empty"),
    ({"request": "x", "mode": "multi-turn", "sub_requests": ["a" * 5000]}, "limit is 2000"),
    ({"request": "x", "mode": "multi-turn", "sub_requests": ["a"] * 100}, "limit is 32"),
    ({"request": "x", "mode": "multi-turn", "decomposition": {"actions": []}}, "decomposition"),
    ({"request": "x", "mode": "multi-turn", "format": 99}, "unknown plan format"),
    ({"request": "x", "mode": "multi-turn", "record": {"seconds": 3}}, r"record\['seconds'\] must be an object"),
    ({"request": "x", "mode": "multi-turn", "record": {"errors": {}}}, r"record\['errors'\] must be a list"),
])
def test_malformed_plans_are_refused_with_what_is_wrong(data, message):
    with pytest.raises(PlanError, match=message):
        Plan.from_dict(data)


@pytest.mark.parametrize("depth", [40, 990, 100_000])
def test_a_plan_nested_past_any_real_one_is_refused_not_a_stack_overflow(depth):
    text = json.dumps({"request": "x", "mode": "single-turn", "record": {"note": "N"}})
    with pytest.raises(PlanError, match="nests objects and lists more than 32 deep"):
        Plan.from_json(text.replace('"N"', "[" * depth + "]" * depth))


def test_removing_every_sub_request_is_refused_before_the_editor_runs():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    plan.remove_sub_request(0).remove_sub_request(0)
    with pytest.raises(PlanError, match="every sub-request was removed"):
        pipe.execute(image(), plan)
    assert pipe.editor.calls == []
    with pytest.raises(PlanError, match="no sub-request 5"):
        plan.edit_sub_request(5, "x")
    plan.set_mode("original")
    assert plan.instructions == [REQUEST]


def test_original_mode_and_the_original_fallback_plan_the_raw_request():
    pipe = make(decomposer=Untouchable(), sequencer=Untouchable())
    plan = pipe.plan(image(), REQUEST, mode="original")
    assert plan.decomposition is None and plan.sub_requests == [] and plan.instructions == [REQUEST]
    pipe = make(decomposer=ScriptedDecomposer(DecompositionParseError("no tags", "garbage")),
                on_decompose_failure="original")
    plan = pipe.plan(image(), REQUEST)
    assert plan.instructions == [REQUEST] and plan.record["fallbacks"][0]["used"] == "original"
    result = pipe.execute(image(), plan, seed=0)
    assert result.trace["fallbacks"][0]["used"] == "original" and not result.trace["plan"]["changed"]


def test_a_plan_executed_on_another_image_is_flagged_and_the_output_has_that_image_size():
    pipe = make()
    plan = pipe.plan(image(), REQUEST)
    other = Image.new("RGB", (40, 90), (1, 2, 3))
    result = pipe.execute(other, plan, seed=0)
    assert result.image.size == (40, 90) and result.trace["plan"]["image_matches"] is False


def test_an_editor_failure_keeps_the_changed_plan_in_the_failure_trace():
    pipe = make(editor=InvertingEditor(fail=RuntimeError("CUDA out of memory")))
    plan = pipe.plan(image(), REQUEST)
    plan.edit_sub_request(0, "Recolor the coat to scarlet, gently")
    with pytest.raises(EditFailed, match="CUDA out of memory") as info:
        pipe.execute(image(), plan, seed=0)
    trace = info.value.trace
    assert trace["status"] == "failed" and trace["plan"]["changed"] is True
    assert trace["sub_requests"][0] == "Recolor the coat to scarlet, gently"
    refused = make(editor=InvertingEditor(fail=EditRefusedError("blocked: SAFETY")))
    with pytest.raises(EditFailed, match="blocked: SAFETY") as info:
        refused.execute(image(), plan, seed=0)
    assert info.value.trace["status"] == "refused" and info.value.trace["plan"]["changed"] is True


def test_a_hand_written_plan_runs_without_the_agents():
    pipe = ImageEditR1(editor=InvertingEditor(), decomposer=Untouchable(), sequencer=Untouchable(),
                       config=PipelineConfig())
    plan = Plan(request="Make it festive", mode="multi-turn", sub_requests=["Add lights", "Add snow"],
                decomposition=Decomposition(["Addition"], ["lights", "snow"], ["festive"]))
    result = pipe.execute(image(), plan, seed=3)
    assert [call[1] for call in pipe.editor.calls] == ["Add lights", "Add snow"]
    assert result.trace["plan"]["changed"] is False and result.trace["seeds"] == [3, 4]


def test_planning_failures_still_raise_edit_failed_with_the_trace():
    pipe = make(sequencer=ScriptedSequencer(ValueError("boom")))
    with pytest.raises(EditFailed, match="sequencing failed"):
        pipe.plan(image(), REQUEST)
    plan_trace = make().plan(image(), REQUEST).trace()
    assert plan_trace["status"] == "planned" and plan_trace["sub_requests"] == SUBS
    assert plan_trace["plan"]["changed"] is False and "decompose" in plan_trace["seconds"]


def test_the_cli_dry_run_prints_the_planning_trace(tmp_path, capsys):
    from imageedit_r1.pipeline.cli import run_single

    path = tmp_path / "in.png"
    image().save(path)
    assert run_single(make(), str(path), REQUEST, None, True, as_json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "planned" and printed["sub_requests"] == SUBS
    assert printed["instructions"] == [join_sub_requests(SUBS)] and printed["plan"]["changed"] is False


def test_execute_reports_each_editor_call_for_progress():
    pipe = make(mode="multi-turn")
    steps = []
    pipe.execute(image(), pipe.plan(image(), REQUEST), seed=0, on_step=lambda *args: steps.append(args))
    assert steps == [(0, 2, SUBS[0]), (1, 2, SUBS[1])]


def test_the_dry_run_json_edited_by_hand_reads_back_as_a_plan_that_knows_what_changed(tmp_path, capsys):
    """`--dry-run --json > plan.json`, a sub-request changed in the file, then `Plan.from_json`: the
    agents' proposal, the models and the image the plan was made on survive, so the run's trace
    says the plan was changed and flags another image."""
    from imageedit_r1.pipeline.cli import run_single

    path = tmp_path / "in.png"
    image().save(path)
    pipe = make()
    assert run_single(pipe, str(path), REQUEST, None, True, as_json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    printed["sub_requests"][0] = "Recolor the coat to deep blue"
    plan = Plan.from_json(json.dumps(printed))
    assert plan.sub_requests == ["Recolor the coat to deep blue", SUBS[1]]
    assert plan.proposed["sub_requests"] == SUBS
    assert plan.changes() == [{"field": "sub_requests", "op": "edit", "index": 0, "before": SUBS[0],
                               "after": "Recolor the coat to deep blue"}]
    result = pipe.execute(str(path), plan, seed=0)
    assert result.trace["plan"]["changed"] is True and result.trace["plan"]["image_matches"] is True
    assert result.trace["models"]["decomposer"] == printed["models"]["decomposer"]
    assert result.trace["raw_outputs"] == printed["raw_outputs"]
    other = pipe.execute(Image.new("RGB", (40, 90), (1, 2, 3)), Plan.from_json(json.dumps(printed)), seed=0)
    assert other.trace["plan"]["image_matches"] is False
