"""Reading verifier replies: the Table 2 scores by the judge's own parser plus the unmet sub-requests,
and the checklist in JSON or numbered lines. Partial or unreadable replies are errors, never scores."""

import json

import pytest

from imageedit_r1.agents.judge import JudgeRefusal, JudgmentParseError, judge_prompt
from imageedit_r1.agents.verifier import (
    parse_checklist_verdict,
    parse_table2_verdict,
    verification_prompt,
)

SUBS = ["Recoloring coat to scarlet", "Recoloring hair to copper red", "Remove the lamp"]


@pytest.mark.parametrize("reply, unmet", [
    (json.dumps({"reasoning": "r", "fulfillment": 2, "quality": 3, "preservation": 3, "unmet": [2, 3]}), [1, 2]),
    ('```json\n{"fulfillment": "2/4", "quality": 3, "preservation": 2, "unmet": ["2"]}\n```', [1]),
    ('Here: {"scores": {"fulfillment": 3, "quality": 3, "preservation": 3}, "unmet": ["Remove the lamp"]}', [2]),
    ("Request Fulfillment: 3/4\nImage Quality: 2/3\nPreservation: 3/3\nUnmet sub-requests: 1 and 3", [0, 2]),
    (json.dumps({"fulfillment": 4, "quality": 3, "preservation": 3, "unmet": []}), []),
    (json.dumps({"fulfillment": 4, "quality": 3, "preservation": 3}), None),  # does not say: unknown
])
def test_table2_verdicts_read_scores_with_the_judge_parser_and_the_unmet_list(reply, unmet):
    verdict = parse_table2_verdict(reply, SUBS)
    assert verdict.unmet == unmet and 0 <= verdict.score <= 10
    assert verdict.score == verdict.scores["total"]  # the Table 2 total is already on 0-10


def test_table2_unmet_numbers_outside_the_plan_are_dropped_with_a_note():
    reply = json.dumps({"fulfillment": 1, "quality": 1, "preservation": 1, "unmet": [2, 7]})
    verdict = parse_table2_verdict(reply, SUBS)
    assert verdict.unmet == [1] and any("outside the plan" in note for note in verdict.notes)


@pytest.mark.parametrize("reply, error", [
    ("", JudgmentParseError),
    ('{"fulfillment": 3, "quality": 2}', JudgmentParseError),  # a criterion missing
    ('{"fulfillment": 9, "quality": 2, "preservation": 1}', JudgmentParseError),  # out of range
    ("I'm sorry, I can't evaluate these images.", JudgeRefusal),
])
def test_unreadable_table2_replies_are_errors(reply, error):
    with pytest.raises(error):
        parse_table2_verdict(reply, SUBS)


@pytest.mark.parametrize("reply", [
    json.dumps({"checks": [{"index": 1, "met": True, "note": ""}, {"index": 2, "met": False, "note": "brown"},
                           {"index": 3, "met": True, "note": ""}]}),
    json.dumps({"checks": [{"sub_request": "Remove the lamp", "satisfied": "yes"},
                           {"sub_request": "Recoloring coat to scarlet", "satisfied": "yes"},
                           {"sub_request": "Recoloring hair to copper red", "satisfied": "no", "reason": "brown"}]}),
    json.dumps([True, False, True]),
    "1. Recoloring coat to scarlet: met\n2. Recoloring hair to copper red: not met, still brown\n"
    "3. Remove the lamp: yes, no trace left",
    "**1.** ✓ coat is scarlet\n**2.** ✗ brown\n**3.** ✅",
])
def test_checklists_in_json_or_numbered_lines(reply):
    verdict = parse_checklist_verdict(reply, SUBS)
    assert [check["met"] for check in verdict.checks] == [True, False, True]
    assert verdict.unmet == [1] and verdict.score == pytest.approx(10 * 2 / 3)
    assert verdict.critique.startswith("2. Recoloring hair to copper red")


@pytest.mark.parametrize("reply, error, match", [
    ("1. met\n2. not met", JudgmentParseError, r"no verdict for sub-request\(s\) \[3\]"),
    (json.dumps({"checks": [{"index": 1, "note": "?"}]}), JudgmentParseError, "not readable"),
    ("The edit looks fine overall.", JudgmentParseError, "no checklist"),
    ("I cannot help with evaluating this.", JudgeRefusal, "refused"),
])
def test_a_partial_unreadable_or_refused_checklist_is_an_error(reply, error, match):
    with pytest.raises(error, match=match):
        parse_checklist_verdict(reply, SUBS)


def test_the_prompts_carry_the_request_and_every_sub_request():
    table2 = verification_prompt("table2", "make it festive", SUBS)
    assert table2.startswith(judge_prompt("make it festive"))  # the evaluation judge's prompt, unchanged
    checklist = verification_prompt("checklist", "make it festive", SUBS)
    for text in (table2, checklist):
        assert all(f"{i + 1}. {item}" in text for i, item in enumerate(SUBS))
    assert '"make it festive"' in checklist and "unmet" in table2
