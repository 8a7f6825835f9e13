import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.rewards import (
    KEYS,
    action_f1,
    format_reward,
    goal_f1,
    normalize,
    score,
    subject_f1,
)

PAPER_GT = {"actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]}


def answer(actions, subjects, goals, think="Reasoning."):
    return Decomposition(actions, subjects, goals, think).render()


def test_paper_example_scores_one_when_answered_perfectly():
    result = score(answer(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]), PAPER_GT)
    assert result == {"overall": 1.0, "format": 1.0, "action": 1.0, "subject": 1.0, "goal": 1.0}


def test_ground_truth_as_json_string_dict_or_tag_text_agree():
    response = answer(["recolor"], ["coat"], ["copper red"])
    as_dict = score(response, PAPER_GT)
    assert score(response, json.dumps(PAPER_GT)) == as_dict
    assert score(response, answer(**{"actions": PAPER_GT["actions"], "subjects": PAPER_GT["subjects"], "goals": PAPER_GT["goals"]})) == as_dict


# A better decomposition never scores lower. Each row: ground truth, better response, worse response.
RESTORE = {"actions": ["Colorization", "Enhancement"], "subjects": ["photo"], "goals": ["natural colour", "more detail"]}
FUNERAL = {
    "actions": ["Removal", "Blur"],
    "subjects": ["lady", "her hand", "bright white strip", "orange balloons"],
    "goals": ["lady removed", "strip removed", "balloons slightly blurred"],
}
TATTOO = {"actions": ["Enhancement"], "subjects": ["handwritten text"], "goals": ["visible and clear for a tattoo"]}
SKY = {"actions": ["Replacement"], "subjects": ["sky"], "goals": ["sunset sky"]}
FLAG = {"actions": ["Recoloring"], "subjects": ["flag"], "goals": ["red, white and blue"]}
EMPTY_GOALS = {"actions": ["Crop"], "subjects": ["photo"], "goals": []}

