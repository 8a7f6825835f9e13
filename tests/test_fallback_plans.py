"""Fallback plans keep every operation of a request, and forum tags are not part of a request.

Requests are PSR-style (r/PhotoshopRequest titles with their tags). The pipeline runs with the real
openai client, the real Decomposer and Sequencer and a loopback server whose model answers
nothing usable, so the configured fallbacks decide what reaches the editor.
"""

import pytest
from PIL import Image, ImageOps

from imageedit_r1.agents.editors import BaseEditor
from imageedit_r1.agents.rule_based import keyword_decomposition
from imageedit_r1.agents.sequencer import dropped_operations, fallback_sub_requests
from imageedit_r1.data import ManifestLoader
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.endpoints import AgentConfig, RetryConfig
from imageedit_r1.pipeline import ImageEditR1, PipelineConfig
from imageedit_r1.request_text import clean_request

CLEANED = [
    ("[Paid $10] Remove the watermark and make the colors pop", "Remove the watermark and make the colors pop"),
    ("[Specific] Please remove the man in the background", "Please remove the man in the background"),
    ("[Paid][Specific] Remove the glare from my glasses", "Remove the glare from my glasses"),
    ("[Free] [$5 tip] Remove the car", "Remove the car"),
    ("(Paid $20) Swap the sky for a sunset", "Swap the sky for a sunset"),
    ("Remove my ex from this photo (paid $5)", "Remove my ex from this photo"),
    ("PAID $15 - make my dog look like a lion", "make my dog look like a lion"),
    ("Paid - No AI: fix the lighting on my face", "fix the lighting on my face"),
    ("[Serious] Can someone remove the scratches? Will tip!", "Can someone remove the scratches?"),
    # Kept: brackets that say something about the edit, verbs that look like tags, a photo number.
    ("Add the text [SALE] to the sign", "Add the text [SALE] to the sign"),
    ("Free the bird from the cage", "Free the bird from the cage"),
    ("Remove the people in photo (2)", "Remove the people in photo (2)"),
    ("[A-0] make it brighter", "[A-0] make it brighter"),
    ("  Remove   the\nlamp  ", "Remove the lamp"),
    ("[Paid]", "[Paid]"),  # nothing but a tag: left for the caller's empty-request check to see
    ("[Paid - 10 USD] Remove the car", "Remove the car"),
    ("[Paid 10usd] [Specific] Remove the car [Free] (will tip)", "Remove the car"),
]

# Tags that never close, long runs of tag words or amounts, many tags before more text: each
# once took time exponential (or quadratic) in its length.
SLOW_BEFORE = [
    "[paid " + "paid " * 40 + "x",
    "fix it (" + "free " * 40,
    "[paid " + "1" * 40 + "!",
    "x [paid " + "10 usd " * 40 + "x",
    "x " + "[paid] " * 3000 + "x",
    "Remove the car. " + "tip " * 40 + "x",
]


@pytest.mark.parametrize("posted", SLOW_BEFORE, ids=range(len(SLOW_BEFORE)))
def test_forum_tag_stripping_takes_time_linear_in_the_request(posted):
    import time

    start = time.perf_counter()
    assert clean_request(posted) == " ".join(posted.split())  # no complete tag to strip: kept whole
    assert time.perf_counter() - start < 1.0  # generous: each takes well under 50 ms


@pytest.mark.parametrize("posted, request_text", CLEANED)
def test_forum_tags_are_stripped_and_the_request_kept(posted, request_text):
    assert clean_request(posted) == request_text


