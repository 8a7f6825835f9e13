"""The reward plugs into EasyR1 (file loaded by path) and upstream verl 0.9.1 (pkg:// and plugin)."""

import importlib.util
import json
import sys
from functools import partial
from pathlib import Path

import pytest

from imageedit_r1.decomposition import Decomposition
from imageedit_r1.rewards import KEYS

ROOT = Path(__file__).resolve().parents[1]
TRUTH = json.dumps({"actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]})

# A GRPO group of 8 rollouts for one prompt, best to worst.
GROUP = [
    Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"], "t").render(),
    Decomposition(["Recoloring"], ["coat", "hair"], ["copper red"], "t").render(),
    Decomposition(["Recoloring"], ["coat"], ["copper red"], "t").render(),
    Decomposition(["Recoloring"], ["coat"], ["blue"], "t").render(),
    Decomposition(["Removal"], ["coat"], ["blue"], "t").render(),
    '<action>["Removal"]</action><subjects>["shoes"]</subjects><goals>["blue"]</goals>',
    "<think>t</think>I would recolor it.",
    "",
]


def load_easyr1_reward(weights):
    """Load the reward file exactly as EasyR1's FunctionRewardManager does."""
    path = ROOT / "reward_fns" / "imageedit_r1.py"
    spec = importlib.util.spec_from_file_location("custom_reward_fn", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_reward_fn"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_reward_fn", None)
    return module, partial(module.compute_score, **weights)


def test_easyr1_loads_the_reward_file_by_path_and_calls_it_once_per_batch():
    module, reward_fn = load_easyr1_reward({"format": 0.1, "action": 0.3, "subject": 0.3, "goal": 0.3})
    assert module.REWARD_TYPE == "batch"
    assert module.REWARD_NAME == "imageedit_r1"
    inputs = [{"response": r, "response_length": len(r) // 4, "ground_truth": TRUTH} for r in GROUP]
    scores = reward_fn(inputs)
    assert len(scores) == len(GROUP)
    assert all(tuple(s) == KEYS for s in scores)
    overall = [s["overall"] for s in scores]
    assert overall[0] == pytest.approx(1.0)
    assert overall == sorted(overall, reverse=True)
    assert overall[-1] == 0.0


def test_easyr1_kwargs_from_the_command_line_are_validated():
    _, reward_fn = load_easyr1_reward({"gaol": 1.0})
    with pytest.raises(ValueError, match="unknown reward weight"):
        reward_fn([{"response": GROUP[0], "response_length": 1, "ground_truth": TRUTH}])


def test_easyr1_input_without_ground_truth_names_the_problem():
    _, reward_fn = load_easyr1_reward({})
    with pytest.raises(KeyError, match="reward input #0 lacks"):
        reward_fn([{"response": GROUP[0], "response_length": 1}])


@pytest.fixture(scope="module")
def byte_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(GROUP * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def verl_config(**reward):
    from omegaconf import OmegaConf

    return OmegaConf.create({"reward": reward})


def run_manager(manager, tokenizer, responses):
    import numpy as np
    import torch
    from verl import DataProto

    encoded = [tokenizer.encode(r) or [tokenizer.pad_token_id] for r in responses]
    width = max(len(e) for e in encoded)
    prompt_len = 3
    out = []
    for ids, text in zip(encoded, responses, strict=True):
        response_ids = torch.full((1, width), tokenizer.pad_token_id)
        response_ids[0, : len(ids)] = torch.tensor(ids)
        mask = torch.zeros((1, prompt_len + width), dtype=torch.long)
        mask[0, : prompt_len + (len(ids) if text else 0)] = 1
        data = DataProto.from_dict(
            tensors={"responses": response_ids, "attention_mask": mask, "prompts": torch.zeros((1, prompt_len), dtype=torch.long)},
            non_tensors={
                "data_source": np.array(["psr"], dtype=object),
                "reward_model": np.array([{"style": "rule", "ground_truth": TRUTH}], dtype=object),
                "extra_info": np.array([{}], dtype=object),
            },
        )
        out.append(manager.loop.run_until_complete(manager.run_single(data)))
    return out


@pytest.mark.slow
def test_verl_naive_manager_calls_our_function_through_pkg_path(byte_tokenizer):
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(
        reward_manager={"source": "register", "name": "naive"},
        custom_reward_function={"path": "pkg://imageedit_r1.integrations.verl", "name": "compute_score",
                                "reward_kwargs": {"goal": 0.0}},
    )
    manager = load_reward_manager(config, byte_tokenizer)
    results = run_manager(manager, byte_tokenizer, GROUP[:3])
    info = [r["reward_extra_info"] for r in results]
    assert all(set(i) == {"score", *KEYS} for i in info)
    assert results[0]["reward_score"] == pytest.approx(1.0)
    # goal weight 0 from reward_kwargs: the second response loses only on goals -> still 1.0
    assert info[1]["goal"] < 1.0 and results[1]["reward_score"] == pytest.approx(1.0)


@pytest.mark.slow
def test_verl_plugin_entry_point_registers_a_manager_with_our_reward_as_default(byte_tokenizer):
    from verl.trainer.ppo.reward import load_reward_manager

    config = verl_config(reward_manager={"source": "register", "name": "imageedit_r1"}, custom_reward_function={})
    manager = load_reward_manager(config, byte_tokenizer)
    results = run_manager(manager, byte_tokenizer, [GROUP[0], GROUP[4]])
    assert results[0]["reward_score"] == pytest.approx(1.0)
    assert results[1]["reward_score"] < 0.5
    assert set(results[0]["reward_extra_info"]) == {"score", *KEYS}


@pytest.mark.slow
def test_verl_grpo_advantage_ranks_better_decompositions_higher():
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from imageedit_r1.integrations.verl import compute_score

    rewards = [compute_score("psr", r, TRUTH)["score"] for r in GROUP]
    length = 5
    token_rewards = torch.zeros((len(GROUP), length))
    token_rewards[:, -1] = torch.tensor(rewards)
    mask = torch.ones((len(GROUP), length))
    index = ["prompt-0"] * len(GROUP)
    advantages, _ = compute_grpo_outcome_advantage(token_rewards, mask, index)
    per_rollout = advantages[:, 0].tolist()
    assert per_rollout == sorted(per_rollout, reverse=True)
    assert per_rollout[0] > 0 > per_rollout[-1]
    assert sum(per_rollout) == pytest.approx(0.0, abs=1e-5)
