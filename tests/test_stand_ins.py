"""The offline stand-ins answer from their input: plans by rule, labels by the same rule, judgments
by measurement, edits by the prompt. Read through the project's own parsers, as the agents read them."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from imageedit_r1.agents.judge import judge_prompt, parse_judgment
from imageedit_r1.agents.sequencer import parse_sub_requests
from imageedit_r1.agents.verifier import parse_checklist_verdict, parse_table2_verdict, verification_prompt
from imageedit_r1.data.teacher import validate_label
from imageedit_r1.decomposition import parse_strict
from imageedit_r1.prompts import render_prompt
from imageedit_r1.sample_images import sample_image
from imageedit_r1.testing.stand_ins import edit_by_rule, measure, reply_in_kind

REQUEST = "remove the car and recolor the coat to scarlet"


def sequence_prompt(request: str, max_steps: int = 8, as_object: bool = True) -> str:
    return render_prompt("sequence", request=request, actions="[]", subjects="[]", goals="[]", max_steps=max_steps,
                         as_object=as_object)


def test_the_agents_split_a_request_into_its_operations():
    decomposition = parse_strict(reply_in_kind(render_prompt("decompose", content=REQUEST)))
    assert decomposition.actions == ["Removal", "Recoloring"]
    assert decomposition.subjects == ["car", "coat"]
    assert decomposition.goals == ["car removed", "scarlet"]
    assert parse_sub_requests(reply_in_kind(sequence_prompt(REQUEST))) == ["Remove the car",
                                                                          "Recolor the coat to scarlet"]
    assert parse_sub_requests(reply_in_kind(sequence_prompt(REQUEST, as_object=False))) == [
        "Remove the car", "Recolor the coat to scarlet"]
    assert parse_sub_requests(reply_in_kind(sequence_prompt(REQUEST, max_steps=1))) == [
        "Remove the car; Recolor the coat to scarlet"]  # within the plan's limit, nothing dropped
    # The paper's running example.
    paper = parse_strict(reply_in_kind(render_prompt(
        "decompose", content="Change the color of her coat and possibly hair to scarlet or copper red")))
    assert (paper.actions, paper.subjects, paper.goals) == (["Recoloring"], ["coat", "hair"],
                                                            ["scarlet or copper red"])


@pytest.mark.parametrize(("request_text", "actions", "subjects"), [
    ("Remove the red car", ["Removal"], ["red car"]),
    ("Change the coat to scarlet", ["Recoloring"], ["coat"]),
    ("Add a red hat to the dog", ["Addition"], ["dog"]),
    (REQUEST, ["Removal", "Recoloring"], ["car", "coat"]),
])
def test_the_teacher_labels_a_request_as_the_agents_read_it(request_text, actions, subjects):
    prompt = render_prompt("teacher", request=request_text, actions=[("Removal", "remove")])
    label = validate_label(reply_in_kind(prompt))  # the labeller's own validation
    assert label.decomposition.actions == actions and label.decomposition.subjects == subjects
    decomposition = parse_strict(reply_in_kind(render_prompt("decompose", content=request_text)))
    assert decomposition.actions == label.decomposition.actions


def _images():
    original = sample_image("portrait", (320, 240))
    rng = random.Random(0)
    noise = Image.frombytes("RGB", original.size, bytes(rng.getrandbits(8) for _ in range(320 * 240 * 3)))
    return original, noise, edit_by_rule(original, "Recolor the coat to scarlet")


def test_the_judge_scores_what_it_measures_so_noise_and_no_edit_score_low_and_a_local_edit_high():
    original, noise, edited = _images()
    prompt = judge_prompt("Recolor the coat to scarlet")
    unchanged = parse_judgment(reply_in_kind(prompt, [original, original.copy()]))
    noisy = parse_judgment(reply_in_kind(prompt, [original, noise]))
    local = parse_judgment(reply_in_kind(prompt, [original, edited]))
    assert (unchanged.fulfillment, unchanged.quality, unchanged.preservation) == (0, 3, 3)
    assert noisy.quality == 0 and noisy.preservation <= 1
    assert unchanged.total <= 6 and noisy.total <= 6 and local.total == 10
    assert "changed visibly" in local.reasoning
    # Without both images there is nothing to measure: scored 0, saying why.
    assert parse_judgment(reply_in_kind(prompt)).total == 0


def test_the_verifier_rubrics_read_the_same_measurement():
    original, noise, edited = _images()
    plan = ["Remove the car", "Recolor the coat to scarlet"]
    table2 = verification_prompt("table2", REQUEST, plan)
    checklist = verification_prompt("checklist", REQUEST, plan)
    assert parse_table2_verdict(reply_in_kind(table2, [original, edited]), plan).unmet == []
    assert parse_table2_verdict(reply_in_kind(table2, [original, original]), plan).unmet == [0, 1]  # zero-based: both sub-requests
    assert parse_checklist_verdict(reply_in_kind(checklist, [original, edited]), plan).score == 10
    assert parse_checklist_verdict(reply_in_kind(checklist, [original, original]), plan).unmet == [0, 1]  # zero-based: both sub-requests


def test_the_image_editor_edits_the_middle_as_the_prompt_says():
    original = sample_image("portrait", (320, 240))
    red = edit_by_rule(original, "Recolor the coat to scarlet")
    assert red.size == original.size
    assert 0.1 < measure(original, red).changed < 0.4  # the middle, not the whole
    corner = (5, 5)
    assert red.getpixel(corner) == original.convert("RGB").getpixel(corner)
    middle = red.getpixel((160, 120))
    assert middle[0] > middle[1] and middle[0] > middle[2]  # tinted towards scarlet
    removed = edit_by_rule(original, "remove the lady")
    assert measure(original, removed).changed > 0.05 and measure(original, removed).roughness < 1.0  # filled smooth
    assert edit_by_rule(original, "Recolor the coat to scarlet") == red  # the same answer every time


def test_answers_are_json_the_parsers_read_and_repeat_exactly():
    prompt = sequence_prompt(REQUEST)
    assert reply_in_kind(prompt) == reply_in_kind(prompt)
    assert json.loads(reply_in_kind(prompt)) == {"sub_requests": ["Remove the car", "Recolor the coat to scarlet"]}
