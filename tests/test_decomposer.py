"""The decomposition agent: training prompt, tolerant parse, one bounded repair, clear failure."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

from PIL import Image  # noqa: E402

from imageedit_r1.agents.decomposer import (  # noqa: E402
    Decomposer,
    DecompositionError,
    decomposition_json_schema,
)
from imageedit_r1.backends import RefusalError, build_backend  # noqa: E402
from imageedit_r1.decomposition import Decomposition  # noqa: E402
from imageedit_r1.prompts import render_prompt  # noqa: E402
from imageedit_r1.retry import RetryPolicy  # noqa: E402
from imageedit_r1.testing.fake_servers import (  # noqa: E402
    ScriptedReply,
    fake_openai_server,
    openai_message_parts,
    scripted,
)

REQUEST = "Change the color of her coat and possibly hair to scarlet or copper red"
CLEAN = (
    '<think>Recolor two things.</think><action>["recolor"]</action>'
    '<subjects>["coat", "hair"]</subjects><goals>["scarlet or copper red"]</goals>'
)
GARBAGE = "I think the coat should be red, probably."
IMAGE = Image.new("RGB", (48, 32), (30, 60, 90))


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def backend_for(server, **options):
    return build_backend(
        "openai", model="decomposer-test", base_url=server.url + "/v1",
        retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0), **options,
    )


def test_clean_answer_uses_the_training_prompt_and_is_canonicalized():
    with fake_openai_server(scripted(CLEAN)) as server:
        result = Decomposer(backend_for(server)).run(IMAGE, REQUEST)
    assert result.decomposition.to_dict() == {
        "actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"],
    }
    assert result.repairs == [] and result.raw_outputs == [CLEAN]
    assert result.model == "decomposer-test" and result.completion_tokens > 0
    (request,) = server.requests
    parts = openai_message_parts(request.json)
    assert [role for role, _ in parts] == ["user", "user", "user"]
    before, image, after = (part for _, part in parts)
    # Exactly the EasyR1 prompt: decompose.jinja around "<image>" + request, the image in the slot.
    assert before + "<image>" + after == render_prompt("decompose", content="<image>" + REQUEST)
    assert image.tobytes() == IMAGE.tobytes()
    assert "response_format" not in request.json


def test_near_miss_is_read_by_the_tolerant_parser_without_a_second_call():
    sloppy = "<think>x</think><action>Removal, Recoloring</action><subjects>car</subjects><goals>gone</goals>"
    with fake_openai_server(scripted(sloppy)) as server:
        result = Decomposer(backend_for(server)).run(IMAGE, "Remove the car")
    assert result.decomposition.actions == ["Removal", "Recoloring"]
    assert result.decomposition.subjects == ["car"]
    assert any("comma-separated" in repair for repair in result.repairs)
    assert len(server.requests) == 1


def test_unreadable_answer_is_repaired_under_the_json_schema():
    repaired = '{"actions": ["Removal"], "subjects": ["car"], "goals": ["empty street"]}'
    with fake_openai_server(scripted(GARBAGE, repaired)) as server:
        result = Decomposer(backend_for(server)).run(IMAGE, "Remove the car")
    assert result.decomposition == Decomposition(["Removal"], ["car"], ["empty street"])
    assert result.repairs == ["re-asked under the decomposition JSON schema"]
    assert result.raw_outputs == [GARBAGE, repaired]
    first, second = server.requests
    assert "response_format" not in first.json
    assert second.json["response_format"]["json_schema"] == {
        "name": "decomposition", "strict": True, "schema": decomposition_json_schema(),
    }


def test_without_schema_support_the_repair_reasks_with_the_parse_error():
    with fake_openai_server(scripted(GARBAGE, CLEAN)) as server:
        decomposer = Decomposer(backend_for(server, structured_output=False))
        assert decomposer.repair_mode() == "reask"
        result = decomposer.run(IMAGE, REQUEST)
    assert result.decomposition.actions == ["Recoloring"]
    assert result.repairs == ["re-asked with the parse error"]
    messages = server.requests[1].json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == GARBAGE
    assert "could not be read" in messages[2]["content"] and "<action>" in messages[2]["content"]


@pytest.mark.parametrize("structured", [True, False])
def test_second_failure_is_a_clear_error_carrying_the_raw_outputs(structured):
    with fake_openai_server(scripted(GARBAGE, "still not it")) as server:
        decomposer = Decomposer(backend_for(server, structured_output=structured))
        with pytest.raises(DecompositionError, match="no readable decomposition after one") as info:
            decomposer.run(IMAGE, REQUEST)
    assert info.value.raw_outputs == [GARBAGE, "still not it"]
    assert len(info.value.errors) == 2
    assert len(server.requests) == 2  # bounded: one repair, never more


def test_brackets_nested_past_the_stack_are_an_unreadable_answer_not_a_crash():
    deep = "[" * 5000  # a degenerate answer, in both the first reply and the JSON repair
    with fake_openai_server(scripted(deep, '{"a":' * 3000)) as server:
        with pytest.raises(DecompositionError, match="no readable decomposition after one"):
            Decomposer(backend_for(server, structured_output=True)).run(IMAGE, REQUEST)


def test_an_answer_without_actions_counts_as_unreadable():
    empty = '<think>?</think><action>[]</action><subjects>["car"]</subjects><goals>[]</goals>'
    with fake_openai_server(scripted(empty, CLEAN)) as server:
        result = Decomposer(backend_for(server, structured_output=False)).run(IMAGE, REQUEST)
    assert result.decomposition.actions == ["Recoloring"]
    assert "names no action" in server.requests[1].json["messages"][2]["content"]


def test_repair_off_fails_after_one_call():
    with fake_openai_server(scripted(GARBAGE)) as server:
        with pytest.raises(DecompositionError, match="repair is off"):
            Decomposer(backend_for(server), repair="none").run(IMAGE, REQUEST)
    assert len(server.requests) == 1


def test_refusals_propagate_without_a_repair():
    with fake_openai_server(scripted(ScriptedReply(refusal="I won't edit people."))) as server:
        with pytest.raises(RefusalError, match="I won't edit people"):
            Decomposer(backend_for(server)).run(IMAGE, REQUEST)
    assert len(server.requests) == 1


def test_bad_inputs_are_clear_errors():
    with fake_openai_server(scripted(CLEAN)) as server:
        decomposer = Decomposer(backend_for(server))
        with pytest.raises(ValueError, match="empty"):
            decomposer.run(IMAGE, "   ")
        with pytest.raises(ValueError, match="repair must be one of"):
            Decomposer(backend_for(server), repair="twice")
        from imageedit_r1.images import ImageLoadError

        with pytest.raises(ImageLoadError):
            decomposer.run(b"not an image", REQUEST)
    assert server.requests == []


def test_schema_bounds_are_opt_in():
    plain = decomposition_json_schema()
    assert plain["required"] == ["actions", "subjects", "goals"] and plain["additionalProperties"] is False
    assert all(set(prop) == {"type", "items"} for prop in plain["properties"].values())
    bounded = decomposition_json_schema(max_items=3, max_chars=24)
    assert bounded["properties"]["actions"]["minItems"] == 1
    assert "minItems" not in bounded["properties"]["goals"]
    assert all(prop["maxItems"] == 3 and prop["items"]["maxLength"] == 24 for prop in bounded["properties"].values())
