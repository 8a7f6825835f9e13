"""Finding JSON in model text: a wrapping fence, fenced blocks, values embedded in prose."""

from imageedit_r1.jsontext import embedded_json, fenced_blocks, unfence


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