A = answer
ORDERINGS = [
    # paper example
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]), A(["Recoloring"], ["coat"], ["scarlet or copper red"])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["copper red"]), A(["Recoloring"], ["coat", "hair"], ["blue"])),
    (PAPER_GT, A(["recolor"], ["coat", "hair"], ["scarlet or copper red"]), A(["Removal"], ["coat", "hair"], ["scarlet or copper red"])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["copper-red"]), A(["Recoloring"], ["coat", "hair"], ["green"])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet"]), A(["Recoloring"], ["coat", "hair"], [])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]), A(["Recoloring", "Blur"], ["coat", "hair"], ["scarlet or copper red"])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]), A(["Recoloring"], ["coat", "hair", "shoes", "bag"], ["scarlet or copper red"])),
    (PAPER_GT, A(["Recoloring"], ["her coat", "her hair"], ["scarlet"]), A(["Recoloring"], ["jacket"], ["scarlet"])),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]),
     '<think>x</think><action>["Recoloring"]</action><subjects>coat, hair</subjects><goals>["scarlet or copper red"]</goals>'),
    (PAPER_GT, '<think>x</think><action>Recoloring</action><subjects>coat, hair</subjects><goals>scarlet</goals>', "I will recolor the coat."),
    (PAPER_GT, A(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]),
     '<action>["Recoloring"]</action><subjects>["coat", "hair"]</subjects><goals>["scarlet or copper red"]</goals>'),
    (PAPER_GT, '<action>["Recoloring"]</action><subjects>["coat"]</subjects>', '<action>["Recoloring"]</action>'),
    # restoration example
    (RESTORE, A(["Colorization", "Enhancement"], ["photo"], ["natural colour", "more detail"]), A(["Colorization"], ["photo"], ["natural colour"])),
    (RESTORE, A(["colorize", "enhance"], ["photo"], ["natural colors", "more details"]), A(["Style Transfer"], ["photo"], ["natural colors", "more details"])),
    (RESTORE, A(["Colorization"], ["photo"], ["natural colour"]), A(["Colorization"], ["person"], ["natural colour"])),
    (RESTORE, A(["Colorization", "Enhancement"], ["photo"], ["colour"]), A(["Colorization", "Enhancement"], ["photo"], ["sepia"])),
    # funeral card example
    (FUNERAL, A(["Removal", "Blur"], ["lady", "her hand", "bright white strip", "orange balloons"], ["lady removed", "strip removed", "balloons slightly blurred"]),
     A(["Removal", "Blur"], ["lady", "orange balloons"], ["lady removed", "balloons slightly blurred"])),
    (FUNERAL, A(["Removal", "Blur"], ["lady", "hand", "white strip", "balloons"], ["removed", "blurred"]), A(["Removal"], ["lady"], ["removed"])),
    (FUNERAL, A(["erase", "blur"], ["woman", "hand", "strip", "balloons"], ["gone"]), A(["Addition", "Blur"], ["woman", "hand", "strip", "balloons"], ["gone"])),
    (FUNERAL, A(["Removal", "Blur"], ["lady", "hand", "strip", "balloons"], ["balloons slightly blurred"]),
     A(["Removal", "Blur"], ["lady", "hand", "strip", "balloons"], ["balloons sharpened"])),
    (FUNERAL, A(["Removal", "Blur"], ["lady", "hand"], ["lady removed"]), A(["Removal", "Blur"], ["lady", "lady", "lady", "lady"], ["lady removed"])),
    # tattoo example
    (TATTOO, A(["Enhancement"], ["handwritten text"], ["visible and clear for a tattoo"]), A(["Enhancement"], ["wall"], ["visible and clear for a tattoo"])),
    (TATTOO, A(["sharpen"], ["handwriting"], ["clear"]), A(["Text Editing"], ["handwriting"], ["clear"])),
    (TATTOO, A(["Enhancement"], ["text"], ["clear for a tattoo"]), A(["Enhancement"], ["text"], ["darker wall"])),
    # sky replacement
    (SKY, A(["Replacement"], ["sky"], ["sunset sky"]), A(["Replacement"], ["sky"], ["sunset"])),
    (SKY, A(["Replacement"], ["sky"], ["sunset"]), A(["Replacement"], ["sky"], ["night"])),
    (SKY, A(["replace"], ["the sky"], ["a sunset sky"]), A(["Addition"], ["the sky"], ["a sunset sky"])),
    (SKY, A(["Replacement"], ["skies"], ["sunset skies"]), A(["Replacement"], ["ground"], ["sunset skies"])),
    # goals with commas
    (FLAG, A(["Recoloring"], ["flag"], ["red, white and blue"]), A(["Recoloring"], ["flag"], ["red", "white", "blue"])),
    (FLAG, A(["Recoloring"], ["flag"], ["red white blue"]), A(["Recoloring"], ["flag"], ["green"])),
    # empty goals
    (EMPTY_GOALS, A(["Crop"], ["photo"], []), A(["Crop"], ["photo"], ["square"])),
    (EMPTY_GOALS, A(["crop"], ["photo"], []), A(["Resize"], ["photo"], [])),
    # format matters when content is equal
    (SKY, A(["Replacement"], ["sky"], ["sunset sky"]), '<think>x</think><action>Replacement</action><subjects>sky</subjects><goals>sunset sky</goals>'),
    (SKY, A(["Replacement"], ["sky"], ["sunset sky"]), A(["Replacement"], ["sky"], ["sunset sky"]) + " trailing"),
]


@pytest.mark.parametrize(("truth", "better", "worse"), ORDERINGS)
def test_a_better_decomposition_never_scores_lower(truth, better, worse):
    assert score(better, truth)["overall"] > score(worse, truth)["overall"]


def test_there_are_at_least_thirty_ordering_cases():
    assert len(ORDERINGS) >= 30


@pytest.mark.parametrize(
    ("a", "b"),
    [("Copper-red", "copper red"), ("The Coats", "coat"), ("berries", "berry"), ("boxes", "box"), ("Hair!", "hair")],
)
def test_normalisation(a, b):
    assert normalize(a) == normalize(b)


def test_normalisation_keeps_short_and_ss_words():
    assert normalize("glass bus") == ("glass", "bus")


def test_soft_matching_gives_principled_partial_credit():
    assert goal_f1(["copper-red hair"], ["copper red"]) == pytest.approx(0.8)
    assert goal_f1(["red"], ["blue"]) == 0.0
    # "or" is filler: three content words vs two shared
    assert goal_f1(["scarlet or copper red"], ["copper red"]) == pytest.approx(0.8)


def test_matching_is_one_to_one():
    # One prediction cannot be matched to two truths.
    assert subject_f1(["coat"], ["coat", "hair"]) == pytest.approx(2 / 3)
    # Optimal, not greedy: greedy would pair "red coat" with "red hat" first.
    assert subject_f1(["red coat", "red hat"], ["red hat", "coat"]) == pytest.approx(2 * (1 + 2 / 3) / 4)


