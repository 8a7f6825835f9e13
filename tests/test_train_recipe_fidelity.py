"""The TRL recipe against the paper's trainer: the GRPO settings each recipe's dry run would launch,
compared one by one (EasyR1's resolved config vs the GRPOConfig TRL's own parser builds), every
difference named with its reason; and LoRA on the language model's projections only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

from imageedit_r1.train import preflight  # noqa: E402
from tests.test_train_recipe_trl import flags_of, run_recipe  # noqa: E402
from tests.test_train_recipes import EASYR1_RECIPE, printed_command  # noqa: E402
from tests.test_train_recipes import run_recipe as run_easyr1_recipe  # noqa: E402

pytestmark = pytest.mark.slow  # two recipe dry runs and TRL's parser

GPUS = 8


@pytest.fixture(scope="module")
def launched(tmp_path_factory, easyr1_layout):
    """(EasyR1 config dict, TRL (data args, GRPOConfig, ModelConfig)) of the two recipes' dry runs."""
    from tests.test_train_recipes import EASYR1_COLUMNS, write_rows

    tmp = tmp_path_factory.mktemp("fidelity")
    train, val = write_rows(tmp / "train.parquet", EASYR1_COLUMNS, 32), write_rows(tmp / "val.parquet", EASYR1_COLUMNS, 4)
    easyr1 = run_easyr1_recipe(EASYR1_RECIPE, "--dry-run", env={"TRAIN_FILES": str(train), "VAL_FILES": str(val),
                                                                 "CHECKPOINT_DIR": str(tmp / "e")},
                               easyr1=easyr1_layout)
    assert easyr1.returncode == 0, easyr1.stderr
    config = preflight.load_easyr1_config(printed_command(easyr1.stdout)[3:])
    return config, trl_dry_run(tmp, {})


def trl_dry_run(tmp: Path, env: dict):
    """What TRL's own parser makes of the TRL recipe's dry-run command (bf16 off: no GPU here)."""
    from imageedit_r1.train.trl_grpo import parse_args

    result = run_recipe("--dry-run", env={"TRAIN_FILES": str(_trl_file(tmp)), "CHECKPOINT_DIR": str(tmp / "ck"), **env})
    assert result.returncode == 0, result.stderr
    _, flags = flags_of(result.stdout)
    argv = [arg for key, values in flags.items() for arg in (f"--{key}", *values)]
    return parse_args([*argv, "--use_cpu", "true", "--bf16", "false"])


