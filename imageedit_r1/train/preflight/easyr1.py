"""EasyR1's preflight: its config keys (from the pinned key list), its batch arithmetic
(``ray_trainer.py``, ``fsdp_workers.py``), its data, model, prompt, reward and image budget."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from imageedit_r1.train.preflight.common import (
    GROUP_ESTIMATORS,
    PreflightError,
    Report,
    as_list,
    check_data_columns,
    check_data_files,
    check_gpus,
    check_model_path,
    check_one_step,
    check_reward_weights,
    flatten,
    get_dotted,
    positive_int,
)

EASYR1_KEYS_FILE = Path(__file__).parents[1] / "easyr1_config_keys.txt"


@dataclass(frozen=True)
class KeySet:
    """Dotted keys a config accepts; ``mappings`` are free-form dicts (any sub-key accepted)."""

    keys: frozenset[str]
    mappings: frozenset[str]
    source: str

    def accepts(self, key: str) -> bool:
        if key in self.keys or key in self.mappings:
            return True
        return any(key.startswith(prefix + ".") for prefix in self.mappings)

    def suggest(self, key: str) -> str | None:
        close = difflib.get_close_matches(key, sorted(self.keys | self.mappings), n=1, cutoff=0.6)
        return close[0] if close else None


@lru_cache(maxsize=1)
def easyr1_keys() -> KeySet:
    keys, mappings, source = set(), set(), ""
    for line in EASYR1_KEYS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):
            match = re.search(r"at commit ([0-9a-f]{40})", line)
            source = match.group(1) if match else source
            continue
        if line.endswith(".*"):
            mappings.add(line[:-2])
        elif line:
            keys.add(line)
    return KeySet(frozenset(keys), frozenset(mappings), source)


def unknown_easyr1_keys(config: dict) -> list[str]:
    keyset = easyr1_keys()
    messages = []
    for key in flatten(config, stop_at=keyset.mappings):
        if not keyset.accepts(key):
            hint = keyset.suggest(key)
            messages.append(
                f"unknown EasyR1 config key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            )
    return messages


def load_easyr1_config(overrides: Sequence[str]) -> dict:
    """Read the way ``verl.trainer.main`` of EasyR1 does: the ``config=FILE`` (the last one given,
    as its dotlist reads), then the other ``key=value`` overrides, through the config door.

    Unlike EasyR1 we start from an empty config instead of its dataclass defaults, so that a key
    EasyR1 does not define is reported (``unknown_easyr1_keys``) instead of silently merged.
    """
    from imageedit_r1.config import ConfigError, load_config

    dotlist = [o for o in overrides if not o.startswith("config=")]
    files = [o.split("=", 1)[1] for o in overrides if o.startswith("config=")]
    try:
        return load_config(None, files[-1] if files else None, dotlist)
    except (FileNotFoundError, ConfigError) as exc:
        raise PreflightError([str(exc)]) from None


@dataclass(frozen=True)
class _Batches:
    """EasyR1's sizes that must divide one another (ray_trainer.py and fsdp_workers.py)."""

    nnodes: int
    gpus: int
    rollout: int
    update: int  # worker.actor.global_batch_size, prompts per actor update
    n: int
    micro_update: int
    micro_experience: int
    tensor_parallel: int
    ulysses: int

    def problems(self) -> list[str]:
        found = []
        if self.rollout % self.update:
            found.append(f"data.rollout_batch_size ({self.rollout}) must be divisible by "
                         f"worker.actor.global_batch_size ({self.update})")
        if (self.rollout * self.n) % self.micro_experience:
            found.append(f"data.rollout_batch_size * worker.rollout.n ({self.rollout * self.n}) must be divisible by "
                         f"worker.actor.micro_batch_size_per_device_for_experience ({self.micro_experience})")
        world = self.gpus * self.nnodes
        if world % self.ulysses:
            found.append(f"{world} GPUs are not divisible by worker.actor.ulysses_size ({self.ulysses})")
        else:
            data_parallel = world // self.ulysses
            per_device = self.update * self.n // data_parallel
            if per_device == 0:
                found.append(f"worker.actor.global_batch_size * worker.rollout.n ({self.update * self.n}) is smaller "
                             f"than the data-parallel size ({data_parallel})")
            elif per_device % self.micro_update:
                found.append(f"per-device update batch ({per_device} = {self.update}*{self.n}/{data_parallel}) must be "
                             f"divisible by worker.actor.micro_batch_size_per_device_for_update ({self.micro_update})")
        if world % self.tensor_parallel:
            found.append(f"{world} GPUs are not divisible by worker.rollout.tensor_parallel_size "
                         f"({self.tensor_parallel})")
        return found

    def fitting(self, rows: int) -> str | None:
        """The largest rollout batch of at most ``rows`` prompts (and the largest update batch in it)
        that passes every check, as settings; None when none does."""
        for rollout in range(rows, 0, -1):
            for update in range(min(self.update, rollout), 0, -1):
                if rollout % update == 0 and not replace(self, rollout=rollout, update=update).problems():
                    return (f"data.rollout_batch_size={rollout} worker.actor.global_batch_size={update} fit "
                            f"(ROLLOUT_BATCH_SIZE={rollout} GLOBAL_BATCH_SIZE={update} in the recipe)")
        return None


