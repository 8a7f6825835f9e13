"""chat_batch on the transformers backend with the tiny Qwen2.5-VL: left-padded batches answer exactly
what single calls answer at temperature 0, batches stay within their bounds, and a malformed
conversation (or one that breaks generate) fails alone."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # the tiny Qwen2.5-VL on the CPU

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torchvision")

from PIL import Image  # noqa: E402

from imageedit_r1.backends import BackendError, ChatMessage, ChatResponse, build_backend  # noqa: E402

MAX_TOKENS = 16


def conversations():
    """Images of different sizes (different image-token counts), prompts of different lengths, and one
    conversation without an image: every row of the batch is padded differently."""
    items = [[ChatMessage("user", [Image.new("RGB", (40 + 37 * i, 30 + 11 * i), (30 * i, 120, 200 - 20 * i)),
                                   "Describe what to change" + " and then more" * i])] for i in range(6)]
    items.insert(2, [ChatMessage("system", "Answer briefly."), ChatMessage("user", "Which edit is this?")])
    return items


@pytest.fixture(scope="module")
def backend(tiny_qwen25vl):
    return build_backend("transformers", model=str(tiny_qwen25vl), device="cpu")


@pytest.fixture(scope="module")
def singles(backend):
    return [backend.chat(messages, max_tokens=MAX_TOKENS) for messages in conversations()]


def generate_calls(monkeypatch, backend, fail_above: int | None = None):
    """Record the batch size of every generate call; refuse batches above ``fail_above`` rows (as a
    GPU out of memory would)."""
    sizes: list[int] = []
    original = backend._network.generate

    def recording(**kwargs):
        rows = int(kwargs["input_ids"].shape[0])
        sizes.append(rows)
        if fail_above is not None and rows > fail_above:
            raise RuntimeError(f"CUDA out of memory (a batch of {rows})")
        return original(**kwargs)

    monkeypatch.setattr(backend._network, "generate", recording)
    return sizes


def same(replies, singles):
    return [(r.text, r.completion_tokens, r.prompt_tokens, r.finish_reason) for r in replies] == \
        [(s.text, s.completion_tokens, s.prompt_tokens, s.finish_reason) for s in singles]


def test_a_left_padded_batch_answers_what_single_calls_answer_at_temperature_0(backend, singles, monkeypatch):
    sizes = generate_calls(monkeypatch, backend)
    replies = backend.chat_batch(conversations(), max_tokens=MAX_TOKENS)
    assert sizes == [7]  # one generate for the whole batch
    assert all(isinstance(reply, ChatResponse) for reply in replies)
    assert same(replies, singles)
    assert len({reply.prompt_tokens for reply in replies}) == 7  # every row was padded differently
    assert len({reply.text for reply in replies}) > 1


def test_batches_stay_within_their_size_and_token_bounds_and_answer_the_same(backend, singles, monkeypatch):
    sizes = generate_calls(monkeypatch, backend)
    backend.max_batch_size = 3
    try:
        replies = backend.chat_batch(conversations(), max_tokens=MAX_TOKENS)
    finally:
        backend.max_batch_size = 16
    assert sizes == [3, 3, 1] and same(replies, singles)
    sizes.clear()
    longest = max(reply.prompt_tokens for reply in singles) + MAX_TOKENS
    backend.max_batch_tokens = 2 * longest  # room for two rows of the longest prompt
    try:
        replies = backend.chat_batch(conversations(), max_tokens=MAX_TOKENS)
    finally:
        backend.max_batch_tokens = 32768
    assert max(sizes) <= 2 < sum(sizes) == 7 and same(replies, singles)


def test_a_batch_generate_refuses_is_split_until_every_item_is_answered(backend, singles, monkeypatch):
    sizes = generate_calls(monkeypatch, backend, fail_above=2)
    replies = backend.chat_batch(conversations(), max_tokens=MAX_TOKENS)
    assert same(replies, singles)
    assert sizes[0] == 7 and sum(size for size in sizes if size <= 2) == 7  # the answered calls cover all 7


def test_a_malformed_conversation_fails_alone(backend, tiny_qwen25vl, singles):
    items = conversations()
    items.insert(1, [ChatMessage("user", "Describe."), ChatMessage("assistant", "A red square.")])
    items.insert(4, [])
    replies = backend.chat_batch(items, max_tokens=MAX_TOKENS)
    assert isinstance(replies[1], ValueError) and "last message" in str(replies[1])
    assert isinstance(replies[4], ValueError) and "at least one message" in str(replies[4])
    answered = [reply for index, reply in enumerate(replies) if index not in (1, 4)]
    assert same(answered, singles)
    # Without an image budget the processor itself refuses an image 250 times wider than high.
    raw = build_backend("transformers", model=str(tiny_qwen25vl), device="cpu", image_budget="off")
    banner = [ChatMessage("user", [Image.new("RGB", (5000, 20)), "Describe."])]
    good = [ChatMessage("user", [Image.new("RGB", (56, 56), (200, 10, 10)), "Describe."])]
    refused, answered = raw.chat_batch([banner, good], max_tokens=4)
    assert isinstance(refused, ValueError) and "aspect ratio" in str(refused)
    assert answered.text == raw.chat(good, max_tokens=4).text
    with pytest.raises(BackendError, match="max_batch_size"):
        build_backend("transformers", model=str(tiny_qwen25vl), device="cpu", max_batch_size=0)


def test_plan_batch_on_the_tiny_model_equals_planning_one_request_at_a_time(tiny_qwen25vl, monkeypatch):
    from imageedit_r1.pipeline import ImageEditR1

    agent = {"backend": "transformers", "model": str(tiny_qwen25vl), "max_tokens": 12, "options": {"device": "cpu"}}
    pipe = ImageEditR1.from_config({"decomposer": agent, "on_decompose_failure": "keywords",
                                    "on_sequence_failure": "template"})
    images = [Image.new("RGB", (60 + 20 * i, 40), (40 * i, 90, 160)) for i in range(4)]
    requests = ["Make the sky orange", "Remove the car and add a hat", "Recolor the coat to scarlet", "Blur it"]
    sizes = generate_calls(monkeypatch, pipe.decomposer.backend)
    plans = pipe.plan_batch(images, requests)
    # Decompose 4, repair 4 (random weights never write the tags), sequence 4, re-ask 4.
    assert sizes == [4, 4, 4, 4]
    for image, request, plan in zip(images, requests, plans, strict=True):
        single = pipe.plan(image, request)
        assert plan.record["raw_outputs"] == single.record["raw_outputs"]
        assert plan.record["tokens"] == single.record["tokens"]
        assert (plan.decomposition, plan.sub_requests) == (single.decomposition, single.sub_requests)