def _easyr1(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _off(top_k) -> bool:
    return top_k in (None, 0, -1)


# (setting, EasyR1 value, TRL value) from the two launched configs: equal where nothing is named below.
def settings(config: dict, trl) -> dict[str, tuple]:
    data_args, grpo, model_args = trl
    e = lambda key: _easyr1(config, key)  # noqa: E731
    prompts_per_update = grpo.per_device_train_batch_size * GPUS * grpo.gradient_accumulation_steps / grpo.num_generations
    return {
        "generations per prompt": (e("worker.rollout.n"), grpo.num_generations),
        "prompts per rollout batch": (e("data.rollout_batch_size"), prompts_per_update),
        "prompts per policy update": (e("worker.actor.global_batch_size"), prompts_per_update),
        "updates per rollout batch": (e("data.rollout_batch_size") // e("worker.actor.global_batch_size"),
                                      (grpo.steps_per_generation or grpo.gradient_accumulation_steps)
                                      // grpo.gradient_accumulation_steps),
        "policy epochs per batch": (e("worker.actor.ppo_epochs"), grpo.num_iterations),
        "rollout temperature": (e("worker.rollout.temperature"), grpo.temperature),
        "top_p": (e("worker.rollout.top_p"), grpo.top_p),
        "top_k off": (_off(e("worker.rollout.top_k")), _off(grpo.top_k)),
        "response tokens": (e("data.max_response_length"), grpo.max_completion_length),
        "learning rate": (float(e("worker.actor.optim.lr")), grpo.learning_rate),
        "lr schedule": (e("worker.actor.optim.lr_scheduler_type"), str(grpo.lr_scheduler_type).split(".")[-1].lower()),
        "warmup": (e("worker.actor.optim.lr_warmup_ratio"), grpo.warmup_ratio or grpo.warmup_steps or 0.0),
        "weight decay": (e("worker.actor.optim.weight_decay"), grpo.weight_decay),
        "adam betas": (tuple(e("worker.actor.optim.betas")), (grpo.adam_beta1, grpo.adam_beta2)),
        "gradient clip": (e("worker.actor.max_grad_norm"), grpo.max_grad_norm),
        "epochs": (e("trainer.total_epochs"), grpo.num_train_epochs),
        "seed": (e("data.seed"), grpo.seed),
        "advantage": ("group-normalised" if e("algorithm.adv_estimator") == "grpo" else e("algorithm.adv_estimator"),
                      "group-normalised" if grpo.scale_rewards == "group" else grpo.scale_rewards),
        "rewards combined before normalising": (True, grpo.multi_objective_aggregation == "sum_then_normalize"),
        "reward weights": (tuple(e("worker.reward.reward_function_kwargs")[k] for k in
                                 ("format", "action", "subject", "goal")), tuple(grpo.reward_weights)),
        "KL as a loss term": (e("algorithm.use_kl_loss") and not e("algorithm.disable_kl"), grpo.beta > 0),
        "KL coefficient": (e("algorithm.kl_coef"), grpo.beta),
        "KL estimator": ({"low_var_kl": "k3"}.get(e("algorithm.kl_penalty")), "k3"),  # TRL's only estimator
        "KL weighted by the importance ratio": (False, grpo.use_bias_correction_kl),
        "ratio clip low": (e("worker.actor.clip_ratio_low"), grpo.epsilon),
        "ratio clip high": (e("worker.actor.clip_ratio_high"),
                            grpo.epsilon_high if grpo.epsilon_high is not None else grpo.epsilon),
        "dual clip (negative advantages)": (e("worker.actor.clip_ratio_dual"), grpo.delta),
        "importance ratio level": ({"default": "token"}.get(config["worker"]["actor"].get("loss_type", "default")),
                                   grpo.importance_sampling_level),
        "loss averaging": ({"token": "token mean"}[e("worker.actor.loss_avg_mode")],
                           {"dapo": "token mean"}.get(grpo.loss_type, grpo.loss_type)),
        "reference policy updated": (False, grpo.sync_ref_model),
        "truncated completions masked": (False, grpo.mask_truncated_completions),
        "entropy bonus": (0.0, grpo.entropy_coef),
        "gradient checkpointing": (e("worker.actor.model.enable_gradient_checkpointing"), grpo.gradient_checkpointing),
        "vision tower trained": (not e("worker.actor.model.freeze_vision_tower"), not model_args.use_peft),
        "image min pixels": (e("data.min_pixels"), data_args.min_pixels),
        "image max pixels": (e("data.max_pixels"), data_args.max_pixels),
        "validation decoding": ((e("worker.rollout.val_override_config.temperature"),
                                 e("worker.rollout.val_override_config.n")),
                                (grpo.temperature, grpo.num_generations_eval or grpo.num_generations)),
    }


# Each intentional difference, and why. The test checks that the values do differ: a stale entry fails.
INTENTIONAL = {
    "validation decoding": "TRL evaluates with the training sampling (temperature 1.0, 8 per prompt); it has no "
                           "separate validation sampling. Rewards stay comparable from step to step, not with "
                           "EasyR1's greedy validation",
}
# Differences in how each trainer computes the same setting, which no TRL option changes.
IMPLEMENTATION = [
    "EasyR1 clamps the KL log-ratio to [-20, 20] and the k3 term to [-10, 10]; TRL does not clamp (it matters "
    "only when the policy is far from the reference)",
    "the group std is floored with 1e-6 in EasyR1 and 1e-4 in TRL (a group whose rewards are all equal has "
    "advantage 0 in both)",
    "with USE_VLLM=1 TRL corrects the sampler/trainer mismatch (vllm_importance_sampling_correction); EasyR1 does not",
]


def test_trl_runs_the_easyr1_recipes_grpo_setting_by_setting(launched):
    config, trl = launched
    compared = settings(config, trl)
    assert set(INTENTIONAL) <= set(compared)
    mismatched = {}
    for name, (easyr1, ours) in compared.items():
        same = math.isclose(easyr1, ours) if isinstance(easyr1, float) and isinstance(ours, float) else easyr1 == ours
        if name in INTENTIONAL:
            assert not same, f"{name!r} is listed as an intentional difference but both give {easyr1!r}"
        elif not same:
            mismatched[name] = (easyr1, ours)
    assert not mismatched, f"the TRL recipe departs from EasyR1's: {mismatched}"
    assert len(IMPLEMENTATION) == 3  # named in docs/training.md as well


def test_the_documented_differences_are_the_ones_tested():
    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    for phrase in ("use_bias_correction_kl", "clamps the KL", "1e-4", "vllm_importance_sampling_correction",
                   "training sampling", "lora_vision_tower"):
        assert phrase in text, phrase


def test_lora_adapts_the_language_models_projections_only(tmp_path):
    """USE_LORA=1 as the recipe passes it, on the tiny Qwen2.5-VL, whose vision blocks have
    gate/up/down projections too."""
    pytest.importorskip("peft")
    import transformers
    from peft import get_peft_model

    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl
    from imageedit_r1.train.trl_grpo import peft_config

    data_args, _, model_args = trl_dry_run(tmp_path, {"USE_LORA": "1", "N_GPUS_PER_NODE": "1"})
    assert model_args.use_peft
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny_qwen25vl())
    adapted = [name for name, module in get_peft_model(model, peft_config(model_args, data_args)).named_modules()
               if hasattr(module, "lora_A") and not name.endswith(("lora_A", "lora_B"))]
    assert adapted and all(".language_model." in name for name in adapted), adapted
    assert len(adapted) == 7 * model.config.text_config.num_hidden_layers  # q k v o gate up down per layer

    data_args.lora_vision_tower = True  # asked for: the vision MLPs too
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(build_tiny_qwen25vl())
    both = [name for name, module in get_peft_model(model, peft_config(model_args, data_args)).named_modules()
            if hasattr(module, "lora_A") and not name.endswith(("lora_A", "lora_B"))]
    assert any(".visual." in name for name in both)


def _trl_file(tmp_path) -> Path:
    from tests.trl_fixtures import write_trl_rows

    path = tmp_path / "trl.parquet"
    return path if path.exists() else write_trl_rows(path, 32)  # one rollout batch of the recipe