def check_easyr1(config: dict, *, check_files: bool = True, check_devices: bool = True) -> Report:
    """EasyR1's own constraints (ray_trainer.py and fsdp_workers.py), checked before Ray starts."""
    report = Report()
    for message in unknown_easyr1_keys(config):
        report.fail(message)

    nnodes = positive_int(report, "trainer.nnodes", get_dotted(config, "trainer.nnodes", 1))
    gpus = positive_int(report, "trainer.n_gpus_per_node", get_dotted(config, "trainer.n_gpus_per_node", 8))
    rollout_bs = positive_int(report, "data.rollout_batch_size", get_dotted(config, "data.rollout_batch_size", 512))
    global_bs = positive_int(
        report, "worker.actor.global_batch_size", get_dotted(config, "worker.actor.global_batch_size", 256)
    )
    n = positive_int(report, "worker.rollout.n", get_dotted(config, "worker.rollout.n", 1))
    micro_update = positive_int(
        report,
        "worker.actor.micro_batch_size_per_device_for_update",
        get_dotted(config, "worker.actor.micro_batch_size_per_device_for_update", 4),
    )
    micro_exp = positive_int(
        report,
        "worker.actor.micro_batch_size_per_device_for_experience",
        get_dotted(config, "worker.actor.micro_batch_size_per_device_for_experience", 16),
    )
    tp = positive_int(
        report, "worker.rollout.tensor_parallel_size", get_dotted(config, "worker.rollout.tensor_parallel_size", 2)
    )
    ulysses = positive_int(report, "worker.actor.ulysses_size", get_dotted(config, "worker.actor.ulysses_size", 1))

    estimator = get_dotted(config, "algorithm.adv_estimator", "grpo")
    if estimator in GROUP_ESTIMATORS and n is not None and n < 2:
        report.fail(f"{estimator} compares rollouts within a group: worker.rollout.n must be > 1, got {n}")
    sizes = (nnodes, gpus, rollout_bs, global_bs, n, micro_update, micro_exp, tp, ulysses)
    batches = _Batches(*sizes) if None not in sizes else None
    if batches is not None:
        for problem in batches.problems():
            report.fail(problem)

    if check_files:
        check_data_files(report, "data.train_files", get_dotted(config, "data.train_files"), required=True)
        check_data_files(report, "data.val_files", get_dotted(config, "data.val_files"), required=False)
        columns = [get_dotted(config, "data.prompt_key", "problem"), get_dotted(config, "data.answer_key", "answer"),
                   get_dotted(config, "data.image_key", "images")]
        rows = check_data_columns(report, "easyr1", config.get("data", {}), columns)
        if batches is not None:
            check_one_step(report, "data.train_files", rows, "data.rollout_batch_size", rollout_bs, batches.fitting)
        check_model_path(report, "worker.actor.model.model_path", get_dotted(config, "worker.actor.model.model_path"))
        prompt = get_dotted(config, "data.format_prompt")
        if prompt and not os.path.isfile(prompt):
            report.fail(f"data.format_prompt: template not found: {prompt}")
        _check_easyr1_budget(report, config)
        reward = get_dotted(config, "worker.reward.reward_function")
        if not reward:
            report.fail("worker.reward.reward_function is not set")
        elif not os.path.isfile(str(reward).rsplit(":", 1)[0]):
            report.fail(f"worker.reward.reward_function: file not found: {str(reward).rsplit(':', 1)[0]}")
    if "imageedit_r1" in os.path.basename(str(get_dotted(config, "worker.reward.reward_function") or "")):
        check_reward_weights(report, "worker.reward.reward_function_kwargs",
                             get_dotted(config, "worker.reward.reward_function_kwargs"))
    check_gpus(report, gpus, nnodes, check_devices=check_devices)
    return report


def _check_easyr1_budget(report: Report, config: dict) -> None:
    """EasyR1 resizes to data.min_pixels/max_pixels (its defaults: 262,144 and 4,194,304)."""
    from imageedit_r1.image_budget import ImageBudget, ImageBudgetError
    from imageedit_r1.train.budget_check import check_image_budget

    try:
        budget = ImageBudget(get_dotted(config, "data.min_pixels", 262_144), get_dotted(config, "data.max_pixels", 4_194_304))
    except ImageBudgetError as exc:
        report.fail(f"data.min_pixels/data.max_pixels: {exc}")
        return
    check_image_budget(
        report, "easyr1", train_files=as_list(get_dotted(config, "data.train_files")),
        max_prompt_length=get_dotted(config, "data.max_prompt_length", 512), config_budget=budget,
    )
