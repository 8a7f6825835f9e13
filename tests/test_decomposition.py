import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imageedit_r1.decomposition import (
    Decomposition,
    DecompositionParseError,
    check_format,
    parse,
    parse_strict,
)
from imageedit_r1.taxonomy import ACTIONS, canonical_action, is_known_action

PAPER = Decomposition(
    actions=["Recoloring"], subjects=["coat", "hair"], goals=["scarlet or copper red"], think="Two subjects, one colour."
)


def test_render_is_the_trained_format():
    text = PAPER.render()
    assert text == (
        '<think>Two subjects, one colour.</think><action>["Recoloring"]</action>'
        '<subjects>["coat", "hair"]</subjects><goals>["scarlet or copper red"]</goals>'
    )
    assert check_format(text)
    assert parse(text).clean


def test_goals_with_commas_survive_the_list_encoding():
    decomposition = Decomposition(["Recoloring"], ["flag"], ["red, white and blue"], "t")
    assert parse_strict(decomposition.render()).goals == ["red, white and blue"]


@pytest.mark.parametrize(
    "text",
    [
        '<action>["Removal"]</action><subjects>["lamp"]</subjects><goals>["clean wall"]</goals>',  # no think
        '<think></think><action>["Removal"]</action><subjects>["lamp"]</subjects><goals>["x"]</goals>',  # empty think
        '<think>t</think><action>Removal</action><subjects>["lamp"]</subjects><goals>["x"]</goals>',  # bare item
        '<think>t</think><subjects>["lamp"]</subjects><action>["Removal"]</action><goals>["x"]</goals>',  # order
        '<think>t</think><action>["Removal"]</action><subjects>["lamp"]</subjects><goals>["x"]</goals>extra',
        '<think>t</think><action>["Removal"]</action><action>["Blur"]</action><subjects>["a"]</subjects><goals>["x"]</goals>',
        '<think>t</think><action>[1, 2]</action><subjects>["lamp"]</subjects><goals>["x"]</goals>',  # not strings
        "<THINK>t</THINK><ACTION>[\"Removal\"]</ACTION><SUBJECTS>[\"lamp\"]</SUBJECTS><GOALS>[\"x\"]</GOALS>",
    ],
)
def test_strict_format_rejects_near_misses(text):
    assert not check_format(text)


REPAIRS = [
    # (text, expected actions, subjects, goals, a repair that must be reported)
    ('<action>["Removal"]</action><subjects>["lamp"]</subjects><goals>["clean wall"]</goals>',
     ["Removal"], ["lamp"], ["clean wall"], "think: missing"),
    ("<think>t</think><action>recolor, tint</action><subjects>coat, hair</subjects><goals>red</goals>",
     ["recolor", "tint"], ["coat", "hair"], ["red"], "action: split a comma-separated list"),
    ("<think>t</think><action>\n- Removal\n- Blur\n</action><subjects>\n1. lamp\n2. balloons\n</subjects><goals>[]</goals>",
     ["Removal", "Blur"], ["lamp", "balloons"], [], "subjects: split a line-separated list"),
    ("<Think>t</Think><Action>['Removal']</Action><Subjects>['lamp']</Subjects><Goals>['gone']</Goals>",
     ["Removal"], ["lamp"], ["gone"], "action: read a non-JSON list literal"),
    ('```xml\n<think>t</think><action>["Blur"]</action><subjects>["bg"]</subjects><goals>["soft"]</goals>\n```',
     ["Blur"], ["bg"], ["soft"], "extra text around the tags"),
    ('<think>t</think><action>```json\n["Blur"]\n```</action><subjects>["bg"]</subjects><goals>["soft"]</goals>',
     ["Blur"], ["bg"], ["soft"], "action: removed code fence"),
    ('<think>t</think><actions>["Blur"]</actions><subjects>["bg"]</subjects><goals>["soft"]</goals>',
     ["Blur"], ["bg"], ["soft"], "renamed <actions> to <action>"),
    ('<think>t</think><action>["Removal"]</action><subjects>["lamp"]</subjects><goals>["clean wa',
     ["Removal"], ["lamp"], ["clean wa"], "goals: read an unterminated list"),
    ('Sure! <think>t</think>\n<action> ["Removal"] </action>\n<subjects>["lamp"]</subjects>\n<goals>["x"]</goals> Done.',
     ["Removal"], ["lamp"], ["x"], "extra text around the tags"),
]


