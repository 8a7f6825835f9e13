"""ImageEditR1: modes, the trace, fallbacks and failures, with scripted agents and a recording editor."""

from pathlib import Path

import pytest
from PIL import Image, ImageOps

from imageedit_r1.agents.editors import BaseEditor, EditRefusedError
from imageedit_r1.agents.rule_based import keyword_decomposition
from imageedit_r1.decomposition import Decomposition, DecompositionParseError
from imageedit_r1.pipeline import (
    EditFailed,
    EditorConfig,
    ImageEditR1,
    PipelineConfig,
    join_sub_requests,
    load_pipeline_config,
)

REQUEST = "Change the color of her coat and possibly hair to scarlet or copper red"
DECOMPOSITION = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"], think="two subjects")
SUBS = ["Recoloring coat to scarlet", "Recoloring hair to copper red"]


class ScriptedDecomposer:
    def __init__(self, result):
        self.result, self.calls = result, []

    def decompose(self, image, request):
        self.calls.append((image.size, request))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class ScriptedSequencer:
    def __init__(self, result):
        self.result, self.calls = result, []

    def sequence(self, image, decomposition, request):
        self.calls.append(decomposition)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class InvertingEditor(BaseEditor):
    """A real Editor: inverts the image and records every call."""

    name, model_id = "invert", "test/invert"

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def _edit(self, image, instruction, *, seed):
        self.calls.append((image.copy(), instruction, seed))
        if self.fail:
            raise self.fail
        return ImageOps.invert(image)


class Untouchable:
    def __getattr__(self, name):
        raise AssertionError(f"this agent must not be used (called .{name})")


def image():
    return Image.new("RGB", (67, 45), (10, 200, 30))


def make(decomposer=None, sequencer=None, editor=None, **config):
    return ImageEditR1(
        editor=editor or InvertingEditor(),
        decomposer=decomposer or ScriptedDecomposer(DECOMPOSITION),
        sequencer=sequencer or ScriptedSequencer(SUBS),
        config=PipelineConfig(**config),
    )


def test_single_turn_sends_all_sub_requests_in_one_call_and_traces_everything():
    pipe = make(seed=11)
    result = pipe(image(), REQUEST)
    editor = pipe.editor
    assert [call[1] for call in editor.calls] == ["Recoloring coat to scarlet. Recoloring hair to copper red."]
    assert result.image.size == (67, 45) and result.image.getpixel((0, 0)) == (245, 55, 225)
    trace = result.trace
    assert trace["status"] == "ok" and trace["mode"] == "single-turn" and trace["request"] == REQUEST
    assert trace["decomposition"] == {"actions": ["Recoloring"], "subjects": ["coat", "hair"],
                                      "goals": ["scarlet or copper red"], "think": "two subjects"}
    assert trace["sub_requests"] == SUBS and trace["seeds"] == [11]
    assert trace["models"]["editor"] == "test/invert" and trace["editor"]["name"] == "invert"
    assert {"decompose", "sequence", "edit", "total"} <= set(trace["seconds"])
    assert trace["errors"] == [] and trace["fallbacks"] == []
    assert trace["input"]["width"] == 67 and trace["output"]["height"] == 45


def test_multi_turn_edits_each_sub_request_on_the_previous_output_with_offset_seeds():
    pipe = make(mode="multi-turn", seed=5)
    result = pipe(image(), REQUEST)
    calls = pipe.editor.calls
    assert [c[1] for c in calls] == SUBS and [c[2] for c in calls] == [5, 6]
    assert calls[1][0].getpixel((0, 0)) == (245, 55, 225)  # step 2 saw step 1's output
    assert result.image.getpixel((0, 0)) == (10, 200, 30)
    assert result.trace["seeds"] == [5, 6]


def test_original_mode_is_the_editor_alone_on_the_raw_request():
    pipe = make(decomposer=Untouchable(), sequencer=Untouchable())
    result = pipe(image(), REQUEST, mode="original", seed=1)
    assert [c[1] for c in pipe.editor.calls] == [REQUEST]
    assert result.trace["decomposition"] is None and result.trace["models"]["decomposer"] is None


def test_a_seed_is_always_recorded_so_a_run_can_be_repeated():
    result = make()(image(), REQUEST)
    assert isinstance(result.trace["seeds"][0], int)


def test_an_unparseable_decomposition_fails_clearly_by_default_with_the_trace_kept():
    pipe = make(decomposer=ScriptedDecomposer(DecompositionParseError("no <action> tag found", "gibberish")))
    with pytest.raises(EditFailed, match="decomposition failed: no <action> tag") as info:
        pipe(image(), REQUEST)
    trace = info.value.trace
    assert trace["status"] == "failed" and trace["errors"][0]["stage"] == "decompose"
    assert pipe.editor.calls == []


def test_keyword_fallback_is_recorded_and_the_sequencer_still_runs():
    sequencer = ScriptedSequencer(["Recoloring coat to scarlet"])
    pipe = make(decomposer=ScriptedDecomposer(DecompositionParseError("bad", "gibberish")), sequencer=sequencer,
                on_decompose_failure="keywords")
    trace = pipe(image(), REQUEST).trace
    assert trace["fallbacks"][0]["stage"] == "decompose" and trace["fallbacks"][0]["used"] == "keywords"
    assert trace["decomposition"]["actions"] == ["Recoloring"] and trace["decomposition"]["think"] == "keyword fallback"
    assert trace["raw_outputs"]["decompose"] == ["gibberish"]
    assert sequencer.calls and trace["status"] == "ok"


