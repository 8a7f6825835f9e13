"""End to end: chat-backend agents → diffusion editor, every model built tiny and loaded with from_pretrained."""

import json

import pytest
from PIL import Image

from imageedit_r1.pipeline import EditFailed, ImageEditR1, join_sub_requests
from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image
from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text, scripted

pytestmark = pytest.mark.slow  # the tiny Qwen2.5-VL agents and the tiny diffusion editors on the CPU

REQUEST = SAMPLE_REQUESTS["portrait"]


@pytest.fixture(scope="module")
def tiny_dirs(tiny_qwen25vl, tiny_flux_kontext):
    return {"qwen": str(tiny_qwen25vl), "flux": str(tiny_flux_kontext)}


def flux_editor(flux_dir):
    return {"name": "flux-kontext", "options": {
        "model_id": flux_dir, "local_files_only": True, "device": "cpu", "dtype": "float32",
        "min_area": 0, "num_inference_steps": 2, "max_sequence_length": 48}}


def transformers_agents(qwen_dir):
    return {"backend": "transformers", "model": qwen_dir, "max_tokens": 24,
            "options": {"device": "cpu", "dtype": "float32"}}


def assert_complete_trace(trace, size):
    for key in ("request", "mode", "decomposition", "repairs", "sub_requests", "instructions", "models",
                "seeds", "seconds", "errors", "fallbacks", "input", "output", "editor", "raw_outputs"):
        assert key in trace, key
    assert trace["status"] == "ok" and (trace["output"]["width"], trace["output"]["height"]) == size
    assert {"decompose", "sequence", "edit", "total"} <= set(trace["seconds"])
    json.dumps(trace)  # a trace is plain JSON


def test_tiny_qwen25vl_agents_then_tiny_flux_kontext(tiny_dirs):
    pipe = ImageEditR1.from_config({
        "seed": 4,
        "decomposer": transformers_agents(tiny_dirs["qwen"]),
        "editor": flux_editor(tiny_dirs["flux"]),
        # Random weights cannot write the format: the fallbacks take over and say so.
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    })
    result = pipe(sample_image("portrait", (67, 45)), REQUEST)
    assert result.image.size == (67, 45)
    trace = result.trace
    assert_complete_trace(trace, (67, 45))
    assert trace["models"] == {"decomposer": tiny_dirs["qwen"], "sequencer": tiny_dirs["qwen"], "editor": tiny_dirs["flux"]}
    # The agents really ran: their raw answers are kept, one repair each, then the fallback.
    assert len(trace["raw_outputs"]["decompose"]) == 2 and len(trace["raw_outputs"]["sequence"]) == 2
    assert [f["stage"] for f in trace["fallbacks"]] == ["decompose", "sequence"]
    assert trace["decomposition"]["actions"] == ["Recoloring"]
    assert trace["instructions"] == [join_sub_requests(trace["sub_requests"])] and trace["seeds"] == [4]


def test_tiny_qwen25vl_agents_then_tiny_qwen_image_edit(tiny_dirs, tmp_path, tiny_qwen_image_edit):
    qwen_edit = str(tiny_qwen_image_edit)
    pipe = ImageEditR1.from_config({
        "mode": "multi-turn",
        "seed": 1,
        "decomposer": transformers_agents(tiny_dirs["qwen"]),
        "editor": {"name": "qwen-image-edit", "options": {
            "model_id": qwen_edit, "local_files_only": True, "device": "cpu", "dtype": "float32",
            "min_area": 0, "num_inference_steps": 1}},
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    })
    result = pipe(sample_image("portrait", (67, 45)), REQUEST)
    assert result.image.size == (67, 45)
    assert_complete_trace(result.trace, (67, 45))
    assert result.trace["seeds"] == list(range(1, 1 + len(result.trace["sub_requests"])))


def openai_agents(server):
    return {"backend": "openai", "model": "served-agent", "base_url": server.url + "/v1",
            "retry": {"attempts": 2}, "timeout": 10}


@pytest.fixture
def openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def test_scripted_replies_drive_the_decomposition_repair_and_the_plan_reaches_the_editor(tiny_dirs, openai_key):
    replies = scripted(
        "It is a recoloring of the coat and the hair.",  # no tags: unparseable
        '{"actions": ["recolor"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]}',  # schema repair
        '{"sub_requests": ["Recoloring coat to scarlet", "Recoloring hair to copper red"]}',
    )
    with fake_openai_server(replies) as server:
        pipe = ImageEditR1.from_config({"seed": 0, "decomposer": openai_agents(server),
                                        "editor": flux_editor(tiny_dirs["flux"])})
        result = pipe(sample_image("portrait", (67, 45)), REQUEST)
    trace = result.trace
    assert_complete_trace(trace, (67, 45))
    assert trace["decomposition"]["actions"] == ["Recoloring"]  # canonicalised
    assert trace["decomposition"]["subjects"] == ["coat", "hair"]
    assert any("schema" in repair or "re-ask" in repair for repair in trace["repairs"])
    assert trace["raw_outputs"]["decompose"][0] == "It is a recoloring of the coat and the hair."
    assert trace["sub_requests"] == ["Recoloring coat to scarlet", "Recoloring hair to copper red"]
    assert trace["instructions"] == ["Recoloring coat to scarlet. Recoloring hair to copper red."]
    assert trace["fallbacks"] == [] and trace["models"]["decomposer"] == "served-agent"
    assert REQUEST in openai_text(server.requests[0].json)  # the training prompt carries the request


def test_a_decomposition_that_never_parses_fails_after_one_bounded_repair(tiny_dirs, openai_key):
    with fake_openai_server(scripted("no idea", '{"oops": 1}')) as server:
        pipe = ImageEditR1.from_config({"decomposer": openai_agents(server), "editor": flux_editor(tiny_dirs["flux"])})
        with pytest.raises(EditFailed, match="decomposition failed") as info:
            pipe(sample_image("portrait", (67, 45)), REQUEST)
    assert len(server.requests) == 2
    assert info.value.trace["raw_outputs"]["decompose"] == ["no idea", '{"oops": 1}']


def test_an_unreachable_agent_server_is_retried_then_fails_the_run(tiny_dirs, openai_key):
    with fake_openai_server(scripted("x"), faults=["500"] * 5) as server:
        pipe = ImageEditR1.from_config({"decomposer": openai_agents(server), "editor": flux_editor(tiny_dirs["flux"]),
                                        "on_decompose_failure": "keywords"})
        with pytest.raises(EditFailed, match="gave up after 2 attempts"):
            pipe(Image.new("RGB", (30, 20)), REQUEST)
    assert len(server.requests) == 2


def test_a_missing_agent_key_stops_with_a_clear_error(tiny_dirs, monkeypatch):
    from imageedit_r1.pipeline import AgentUnavailableError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pipe = ImageEditR1.from_config({"decomposer": {"backend": "openai", "model": "gpt-4o"},
                                    "editor": flux_editor(tiny_dirs["flux"])})
    with pytest.raises(AgentUnavailableError, match="decomposition agent cannot start.*OPENAI_API_KEY"):
        pipe(Image.new("RGB", (30, 20)), REQUEST)