@pytest.mark.parametrize(("text", "actions", "subjects", "goals", "repair"), REPAIRS)
def test_tolerant_parse_repairs_and_reports(text, actions, subjects, goals, repair):
    result = parse(text)
    assert result.decomposition.actions == actions
    assert result.decomposition.subjects == subjects
    assert result.decomposition.goals == goals
    assert repair in result.repairs


def test_parse_reports_missing_list_tags():
    result = parse('<think>t</think><action>["Blur"]</action>')
    assert result.missing == ("subjects", "goals")


@pytest.mark.parametrize("text", ["", "I cannot help with that.", "<think>only thinking</think>", "[1, 2, 3]"])
def test_parse_fails_clearly_without_a_decomposition(text):
    with pytest.raises(DecompositionParseError) as info:
        parse(text)
    assert info.value.text == text


@pytest.mark.parametrize(
    ("phrase", "label"),
    [
        ("Recoloring", "Recoloring"),
        ("recolor", "Recoloring"),
        ("change the color", "Recoloring"),
        ("Change the color of her coat", "Recoloring"),
        ("tint", "Recoloring"),
        ("remove", "Removal"),
        ("erase", "Removal"),
        ("get rid of the lamp", "Removal"),
        ("delete", "Removal"),
        ("colorize", "Colorization"),
        ("restore", "Restoration"),
        ("enhance", "Enhancement"),
        ("change the background to a beach", "Background Change"),
        ("make it look like a Van Gogh painting", "Style Transfer"),
        ("add text saying happy birthday", "Text Editing"),
        ("blur", "Blur"),
        ("relight", "Relighting"),
        ("crop", "Crop"),
        ("make him smile", "Transformation"),
        ("smile", "Expression Change"),
        ("move", "Move"),
        ("enlarge", "Resize"),
        ("retouch", "Retouching"),
        ("add a hat", "Addition"),
        ("RECOLOURING", "Recoloring"),
        ("levitate", "Levitate"),
    ],
)
def test_canonical_action(phrase, label):
    assert canonical_action(phrase) == label


def test_every_label_is_its_own_canonical_form_and_synonyms_are_unambiguous():
    for label in ACTIONS:
        assert canonical_action(label) == label
        assert is_known_action(label)
    assert not is_known_action("levitate")


def test_from_dict_names_missing_keys():
    with pytest.raises(ValueError, match=r"missing \['goals'\].*keys present: \['actions', 'subjects'\]"):
        Decomposition.from_dict({"actions": ["Blur"], "subjects": ["bg"]})


def test_to_json_round_trips_through_from_dict():
    assert Decomposition.from_dict(json.loads(PAPER.to_json())).to_dict() == PAPER.to_dict()


def test_canonicalized_maps_and_dedupes():
    d = Decomposition(["recolor", "Recoloring", "erase"], ["Coat", "coat ", "hair"], ["red"], "t").canonicalized()
    assert d.actions == ["Recoloring", "Removal"]
    assert d.subjects == ["Coat", "hair"]


TAG_STRINGS = ("<think>", "</think>", "<action>", "</action>", "<subjects>", "</subjects>", "<goals>", "</goals>")
# Tags inside free text or items are ambiguous by construction (the strict format refuses them):
# the model's answer never needs them.
item = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and s == s.strip()
                                               and not any(tag in s for tag in TAG_STRINGS))
lists = st.lists(item, max_size=5)


@given(actions=lists, subjects=lists, goals=lists, think=st.text(max_size=40).filter(lambda s: s.strip()))
def test_render_parse_round_trip(actions, subjects, goals, think):
    if any(tag in think for tag in TAG_STRINGS):
        return
    original = Decomposition(actions, subjects, goals, think.strip())
    result = parse(original.render())
    assert result.clean
    assert result.decomposition == original


@given(st.text(max_size=300))
def test_parse_never_fails_other_than_clearly(text):
    try:
        parse(text)
    except DecompositionParseError:
        pass
