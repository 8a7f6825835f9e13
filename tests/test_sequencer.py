"""The sequencing agent: schema or prompted JSON list, validation, one repair, optional fallback."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openai")

from PIL import Image  # noqa: E402

from imageedit_r1.agents.sequencer import (  # noqa: E402
    InvalidSubRequests,
    Sequencer,
    SequencingError,
    fallback_sub_requests,
    parse_sub_requests,
    sub_requests_json_schema,
)
from imageedit_r1.backends import build_backend  # noqa: E402
from imageedit_r1.decomposition import Decomposition  # noqa: E402
from imageedit_r1.retry import RetryPolicy  # noqa: E402
from imageedit_r1.testing.fake_servers import fake_openai_server, openai_images, openai_text, scripted  # noqa: E402

REQUEST = "Change the color of her coat and possibly hair to scarlet or copper red"
PAPER = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"])
IMAGE = Image.new("RGB", (40, 24), (200, 100, 50))


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def backend_for(server, **options):
    return build_backend(
        "openai", model="sequencer-test", base_url=server.url + "/v1",
        retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0), **options,
    )


def test_constrained_backend_is_asked_under_the_schema():
    answer = json.dumps({"sub_requests": ["Recoloring coat to scarlet", "Recoloring hair to copper red"]})
    with fake_openai_server(scripted(answer)) as server:
        result = Sequencer(backend_for(server), max_steps=5).run(IMAGE, PAPER, REQUEST)
    assert result.sub_requests == ["Recoloring coat to scarlet", "Recoloring hair to copper red"]
    assert result.repairs == [] and not result.fallback_used
    body = server.requests[0].json
    assert body["response_format"]["json_schema"]["schema"] == sub_requests_json_schema(5)
    text = openai_text(body)
    assert REQUEST in text and '["coat", "hair"]' in text and '"sub_requests"' in text
    assert openai_images(body)[0].tobytes() == IMAGE.tobytes()


def test_prompted_backend_answers_a_bare_array_even_inside_prose():
    with fake_openai_server(scripted('Here you go:\n```json\n["Remove the car", "Blur the background"]\n```')) as server:
        steps = Sequencer(backend_for(server, structured_output=False)).sequence(IMAGE, PAPER, REQUEST)
    assert steps == ["Remove the car", "Blur the background"]
    assert "response_format" not in server.requests[0].json
    assert "JSON array of strings" in openai_text(server.requests[0].json)


def test_invalid_answer_gets_one_reask_with_the_error():
    with fake_openai_server(scripted('{"sub_requests": []}', '{"sub_requests": ["Recoloring coat to red"]}')) as server:
        result = Sequencer(backend_for(server)).run(IMAGE, PAPER, REQUEST)
    assert result.sub_requests == ["Recoloring coat to red"]
    assert result.repairs == ["re-asked with the validation error"]
    second = server.requests[1].json["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert "is empty" in second[2]["content"]


def test_two_invalid_answers_fail_clearly_unless_the_fallback_is_on():
    with fake_openai_server(scripted("no idea", '["", "x"]')) as server:
        with pytest.raises(SequencingError, match="no valid sub-requests after one repair") as info:
            Sequencer(backend_for(server)).run(IMAGE, PAPER, REQUEST)
    assert info.value.raw_outputs == ["no idea", '["", "x"]']
    assert len(server.requests) == 2
    with fake_openai_server(scripted("no idea")) as server:
        result = Sequencer(backend_for(server), fallback=True).run(IMAGE, PAPER, REQUEST)
    assert result.fallback_used
    assert result.sub_requests == fallback_sub_requests(PAPER)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "empty"),
        ('["a", 3]', "must be a string"),
        ('["a", "  "]', "is empty"),
        ('{"steps_list": ["a"]}', "no 'sub_requests' key"),
        ('"just a string"', "expected a JSON array"),
        ("nothing here", "no JSON array"),
        (json.dumps(["s"] * 9), "more than the limit of 8"),
        (json.dumps(["x" * 301]), "longer than 300"),
        # Brackets nested past Python's stack (a degenerate answer): once a RecursionError.
        ("[" * 5000, "no JSON array"),
        ('{"a":' * 3000, "no JSON array"),
    ],
)
def test_validation_rejects_bad_lists(text, message):
    with pytest.raises(InvalidSubRequests, match=message):
        parse_sub_requests(text)


def test_validation_normalises_whitespace_and_accepts_objects():
    assert parse_sub_requests('{"sub_requests": ["  Remove   the\\ncar "]}') == ["Remove the car"]


def test_json_is_found_in_prose_array_first():
    assert parse_sub_requests('Two steps [see below]: ["Remove the car", "Blur the sky"] Done.') == [
        "Remove the car", "Blur the sky"]
    assert parse_sub_requests('Sure: {"sub_requests": ["Remove the car"]} Hope it helps.') == ["Remove the car"]
    assert parse_sub_requests('{"note": "x"} then ["Crop it"]') == ["Crop it"]


def test_fallback_pairs_actions_subjects_and_goals():
    assert fallback_sub_requests(PAPER) == [
        "Recoloring coat to scarlet or copper red",
        "Recoloring hair to scarlet or copper red",
    ]
    assert fallback_sub_requests(Decomposition(["Removal", "Blur"], ["car"], [])) == ["Removal car", "Blur car"]
    assert fallback_sub_requests(Decomposition(["Style Transfer"], [], ["watercolor"])) == [
        "Style Transfer to watercolor"
    ]
    many = Decomposition(["Removal"], [f"thing {i}" for i in range(20)], ["gone"])
    assert len(fallback_sub_requests(many, max_steps=3)) == 3


def test_schema_bounds_are_opt_in():
    assert sub_requests_json_schema(4)["properties"]["sub_requests"] == {"type": "array", "items": {"type": "string"}}
    bounded = sub_requests_json_schema(4, bounded=True, max_chars=50)["properties"]["sub_requests"]
    assert bounded == {"type": "array", "items": {"type": "string", "maxLength": 50}, "minItems": 1, "maxItems": 4}


def test_fallback_uses_a_goal_that_is_already_an_instruction_as_is():
    from imageedit_r1.agents.sequencer import fallback_sub_requests

    clause = Decomposition(["Removal"], [], ["Remove the lamp"], "t")
    assert fallback_sub_requests(clause) == ["Remove the lamp"]
    plain = Decomposition(["Recoloring"], [], ["copper red"], "t")
    assert fallback_sub_requests(plain) == ["Recoloring to copper red"]
