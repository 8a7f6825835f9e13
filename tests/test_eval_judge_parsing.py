"""The judge reply reader over a table of realistic replies, and the verbatim Table 2 prompt."""

import json
import subprocess
import sys

import pytest

from imageedit_r1.agents.judge import (
    JUDGE_SCHEMA,
    JudgeRefusal,
    JudgmentParseError,
    judge_prompt,
    judge_prompt_sha256,
    parse_judgment,
)

PARSED = [
    # (reply, fulfillment, quality, preservation, parsed_from)
    ('{"reasoning": "Sky is red.", "fulfillment": 4, "quality": 3, "preservation": 2}', 4, 3, 2, "json"),
    ('{"fulfillment": "3", "quality": "2/3", "preservation": 3.0, "reasoning": "ok"}', 3, 2, 3, "json"),
    ('{"Request Fulfillment": 2, "Image Quality": 1, "Preservation": 0}', 2, 1, 0, "json"),
    ('{"scores": {"fulfillment": {"score": 1, "reason": "barely"}, "quality": 2, "preservation": 2}}',
     1, 2, 2, "json"),
    ('```json\n{"fulfillment": 3, "quality": 2, "preservation": 3,\n "reasoning": "minor halo"}\n```',
     3, 2, 3, "fenced_json"),
    ('Here is my evaluation:\n```\n{"fulfillment": 0, "quality": 3, "preservation": 3}\n```\nThanks.',
     0, 3, 3, "fenced_json"),
    ('Sure! {"fulfillment": 4, "quality": 2, "preservation": 1, "reasoning": "x"} Hope this helps.',
     4, 2, 1, "embedded_json"),
    ("**Request Fulfillment** (0–4 points): 3/4 – the coat is red but the hair is untouched.\n"
     "**Image Quality** (0–3 points): 2/3 – slight halo.\n**Preservation** (0–3 points): 3/3.\nTotal: 8/10",
     3, 2, 3, "text"),
    ("Request Fulfillment: 3/4\nImage Quality: 2\nPreservation: 1 out of 3", 3, 2, 1, "text"),
    ("1. Request Fulfillment - 2 points. The lamp was added.\n2. Image Quality: 1 point.\n"
     "3. Preservation = 2", 2, 1, 2, "text"),
    ("fulfillment score: 3.5/4, quality score is 2, preservation score: 2.5", 3.5, 2, 2.5, "text"),
    ("I'm sorry that the image is dark, but: Request Fulfillment: 1/4, Image Quality: 1/3, Preservation: 3/3",
     1, 1, 3, "text"),
    # Shapes open judges write when vLLM serves them without a grammar (structured: false).
    # A Python dict literal (the model prints a dict; single quotes, apostrophes escaped or in "...").
    ("{'reasoning': 'The sky is red.', 'fulfillment': 4, 'quality': 3, 'preservation': 2}", 4, 3, 2, "json"),
    ("{'reasoning': \"The hat isn't there\", 'fulfillment': 1, 'quality': 3, 'preservation': 3}", 1, 3, 3, "json"),
    ("```python\n{'fulfillment': 2, 'quality': 2, 'preservation': 1}\n```", 2, 2, 1, "fenced_json"),
    ("Here is the evaluation: {'fulfillment': 3, 'quality': 2, 'preservation': 3, 'reasoning': 'ok'}.",
     3, 2, 3, "embedded_json"),
    # Near-JSON: a trailing comma, bare keys (JavaScript style), JSON encoded once more as a string.
    ('{"fulfillment": 3, "quality": 2, "preservation": 3,}', 3, 2, 3, "json"),
    ('{fulfillment: 4, quality: 3, preservation: 3, reasoning: "clean edit"}', 4, 3, 3, "json"),
    ('"{\\"fulfillment\\": 2, \\"quality\\": 1, \\"preservation\\": 3}"', 2, 1, 3, "json"),
    # Reasoning models: <think> blocks (or only the closing tag, the opening one being in the prompt,
    # or Mistral's [THINK]) hold drafts, not the answer; GLM-V boxes its answer.
    ('<think>Fulfillment may be 2... no, the hat is there: 4.</think>\n{"fulfillment": 4, "quality": 3, '
     '"preservation": 3}', 4, 3, 3, "json"),
    ('The user wants a red sky. Fulfillment 2? The sky is red, so 4.\n</think>\n\n{"fulfillment": 4, '
     '"quality": 2, "preservation": 3}', 4, 2, 3, "json"),
    ('[THINK]Quality: 1? No, it is clean.[/THINK]Request Fulfillment: 3\nImage Quality: 3\nPreservation: 2',
     3, 3, 2, "text"),
    ('<|begin_of_box|>{"fulfillment": 1, "quality": 1, "preservation": 0}<|end_of_box|>', 1, 1, 0, "json"),
    ("<answer>{'fulfillment': 4, 'quality': 3, 'preservation': 3}</answer>", 4, 3, 3, "json"),
    # Keys with the rubric's range, a common misspelling, "N out of M", nested lists of criteria.
    ('{"Request Fulfillment (0-4)": 3, "Image Quality (0-3)": 2, "Preservation (0-3)": 2}', 3, 2, 2, "json"),
    ('{"fullfillment": 2, "quality": 3, "preservation": 3}', 2, 3, 3, "json"),
    ('{"fulfillment": "3 out of 4", "quality": "2 out of 3", "preservation": "3 points"}', 3, 2, 3, "json"),
    ('{"scores": [{"criterion": "Request Fulfillment", "score": 2}, {"criterion": "Image Quality", "score": 1}, '
     '{"criterion": "Preservation", "score": 3}], "reasoning": "x"}', 2, 1, 3, "json"),
    ('[{"name": "fulfillment", "score": 4}, {"name": "quality", "score": 2}, {"name": "preservation", "score": 1}]',
     4, 2, 1, "json"),
    # A Markdown table, and the same scores restated (agreeing) in a summary.
    ("| Criterion | Score |\n|---|---|\n| Request Fulfillment | 3/4 |\n| Image Quality | 2 |\n"
     "| Preservation | 3 |\n\n**Total: 8/10**", 3, 2, 3, "text"),
    ("Request Fulfillment: 2\nImage Quality: 2\nPreservation: 3\n\nSummary: Request Fulfillment: 2, "
     "Image Quality: 2, Preservation: 3.", 2, 2, 3, "text"),
    ('```json\n{"fulfillment": 3, "quality": 2, "preservation": 3}\n```\nIn short: {"fulfillment": 3, '
     '"quality": 2, "preservation": 3}', 3, 2, 3, "fenced_json"),
]


