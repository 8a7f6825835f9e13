"""Finding JSON in model text: a wrapping fence, fenced blocks, values embedded in prose."""

from imageedit_r1.jsontext import (
    bracketed_spans,
    embedded_json,
    fenced_blocks,
    lenient_literal,
    lenient_literals,
    unfence,
)


def test_unfence_takes_only_a_fence_that_wraps_the_whole_answer():
    assert unfence('  ```json\n{"a": 1}\n```  ') == '{"a": 1}'
    assert unfence('```\n[1, 2]\n```') == "[1, 2]"
    assert unfence('{"a": 1}\n') == '{"a": 1}'
    prose = 'Here:\n```json\n{"a": 1}\n```'
    assert unfence(prose) == prose.strip()  # prose around the fence: left for a stricter reader to reject


def test_fenced_blocks_in_order_with_or_without_a_language_tag():
    text = 'A:\n```json\n{"a": 1}\n```\nB:\n```\n[2]\n```\nC: ```JSON {"c": 3}```'
    assert fenced_blocks(text) == ['{"a": 1}', "[2]", '{"c": 3}']
    assert fenced_blocks("no fence here") == []


def test_embedded_json_outermost_values_in_order():
    text = 'First [see note] {"sub": [1, 2]} then ["x", "y"] and a torn {"a": '
    assert list(embedded_json(text)) == [{"sub": [1, 2]}, ["x", "y"]]


def test_embedded_json_nested_also_yields_inner_values():
    text = 'Scores: {"evaluation": {"quality": 2}, "tags": [{"t": 1}]}.'
    assert list(embedded_json(text, nested=True)) == [
        {"evaluation": {"quality": 2}, "tags": [{"t": 1}]},
        {"quality": 2},
        [{"t": 1}],
        {"t": 1},
    ]
    assert list(embedded_json("plain prose, no JSON")) == []


def test_lenient_literal_reads_near_json_and_nothing_else():
    assert lenient_literal("{'a': 'it\\'s', 'b': True, 'c': None}") == {"a": "it's", "b": True, "c": None}
    assert lenient_literal('{"a": 1, "b": [1, 2,],}') == {"a": 1, "b": [1, 2]}
    assert lenient_literal("{a: 1, long key: 2}") == {"a": 1, "long key": 2}
    assert lenient_literal('"{\\"a\\": 1}"') == {"a": 1}  # JSON inside a JSON string
    assert lenient_literal("('x', 'y')") is None and lenient_literal("3") is None
    assert lenient_literal("{'a': 1") is None and lenient_literal("hello") is None


def test_lenient_literals_in_prose_with_apostrophes_and_brackets_in_strings():
    text = "Don't panic: {'note': \"a [draft] isn't final\", 'n': {'m': 2}} and [1, 2]."
    assert list(lenient_literals(text)) == [{"note": "a [draft] isn't final", "n": {"m": 2}}, {"m": 2}, [1, 2]]
    assert list(bracketed_spans("a } b { c")) == []


def test_values_nested_past_the_stack_are_no_values_and_the_scan_goes_on():
    deep = "[" * 5000 + "]" * 5000
    assert list(embedded_json(f"{deep} then {{\"a\": 1}}")) == [{"a": 1}]
    assert lenient_literal('{"a":' * 3000) is None
    assert all(isinstance(v, list) for v in lenient_literals("[" * 1500 + "]" * 1500))  # no RecursionError
