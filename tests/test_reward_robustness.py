"""The reward on what a policy at temperature 1.0 really emits: degenerate tails and floods scored
in time linear in their length, end-of-turn tokens, and one validation of the weights on every path."""

import json
import math
import time

import pytest

from imageedit_r1.decomposition import MAX_LIST_ITEMS, Decomposition, parse, strip_end_of_turn
from imageedit_r1.rewards import KEYS, resolve_weights, score

TRUTH = json.dumps({"actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]})
PERFECT = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"], "both red").render()

# Each builds a degenerate rollout of about n characters; together they are the kinds that made
# the regex parser quadratic (a tail of whitespace after a cut "<", floods of tags, brackets,
# fences that never close, whitespace inside a "<").
DEGENERATE = {
    "newline tail after '<'": lambda n: PERFECT[:60] + "\n<" + "\n" * n,
    "whitespace inside '<'": lambda n: "<" + " " * n + "/",
    "tabs and spaces inside '<'": lambda n: "<" + " \t" * (n // 2) + "x",
    "flood of <think>": lambda n: "<think>" * (n // 7),
    "flood of </think> then <think>": lambda n: "</think>" * (n // 8) + "<think>",
    "flood of <action>[": lambda n: "<action>[" * (n // 9),
    "flood of brackets in a list": lambda n: "<action>[" + "[]," * (n // 3) + "]</action>",
    "unclosed fence of spaces": lambda n: "```" + " " * n,
    "unclosed fence of letters": lambda n: "<goals>```" + "a" * n,
    "flood of '< /'": lambda n: "< /" * (n // 3),
    "comma flood": lambda n: "<think>x</think><action>" + "a," * (n // 2) + "</action>",
    "line flood": lambda n: "<think>x</think><subjects>" + "- coat\n" * (n // 7),
    "flood of '<' after a tag": lambda n: "<think>x</think><goals>" + "<" * n,
    "ligature flood in one item": lambda n: '<think>x</think><subjects>["' + "\ufdfa" * (n // 3) + '"]</subjects>',
}


def _cpu_seconds(text: str) -> float:
    from imageedit_r1.rewards import _item, normalize

    best = math.inf
    for _ in range(3):
        normalize.cache_clear()  # cold caches: a training step sees each rollout once
        _item.cache_clear()
        start = time.process_time()
        score(text, TRUTH)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_degenerate_rollouts_score_in_bounded_time_per_character(kind):
    # The bound is generous (the benchmark measures ~0.1 us/character or less; the quadratic parser
    # took 1,200 us/character on a 20k newline tail); the growth check catches a quadratic path.
    long_text, short_text = DEGENERATE[kind](20_000), DEGENERATE[kind](2_000)
    result = score(long_text, TRUTH)
    assert tuple(result) == KEYS and all(0.0 <= v <= 1.0 for v in result.values())
    long_seconds, short_seconds = _cpu_seconds(long_text), _cpu_seconds(short_text)
    assert long_seconds / len(long_text) < 20e-6, f"{kind}: {long_seconds * 1e6 / len(long_text):.1f} us per character"
    assert long_seconds < 0.002 + 40 * short_seconds, f"{kind}: {long_seconds:.4f}s at 20k vs {short_seconds:.4f}s at 2k"


def test_the_reported_rollout_keeps_the_credit_of_its_complete_tags():
    cut = PERFECT[: PERFECT.index("<goals>")] + "\n<" + "\n" * 3000
    result = score(cut, TRUTH)
    assert result["action"] == 1.0 and result["subject"] == 1.0 and result["goal"] == 0.0 and result["format"] == 0.0


@pytest.mark.parametrize("tail", ["<|im_end|>", "<|im_end|>\n", "\n<|im_end|><|endoftext|><|endoftext|>", "<|endoftext|>" * 500])
def test_end_of_turn_and_padding_tokens_at_the_end_are_not_content(tail):
    assert score(PERFECT + tail, TRUTH) == score(PERFECT, TRUTH) == dict.fromkeys(KEYS, 1.0)
    assert strip_end_of_turn(PERFECT + tail) == PERFECT


def test_a_special_token_inside_the_answer_still_breaks_the_format():
    inside = PERFECT.replace("</subjects>", "</subjects><|im_end|>")
    assert score(inside, TRUTH)["format"] == 0.0
    assert strip_end_of_turn("answer") == "answer" and strip_end_of_turn("answer \n") == "answer \n"


def test_a_response_decoded_with_special_tokens_by_the_qwen_tokenizer_scores_one():
    # verl can decode rollouts with skip_special_tokens=False: the chat template's end of turn and
    # the padding that follows come back as text. The tokenizer has Qwen2.5-VL's special tokens.
    from transformers import PreTrainedTokenizerFast

    from imageedit_r1.testing.tiny_qwen import build_tokenizer

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    ids = tokenizer.encode(PERFECT, add_special_tokens=False)
    ids += tokenizer.convert_tokens_to_ids(["<|im_end|>"]) + [tokenizer.pad_token_id] * 3
    decoded = tokenizer.decode(ids, skip_special_tokens=False)
    assert decoded.endswith("<|im_end|>" + tokenizer.pad_token * 3)
    assert score(decoded, TRUTH)["overall"] == 1.0


def test_a_list_longer_than_the_cap_is_degenerate_and_scores_zero():
    flood = Decomposition(["Recoloring"], [f"item {i}" for i in range(MAX_LIST_ITEMS + 1)], ["scarlet or copper red"], "t")
    result = score(flood.render(), TRUTH)
    assert result["subject"] == 0.0 and result["action"] == 1.0 and result["goal"] == 1.0
    assert len(parse("<action>" + "Recoloring," * 10_000 + "</action>").decomposition.actions) == MAX_LIST_ITEMS + 1


def test_tolerant_repairs_still_read_near_misses():
    spaced = PERFECT.replace("<subjects>", "< Subjects >").replace("</subjects>", "</ subjects>")
    result = parse(spaced)
    assert result.decomposition.subjects == ["coat", "hair"] and "normalised tag case or spacing" in result.repairs
    unclosed = '<think>t</think><action>["Recoloring"]<subjects>["coat"]</subjects><goals>["red"]'
    result = parse(unclosed)
    assert result.decomposition.actions == ["Recoloring"] and result.decomposition.goals == ["red"]
    assert "action: closed an unclosed tag" in result.repairs
    plural = PERFECT.replace("<action>", "<actions>").replace("</action>", "</actions>")
    assert parse(plural).decomposition.actions == ["Recoloring"]
    fenced = "```xml\n" + PERFECT.replace("<action>", "<Action>") + "\n```"
    assert parse(fenced).decomposition.goals == ["scarlet or copper red"]


# ----------------------------------------------------------------------------- weights


BAD_WEIGHTS = [
    ({"goals": 0}, "did you mean 'goal'"),
    ({"format": float("nan")}, "must be finite"),
    ({"goal": float("inf")}, "must be finite"),
    ({"goal": -0.5}, "non-negative"),
    ({"format": 0, "action": 0, "subject": 0, "goal": 0}, "all zero"),
    ({"goal": "heavy"}, "not a number"),
    ({"goal": True}, "not a bool"),
    ({"format": 1e308, "action": 1e308}, "overflow"),
]


def test_a_bool_weight_is_rejected_after_the_equal_number_was_accepted():
    # False == 0 and both hash alike: validating weights once per distinct value must still
    # tell them apart, whatever was scored before.
    assert score(PERFECT, TRUTH, {"goal": 0})["overall"] == 1.0
    with pytest.raises(ValueError, match="not a bool"):
        score(PERFECT, TRUTH, {"goal": False})
    assert score(PERFECT, TRUTH, {"goal": 1})["overall"] == 1.0
    with pytest.raises(ValueError, match="not a bool"):
        score(PERFECT, TRUTH, {"goal": True})


@pytest.mark.parametrize(("weights", "message"), BAD_WEIGHTS)
def test_one_validation_rejects_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        resolve_weights(weights)
    with pytest.raises(ValueError, match=message):
        score(PERFECT, TRUTH, weights)


@pytest.mark.parametrize(("weights", "message"), BAD_WEIGHTS)
def test_the_verl_and_easyr1_paths_reject_the_same_weights(weights, message):
    from imageedit_r1.integrations.easyr1 import compute_score as easyr1_score
    from imageedit_r1.integrations.verl import compute_score as verl_score

    with pytest.raises(ValueError, match=message):
        verl_score("psr", PERFECT, TRUTH, None, **weights)
    with pytest.raises(ValueError, match=message):
        easyr1_score([{"response": PERFECT, "response_length": 10, "ground_truth": TRUTH}], **weights)


def test_verl_runtime_keyword_arguments_are_not_weights():
    from imageedit_r1.integrations.verl import compute_score as verl_score

    result = verl_score("psr", PERFECT, TRUTH, {}, reward_router_address=None, reward_model_tokenizer=None, goal=0.5)
    assert result["score"] == 1.0


@pytest.mark.slow
def test_the_verl_plugin_manager_rejects_bad_weights_when_it_is_built():
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import load_reward_manager

    from imageedit_r1.integrations import verl_plugin  # noqa: F401  (registers the manager)

    config = OmegaConf.create({"reward": {
        "reward_manager": {"source": "register", "name": "imageedit_r1"},
        "custom_reward_function": {"path": "pkg://imageedit_r1.integrations.verl", "name": "compute_score",
                                   "reward_kwargs": {"goals": 0.0}},
    }})
    with pytest.raises(ValueError, match="did you mean 'goal'"):
        load_reward_manager(config, tokenizer=None)


def test_preflight_reports_bad_weights_for_both_recipes():
    from imageedit_r1.train import preflight

    report = preflight.Report()
    preflight.check_reward_weights(report, "worker.reward.reward_function_kwargs", '{"format": NaN}')
    preflight.check_reward_weights(report, "reward.custom_reward_function.reward_kwargs", {"goals": 0})
    preflight.check_reward_weights(report, "worker.reward.reward_function_kwargs", '{"goal": 0.5}')
    assert len(report.problems) == 2
    assert "must be finite" in report.problems[0] and "did you mean 'goal'" in report.problems[1]


def test_quote_characters_inside_list_items_are_kept_and_split_pieces_lose_their_quotes():
    listed = parse('<think>t</think><action>["Recoloring"]</action><subjects>["\'80s car"]</subjects><goals>[]</goals>')
    assert listed.decomposition.subjects == ["'80s car"]  # a JSON item's own apostrophe stays
    split = parse("<think>t</think><action>Recoloring</action><subjects>'coat', \"hair\"</subjects><goals></goals>")
    assert split.decomposition.subjects == ["coat", "hair"]