@pytest.mark.parametrize("reply,fulfillment,quality,preservation,parsed_from", PARSED)
def test_realistic_replies_parse(reply, fulfillment, quality, preservation, parsed_from):
    scores = parse_judgment(reply)
    assert (scores.fulfillment, scores.quality, scores.preservation) == (fulfillment, quality, preservation)
    assert scores.total == fulfillment + quality + preservation
    assert scores.parsed_from == parsed_from


def test_total_is_the_sum_not_the_stated_total():
    scores = parse_judgment('{"fulfillment": 2, "quality": 2, "preservation": 2, "total": 9}')
    assert scores.total == 6
    assert "stated total 9" in scores.notes[0]


def test_reasoning_is_kept():
    assert parse_judgment('{"fulfillment": 2, "quality": 2, "preservation": 2, "reasoning": "why"}').reasoning == "why"


INVALID = [
    ('{"fulfillment": 5, "quality": 2, "preservation": 2}', "outside 0-4"),
    ('{"fulfillment": 3, "quality": -1, "preservation": 2}', "outside 0-3"),
    ('{"fulfillment": 3, "quality": 2, "preservation": 4}', "outside 0-3"),
    ("Request Fulfillment: 7/10\nImage Quality: 2/3\nPreservation: 3/3", "not on the 0-4 scale"),
    ('{"fulfillment": "3/10", "quality": 2, "preservation": 2}', "not on the 0-4 scale"),
    ("Request Fulfillment: 6\nImage Quality: 2\nPreservation: 3", "outside 0-4"),
    ('{"fulfillment": 3, "quality": 2}', "no score for preservation"),
    ('{"fulfillment": "great", "quality": 2, "preservation": 2}', "not a number"),
    ('{"fulfillment": 3, "quality": 2, "preserv', "no scores found"),
    ("The edit looks good overall.", "no scores found"),
    ("", "empty reply"),
    ("   \n", "empty reply"),
    # Ambiguous: these stay invalid however the reader is extended ("never guess").
    ("Scores: 3, 2, 3", "no scores found"),  # numbers without labels
    ("[3, 2, 3]", "no scores found"),
    ("Request Fulfillment: 3-4\nImage Quality: 2\nPreservation: 3", "range or alternatives"),
    ("Request Fulfillment: 3 or 4, Image Quality: 2, Preservation: 3", "range or alternatives"),
    ('{"fulfillment": "3-4", "quality": 2, "preservation": 3}', "not a number"),
    ('First impression: {"fulfillment": 2, "quality": 2, "preservation": 3}. On reflection: '
     '{"fulfillment": 4, "quality": 2, "preservation": 3}', "conflicting scores"),
    ("Request Fulfillment: 2. Image Quality: 2. Preservation: 3. Looking again, Request Fulfillment: 3.",
     "more than once with different scores"),
    ('<think>{"fulfillment": 4, "quality": 3, "preservation": 3} seems right, let me check the sky', "reasoning but no answer"),
    ("{'fulfillment': 'three', 'quality': 2, 'preservation': 3}", "not a number"),
    ("{'fulfillment': 8, 'quality': 2, 'preservation': 3, 'scale': 10}", "outside 0-4"),
]


