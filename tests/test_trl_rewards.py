"""TRL reward functions: TRL's calling convention, both completion shapes, the project's rules and weights."""

from __future__ import annotations

import json
import pickle

import pytest

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.integrations import trl as trl_rewards
from imageedit_r1.rewards import COMPONENTS, score

TRUTH = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"])
RESPONSES = [
    Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"], think="ok").render(),
    Decomposition(["recolor"], ["Coat"], ["copper-red"], think="partly").render(),
    '<action>["Recoloring"]</action><subjects>coat, hair</subjects>',  # near miss: partial content credit
    "",
    "<think>" * 5000,
    "I would make it red.",
]


def _call(func, completions, truths, **extra):
    # Exactly what GRPOTrainer passes: prompts, completions, completion_ids, the columns, and its hooks.
    return func(
        prompts=["p"] * len(completions), completions=completions, completion_ids=[[1]] * len(completions),
        ground_truth=truths, data_source=["imageedit_r1/x"] * len(completions), id=["a"] * len(completions),
        trainer_state=object(), log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None, **extra,
    )


@pytest.mark.slow
def test_one_function_per_component_named_as_trl_logs_it():
    funcs = trl_rewards.reward_funcs()
    assert [f.__name__ for f in funcs] == list(COMPONENTS) == ["format", "action", "subject", "goal"]
    utils = pytest.importorskip("trl.trainer.utils")  # TRL's own naming (and sync/async) of reward callables
    get_callable_name, is_async_callable = utils.get_callable_name, utils.is_async_callable

    assert [get_callable_name(f) for f in funcs] == list(COMPONENTS)
    assert not any(is_async_callable(f) for f in funcs)
    assert pickle.loads(pickle.dumps(trl_rewards.goal_reward)).__name__ == "goal"


@pytest.mark.parametrize("shape", ["plain", "conversational", "blocks"])
def test_each_function_returns_its_component_of_the_shared_score(shape):
    truths = [TRUTH.to_json()] * len(RESPONSES)
    if shape == "plain":
        completions = RESPONSES
    elif shape == "conversational":
        completions = [[{"role": "assistant", "content": r}] for r in RESPONSES]
    else:  # content blocks, after a tool turn
        completions = [
            [{"role": "assistant", "content": [{"type": "text", "text": "draft"}]}, {"role": "tool", "content": "x"},
             {"role": "assistant", "content": [{"type": "text", "text": r[:7]}, {"type": "text", "text": r[7:]}]}]
            for r in RESPONSES
        ]
    expected = [score(r, TRUTH.to_json()) for r in RESPONSES]
    for func in trl_rewards.reward_funcs():
        got = _call(func, completions, truths)
        assert got == [e[func.__name__] for e in expected]
    assert expected[0]["overall"] == 1.0 and expected[1]["action"] == 1.0 and expected[2]["format"] == 0.0
    assert expected[2]["action"] == 1.0 and all(e["overall"] == 0.0 for e in expected[3:])


def test_ground_truth_as_a_dict_and_weights_reproduce_the_projects_overall():
    weights = {"format": 0.1, "action": 0.5, "subject": 0.2, "goal": 0.0}
    trl_weights = trl_rewards.reward_weights(weights)
    assert sum(trl_weights) == pytest.approx(1.0) and trl_weights[3] == 0.0
    truths = [TRUTH.to_dict()] * len(RESPONSES)
    per_func = [_call(f, RESPONSES, truths) for f in trl_rewards.reward_funcs()]
    for i, response in enumerate(RESPONSES):
        trl_reward = sum(w * column[i] for w, column in zip(trl_weights, per_func, strict=True))  # TRL's sum
        assert trl_reward == pytest.approx(score(response, json.dumps(TRUTH.to_dict()), weights)["overall"])


def test_reward_weights_defaults_orders_and_errors():
    assert trl_rewards.reward_weights() == [0.25] * 4
    assert trl_rewards.reward_weights([1, 1, 1, 1]) == [0.25] * 4
    assert trl_rewards.reward_weights({"goal": 0}) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="unknown reward weight"):
        trl_rewards.reward_weights({"formatt": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        trl_rewards.reward_weights([1, -1, 1, 1])
    with pytest.raises(ValueError, match="all zero"):
        trl_rewards.reward_weights([0, 0, 0, 0])
    with pytest.raises(ValueError, match="expected 4 values in the order"):
        trl_rewards.reward_weights([0.5, 0.5])


def test_contract_errors_are_clear():
    with pytest.raises(KeyError, match="export --format trl"):
        trl_rewards.format_reward(prompts=["p"], completions=["x"], answer=["{}"], trainer_state=None)
    with pytest.raises(ValueError, match="completion #1: ground truth must be"):
        trl_rewards.action_reward(completions=["x", "y"], ground_truth=[TRUTH.to_json(), "not json"])
    with pytest.raises(ValueError, match="2 completions but 1 ground truths"):
        trl_rewards.goal_reward(completions=["x", "y"], ground_truth=[TRUTH.to_json()])
    with pytest.raises(TypeError, match="a TRL completion is a string or a list of chat messages"):
        trl_rewards.subject_reward(completions=[42], ground_truth=[TRUTH.to_json()])
    # Odd but legal conversational shapes score 0 instead of failing the step.
    odd = [[], [{"role": "assistant", "content": None}], [{"role": "assistant"}]]
    assert trl_rewards.format_reward(completions=odd, ground_truth=[TRUTH.to_json()] * 3) == [0.0, 0.0, 0.0]
