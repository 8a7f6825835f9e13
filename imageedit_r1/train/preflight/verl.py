"""Upstream verl's preflight: its own hydra config (``ppo_trainer.yaml``) composed with the
overrides, its ``validate_config`` and typed section configs, the reward hook, data, model, GPUs."""

from __future__ import annotations

import re
from collections.abc import Sequence

from imageedit_r1.config import did_you_mean, to_plain
from imageedit_r1.train.preflight import common


def compose_verl_config(overrides: Sequence[str]):
    """verl 0.9.x's own hydra config (``ppo_trainer.yaml``) with our overrides: unknown keys fail here."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            return compose(config_name="ppo_trainer", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        unknown = re.search(r"Could not override '([^']+)'", str(exc))
        if unknown:
            raise common.PreflightError([_unknown_verl_key(unknown.group(1))]) from exc
        raise common.PreflightError([f"verl rejected the overrides: {' '.join(str(exc).split())}"]) from exc


def _unknown_verl_key(key: str) -> str:
    """One line for a key verl's config does not define, with the key probably meant."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        defaults = to_plain(compose(config_name="ppo_trainer"))
    known = list(common.flatten(defaults))
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in known if k.rsplit(".", 1)[0] == parent] or known
    hint = did_you_mean(key, siblings)
    return (f"unknown verl config key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; to add a key verl does not define, write +{key}=...")


def _validation_problem(config) -> str | None:
    """verl's own ``validate_config``, its progress line kept off the terminal."""
    import contextlib
    import io
    import warnings

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # "critic disabled for GRPO" is expected
        try:
            validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        except (AssertionError, ValueError) as exc:
            return f"verl validate_config: {exc}"
    return None


def _mini_batch_problem(config) -> str | None:
    mini = config.actor_rollout_ref.actor.ppo_mini_batch_size
    if config.data.train_batch_size % mini:
        return (f"data.train_batch_size ({config.data.train_batch_size}) must be divisible by "
                f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini})")
    return None


def _fitting(config, rows: int, tries: int = 64) -> str | None:
    """The largest step batch of at most ``rows`` prompts, with the largest update batch dividing it,
    that verl's checks accept (at most ``tries`` validations), as settings; None when none does."""
    import copy

    largest_mini = config.actor_rollout_ref.actor.ppo_mini_batch_size
    for batch in range(rows, 0, -1):
        for mini in range(min(largest_mini, batch), 0, -1):
            if batch % mini:
                continue
            if tries == 0:
                return None
            tries -= 1
            candidate = copy.deepcopy(config)
            candidate.data.train_batch_size = batch
            candidate.actor_rollout_ref.actor.ppo_mini_batch_size = mini
            if _validation_problem(candidate) is None and _mini_batch_problem(candidate) is None:
                return (f"data.train_batch_size={batch} actor_rollout_ref.actor.ppo_mini_batch_size={mini} fit "
                        f"(ROLLOUT_BATCH_SIZE={batch} GLOBAL_BATCH_SIZE={mini} in the recipe)")
    return None


def check_verl(config, *, check_files: bool = True, check_devices: bool = True) -> common.Report:
    """verl's ``validate_config`` plus the reward hook and our data checks."""
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.config import omega_conf_to_dataclass

    report = common.Report()
    problem = _validation_problem(config)
    if problem:
        report.fail(problem)

    # The typed configs verl builds from these sections run their own checks on construction.
    for section in ("actor_rollout_ref.rollout", "algorithm"):
        node = config
        for part in section.split("."):
            node = node[part]
        try:
            omega_conf_to_dataclass(node)
        except Exception as exc:  # hydra wraps the dataclass's own error
            report.fail(f"verl rejects {section}: {exc}")

    n = config.actor_rollout_ref.rollout.n
    if config.algorithm.adv_estimator in common.GROUP_ESTIMATORS and n < 2:
        report.fail(f"{config.algorithm.adv_estimator} needs actor_rollout_ref.rollout.n > 1, got {n}")
    problem = _mini_batch_problem(config)
    if problem:
        report.fail(problem)
    try:
        if get_custom_reward_fn(config) is None:
            report.fail("reward.custom_reward_function.path is not set: verl would use its built-in scorers")
    except Exception as exc:  # import errors of any kind from the user's reward module
        report.fail(f"reward.custom_reward_function cannot be loaded: {exc}")
    reward_fn = config.reward.get("custom_reward_function") or {}
    if "imageedit_r1" in str(reward_fn.get("path") or ""):
        kwargs = to_plain(reward_fn.get("reward_kwargs") or {})
        from imageedit_r1.integrations.verl import VERL_RUNTIME_KWARGS

        common.check_reward_weights(report, "reward.custom_reward_function.reward_kwargs",
                             {k: v for k, v in kwargs.items() if k not in VERL_RUNTIME_KWARGS})

    nnodes = common.positive_int(report, "trainer.nnodes", config.trainer.nnodes)
    gpus = common.positive_int(report, "trainer.n_gpus_per_node", config.trainer.n_gpus_per_node)
    if check_files:
        common.check_data_files(report, "data.train_files", to_plain(config.data.train_files), required=True)
        common.check_data_files(report, "data.val_files", to_plain(config.data.val_files), required=False)
        data = {"train_files": to_plain(config.data.train_files), "val_files": to_plain(config.data.val_files)}
        columns = [config.data.prompt_key, config.data.get("image_key", "images"), "reward_model"]
        rows = common.check_data_columns(report, "verl", data, columns)
        common.check_one_step(report, "data.train_files", rows, "data.train_batch_size", config.data.train_batch_size,
                              lambda rows: _fitting(config, rows))
        common.check_model_path(report, "actor_rollout_ref.model.path", config.actor_rollout_ref.model.path)
        from imageedit_r1.train.budget_check import check_image_budget

        check_image_budget(
            report, "verl", train_files=common.as_list(to_plain(config.data.train_files)),
            max_prompt_length=config.data.max_prompt_length,
        )
    common.check_gpus(report, gpus, nnodes, check_devices=check_devices)
    return report