@pytest.mark.parametrize("reply,message", INVALID)
def test_invalid_replies_are_errors_not_zero(reply, message):
    with pytest.raises(JudgmentParseError, match=message):
        parse_judgment(reply)


# Degenerate replies of an open judge cut at max_tokens: floods of nested brackets took seconds
# (every nested span was compiled as a Python literal). A score inside the flood is still read.
DEGENERATE = [
    "{[" * 2000 + "]}" * 2000,
    '{"a":' * 1000 + "1" + "}" * 1000,
    "[" + "[1]," * 2000 + "]",
]


@pytest.mark.parametrize("reply", DEGENERATE, ids=range(len(DEGENERATE)))
def test_bracket_floods_are_read_in_bounded_time(reply):
    import time

    start = time.perf_counter()
    with pytest.raises(JudgmentParseError, match="no scores found"):
        parse_judgment(reply)
    assert time.perf_counter() - start < 1.0  # generous: each takes well under 100 ms


def test_scores_nested_in_a_bracket_flood_are_still_read():
    scores = '{"fulfillment": 4, "quality": 3, "preservation": 2}'
    reply = "[" * 300 + scores + "]" * 300
    assert (parse_judgment(reply).fulfillment, parse_judgment(reply).preservation) == (4, 2)


REFUSALS = [
    "I'm sorry, but I can't help with evaluating this image.",
    "I cannot assess images of real people.",
    "Unable to evaluate: the content violates our content policy.",
    "As an AI, I won't rate this.",
]


@pytest.mark.parametrize("reply", REFUSALS)
def test_refusals_are_reported_as_refusals(reply):
    with pytest.raises(JudgeRefusal) as info:
        parse_judgment(reply)
    assert info.value.kind == "refusal"
    assert info.value.raw == reply


def test_prompt_is_the_papers_table_2_with_the_request_inserted():
    text = judge_prompt("Change the coat to scarlet")
    assert text.startswith("You are an expert image quality evaluator. You will be shown two images:")
    assert '**Edit Request:** "Change the coat to scarlet"' in text
    for line in ("1. **Request Fulfillment** (0–4 points): Did the edit successfully accomplish what was requested?",
                 "2. **Image Quality** (0–3 points): Is the edited image realistic, coherent, and high quality?",
                 "3. **Preservation** (0–3 points): Are unrelated parts of the image properly preserved?",
                 "  - 0: Major damage to unrelated areas"):
        assert line in text
    assert text.endswith("A score of 10 means perfect execution in all aspects.")
    assert len(judge_prompt_sha256()) == 64


def test_schema_bounds_match_the_rubric():
    props = JUDGE_SCHEMA["properties"]
    assert (props["fulfillment"]["maximum"], props["quality"]["maximum"], props["preservation"]["maximum"]) == (4, 3, 3)
    assert set(JUDGE_SCHEMA["required"]) == set(props)
    json.dumps(JUDGE_SCHEMA)


def test_importing_the_eval_package_is_light():
    code = ("import sys, imageedit_r1.eval, imageedit_r1.agents.judge, imageedit_r1.eval.config\n"
            "print(','.join(m for m in ('numpy', 'matplotlib', 'openai', 'google.genai', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