def test_template_fallback_writes_sub_requests_from_the_decomposition():
    from imageedit_r1.agents.sequencer import InvalidSubRequests

    pipe = make(sequencer=ScriptedSequencer(InvalidSubRequests("not a JSON list")), on_sequence_failure="template")
    trace = pipe(image(), REQUEST).trace
    assert trace["sub_requests"] == ["Recoloring coat to scarlet or copper red", "Recoloring hair to scarlet or copper red"]
    assert trace["fallbacks"] == [{"stage": "sequence", "used": "template", "reason": "not a JSON list", "dropped": []}]


def test_original_fallback_edits_with_the_raw_request():
    pipe = make(decomposer=ScriptedDecomposer(DecompositionParseError("bad", "x")), on_decompose_failure="original")
    trace = pipe(image(), REQUEST).trace
    assert trace["instructions"] == [REQUEST] and trace["fallbacks"][0]["used"] == "original"


def test_a_failing_backend_fails_the_run_even_with_a_fallback_configured():
    from imageedit_r1.retry import RetriesExhausted

    pipe = make(decomposer=ScriptedDecomposer(RetriesExhausted(4, TimeoutError("read timed out"))),
                on_decompose_failure="keywords")
    with pytest.raises(EditFailed, match="decomposition failed: gave up after 4 attempts"):
        pipe(image(), REQUEST)
    assert pipe.editor.calls == []


def test_an_editor_refusal_is_a_refused_run_with_the_reason_and_the_plan_in_the_trace():
    pipe = make(editor=InvertingEditor(fail=EditRefusedError("blocked: SAFETY", reason="IMAGE_SAFETY")))
    with pytest.raises(EditFailed, match="editing failed: blocked: SAFETY") as info:
        pipe(image(), REQUEST)
    trace = info.value.trace
    assert trace["sub_requests"] == SUBS and trace["errors"][-1]["type"] == "EditRefusedError"
    assert trace["status"] == "refused" and trace["errors"][-1]["kind"] == "refusal"
    assert trace["refusal"] == {"stage": "edit", "reason": "IMAGE_SAFETY", "message": "blocked: SAFETY"}


def test_an_agent_refusal_is_a_refused_run_too():
    from imageedit_r1.backends import RefusalError

    pipe = make(decomposer=ScriptedDecomposer(RefusalError("gemini m: the prompt was blocked", reason="SAFETY")),
                on_decompose_failure="keywords")  # a refusal is no unusable answer: no fallback
    with pytest.raises(EditFailed) as info:
        pipe(image(), REQUEST)
    assert info.value.trace["status"] == "refused" and info.value.trace["refusal"]["stage"] == "decompose"
    assert info.value.trace["refusal"]["reason"] == "SAFETY" and pipe.editor.calls == []


def test_plan_runs_the_agents_without_building_the_editor():
    pipe = ImageEditR1(decomposer=ScriptedDecomposer(DECOMPOSITION), sequencer=ScriptedSequencer(SUBS),
                       config=PipelineConfig(editor=EditorConfig("flux-kontext", {"model_id": "/nonexistent"})))
    plan = pipe.plan(image(), REQUEST)
    assert plan.instructions == [join_sub_requests(SUBS)] and plan.trace()["status"] == "planned"
    assert pipe._editor is None


def test_bad_inputs_are_rejected_clearly():
    with pytest.raises(ValueError, match="mode must be one of"):
        make()(image(), REQUEST, mode="two-turn")
    with pytest.raises(ValueError, match="request is empty"):
        make()(image(), "  ")
    with pytest.raises(ValueError, match="on_decompose_failure"):
        PipelineConfig(on_decompose_failure="retry").validate()


def test_config_loads_yaml_with_overrides_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("mode: multi-turn\neditor:\n  name: nano-banana\n  options: {model: gemini-2.5-flash-image}\n")
    config = load_pipeline_config(path, ["decomposer.backend=openai", "sequencer.model=Qwen/Qwen2.5-VL-7B-Instruct"])
    assert config.mode == "multi-turn" and config.editor.options == {"model": "gemini-2.5-flash-image"}
    assert config.decomposer.backend == "openai" and config.sequencer.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(Exception, match="colour"):
        load_pipeline_config(path, ["editor.colour=red"])


def test_fallback_helpers():
    d = keyword_decomposition("Restore the color on this black and white photo and enhance the image to show more detail.")
    assert d.actions == ["Restoration", "Enhancement"] and len(d.goals) == 2
    assert keyword_decomposition("levitate the cat").actions == ["Transformation"]
    assert join_sub_requests(["a.", " b ", ""]) == "a. b."


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_config_loads_and_its_editor_builds(path):
    from imageedit_r1.agents.editors import build_editor
    from imageedit_r1.backends import available_backends

    config = load_pipeline_config(path)
    editor = build_editor(config.editor.name, **config.editor.options)  # constructs only: no weights loaded
    assert editor.model_id
    for agent in (config.decomposer, config.sequencer, config.verify and config.verify.judge):
        if agent is not None:
            assert agent.backend in available_backends()