def test_data_loaders_read_requests_without_forum_tags(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_text(
        '{"id": "p1", "image": "a.png", "request": "[Paid $10] Remove the watermark and make the colors pop"}\n'
        '{"id": "p2", "image": "a.png", "request": "Add the text [SALE] to the sign"}\n', encoding="utf-8")
    records = list(ManifestLoader(tmp_path / "m.jsonl").records())
    assert [r.request for r in records] == ["Remove the watermark and make the colors pop",
                                            "Add the text [SALE] to the sign"]
    assert records[0].meta["request_as_posted"].startswith("[Paid $10]") and "request_as_posted" not in records[1].meta


SPLITS = [
    ("Remove the car and make the sky a sunset", ["Remove the car", "make the sky a sunset"]),
    ("[Paid $10] Remove the watermark and make the colors pop", ["Remove the watermark", "make the colors pop"]),
    ("Remove the car, make the sky a sunset, and remove the tree",
     ["Remove the car", "make the sky a sunset", "remove the tree"]),
    ("[Specific] Can someone please remove the people in the background and brighten the photo? Will tip!",
     ["remove the people in the background", "brighten the photo"]),
    # One operation stays one: a clause without a verb extends the one before it.
    ("Change the color of her coat and possibly hair to scarlet or copper red",
     ["Change the color of her coat and possibly hair to scarlet or copper red"]),
    ("Make it black and white", ["Make it black and white"]),
    ("levitate the cat", ["levitate the cat"]),
]


@pytest.mark.parametrize("request_text, goals", SPLITS)
def test_the_keyword_fallback_keeps_one_goal_per_operation(request_text, goals):
    decomposition = keyword_decomposition(request_text)
    assert decomposition.goals == goals
    steps = fallback_sub_requests(decomposition)
    assert len(steps) == len(goals) and dropped_operations(decomposition, steps) == []


def test_the_template_makes_one_sub_request_per_goal():
    two_goals = Decomposition(["Removal"], [], ["Remove the car", "remove the tree"])
    assert fallback_sub_requests(two_goals) == ["Remove the car", "remove the tree"]  # was one sub-request
    mixed = Decomposition(["Removal", "Weather Change"], ["car", "sky"], ["empty road", "sunset"])
    assert fallback_sub_requests(mixed) == ["Removal car to empty road", "Weather Change sky to sunset"]
    many = Decomposition(["Removal"], [], [f"remove item {i}" for i in range(5)])
    steps = fallback_sub_requests(many, max_steps=3)
    assert len(steps) == 3 and dropped_operations(many, steps) == []  # the overflow joins the last step


class RecordingEditor(BaseEditor):
    name, model_id = "record", "test/record"

    def __init__(self):
        self.instructions = []

    def _edit(self, image, instruction, *, seed):
        self.instructions.append(instruction)
        return ImageOps.invert(image)


@pytest.fixture
def useless_agent_server(monkeypatch):
    from imageedit_r1.testing.fake_servers import fake_openai_server

    monkeypatch.setenv("AGENT_KEY", "sk-test-agent-key-0000")
    with fake_openai_server(lambda request: "Sure! Happy to help with that.") as server:
        yield server


def agent(server):
    return AgentConfig(backend="openai", model="served-agent", base_url=server.url + "/v1", api_key_env="AGENT_KEY",
                       retry=RetryConfig(attempts=1), timeout=5)


@pytest.mark.parametrize("mode", ["single-turn", "multi-turn"])
def test_every_operation_reaches_the_editor_through_both_fallbacks(useless_agent_server, mode):
    editor = RecordingEditor()
    pipe = ImageEditR1(editor=editor, config=PipelineConfig(
        mode=mode, seed=0, decomposer=agent(useless_agent_server), sequencer=agent(useless_agent_server),
        on_decompose_failure="keywords", on_sequence_failure="template"))
    result = pipe(Image.new("RGB", (64, 48), (200, 30, 30)), "[Paid $10] Remove the watermark and make the colors pop")
    sent = " ".join(editor.instructions)
    assert "Remove the watermark" in sent and "make the colors pop" in sent and "Paid" not in sent
    trace = result.trace
    assert trace["request"] == "Remove the watermark and make the colors pop"
    assert trace["sub_requests"] == ["Remove the watermark", "make the colors pop"]
    assert [f["stage"] for f in trace["fallbacks"]] == ["decompose", "sequence"]
    assert trace["fallbacks"][-1]["dropped"] == []
    # What the agents were asked: the request without its tag.
    asked = [request.json["messages"][0]["content"] for request in useless_agent_server.requests]
    assert all("Paid" not in str(content) for content in asked) and len(asked) == 4  # answer + one repair each