def test_duplicates_cannot_inflate_precision():
    assert subject_f1(["coat", "coat", "Coat", "coats"], ["coat", "hair"]) == subject_f1(["coat"], ["coat", "hair"])
    assert action_f1(["recolor", "Recoloring", "tint"], ["Recoloring", "Removal"]) == pytest.approx(2 / 3)


def test_empty_versus_empty_is_perfect_and_empty_versus_something_is_zero():
    assert goal_f1([], []) == 1.0
    assert goal_f1([], ["x"]) == 0.0
    assert goal_f1(["x"], []) == 0.0


def test_action_f1_uses_the_taxonomy():
    assert action_f1(["change the colour", "get rid of"], ["Recoloring", "Removal"]) == 1.0
    assert action_f1(["levitate"], ["Levitate"]) == 1.0
    assert action_f1(["levitate"], ["Addition"]) == 0.0


def test_format_reward():
    assert format_reward(answer(["Blur"], ["bg"], ["soft"])) == 1.0
    assert format_reward('<action>["Blur"]</action><subjects>["bg"]</subjects><goals>["soft"]</goals>') == 0.0


def test_missing_list_tag_scores_zero_for_that_component_even_if_truth_is_empty():
    result = score('<think>x</think><action>["Crop"]</action><subjects>["photo"]</subjects>', EMPTY_GOALS)
    assert result["goal"] == 0.0 and result["action"] == 1.0 and result["format"] == 0.0


def test_weights_are_normalised_and_the_goal_ablation_ignores_goals():
    response = answer(["Recoloring"], ["coat", "hair"], ["green"])
    no_goal = score(response, PAPER_GT, {"goal": 0.0})
    assert no_goal["overall"] == 1.0
    assert no_goal["goal"] == 0.0  # still reported
    weighted = score(response, PAPER_GT, {"format": 0.1, "action": 0.3, "subject": 0.3, "goal": 0.3})
    assert weighted["overall"] == pytest.approx(0.7)


@pytest.mark.parametrize("weights", [{"gaol": 1.0}, {"goal": -1.0}, {"format": 0, "action": 0, "subject": 0, "goal": 0}])
def test_bad_weights_are_clear_errors(weights):
    with pytest.raises(ValueError):
        score("x", PAPER_GT, weights)


@pytest.mark.parametrize("truth", ["not json", '{"actions": ["Blur"]}', 42, '{"actions": 1, "subjects": [], "goals": []}'])
def test_malformed_ground_truth_is_a_clear_error(truth):
    with pytest.raises(ValueError):
        score("x", truth)


tags = st.sampled_from(["<think>", "</think>", "<action>", "</action>", "<subjects>", "</subjects>", "<goals>", "</goals>",
                        "[", "]", '"', ",", "\n", "```", "Recoloring", "coat", " "])
near_miss = st.lists(st.one_of(tags, st.text(max_size=8)), max_size=40).map("".join)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=400), near_miss))
def test_any_response_scores_in_range_with_a_constant_key_set(response):
    result = score(response, PAPER_GT)
    assert tuple(result) == KEYS
    assert all(0.0 <= value <= 1.0 for value in result.values())


@given(st.lists(st.text(max_size=12), max_size=20), st.lists(st.text(max_size=12), max_size=20))
def test_f1s_stay_in_range_and_are_symmetric(a, b):
    for f1 in (action_f1, subject_f1, goal_f1):
        value = f1(a, b)
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(f1(b, a))


def test_non_string_response_scores_zero():
    assert score(None, PAPER_GT)["overall"] == 0.0  # type: ignore[arg-type]


@settings(max_examples=200)
@given(st.integers(1, 5).flatmap(lambda r: st.integers(1, 5).flatmap(
    lambda c: st.lists(st.lists(st.sampled_from([0.0, 0.0, 0.25, 0.5, 0.8, 1.0]), min_size=c, max_size=c), min_size=r, max_size=r))))
def test_assignment_is_optimal(matrix):
    from itertools import permutations

    from imageedit_r1.rewards import _best_assignment

    rows, cols = len(matrix), len(matrix[0])
    if rows >= cols:
        brute = max(sum(matrix[r][c] for c, r in enumerate(p)) for p in permutations(range(rows), cols))
    else:
        brute = max(sum(matrix[r][c] for r, c in enumerate(p)) for p in permutations(range(cols), rows))
    assert _best_assignment(matrix) == pytest.approx(brute)
