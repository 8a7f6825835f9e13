"""Check a training launch before it starts: config keys, batch arithmetic, files, GPUs.

A bad launch on a GPU cluster costs minutes of Ray start-up and model loading before the trainer
notices a typo or an indivisible batch. These checks mirror the trainers' own constraints and run
in about a second (EasyR1) or the time of one hydra composition (verl).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

EASYR1_KEYS_FILE = Path(__file__).with_name("easyr1_config_keys.txt")
# `owner/name@split` (optionally with a sub-config) is a Hugging Face dataset reference, not a path.
_HUB_DATASET = re.compile(r"^[\w.-]+/[\w.-]+(?:@[\w.\-:\[\]%]+)$")
_HUB_MODEL = re.compile(r"^[\w.-]+/[\w.-]+$")
_GROUP_ESTIMATORS = {"grpo", "rloo"}


class PreflightError(ValueError):
    """The launch would fail; the message lists every problem found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("training launch rejected:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def raise_if_failed(self) -> None:
        if self.problems:
            raise PreflightError(self.problems)


# ---------------------------------------------------------------- EasyR1 key set


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


def flatten(config: Any, prefix: str = "", *, stop_at: Iterable[str] = ()) -> dict[str, Any]:
    """Dotted leaf keys of a nested mapping; keys in ``stop_at`` are kept whole (free-form dicts)."""
    stop = set(stop_at)
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in stop:
            out.update(flatten(value, dotted + ".", stop_at=stop))
        else:
            out[dotted] = value
    return out


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


# ---------------------------------------------------------------- config loading


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``key=value`` overrides from anything else (which is an error for the trainers)."""
    overrides, other = [], []
    for item in argv:
        (overrides if "=" in item and not item.startswith("-") else other).append(item)
    return overrides, other


def load_easyr1_config(overrides: Sequence[str]) -> dict:
    """Merge the way ``verl.trainer.main`` of EasyR1 does: ``config=FILE`` first, then the dotlist.

    Unlike EasyR1 we start from an empty config instead of its dataclass defaults, so that a key
    EasyR1 does not define is reported instead of silently merged.
    """
    from omegaconf import OmegaConf

    dotlist = [o for o in overrides if not o.startswith("config=")]
    files = [o.split("=", 1)[1] for o in overrides if o.startswith("config=")]
    layers = []
    for path in files:
        if not os.path.isfile(path):
            raise PreflightError([f"config file not found: {path}"])
        layers.append(OmegaConf.load(path))
    try:
        layers.append(OmegaConf.from_dotlist(dotlist))
    except Exception as exc:  # omegaconf's grammar errors are several classes
        raise PreflightError([f"cannot parse overrides {dotlist}: {exc}"]) from exc
    merged = OmegaConf.merge(*layers) if layers else OmegaConf.create({})
    return OmegaConf.to_container(merged, resolve=True)


def _get(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


# ---------------------------------------------------------------- shared checks


def _positive_int(report: Report, name: str, value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        report.fail(f"{name} must be a positive integer, got {value!r}")
        return None
    return value


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def check_data_files(report: Report, name: str, value: Any, *, required: bool) -> None:
    paths = _as_list(value)
    if not paths:
        if required:
            report.fail(f"{name} is empty: point it at the exported RL data")
        else:
            report.notes.append(f"{name} is empty: no held-out validation during training")
        return
    for path in paths:
        if os.path.exists(path):
            continue
        if _HUB_DATASET.match(path):
            report.notes.append(f"{name}: {path} will be read from the Hugging Face hub")
            continue
        report.fail(
            f"{name}: data file not found: {path} "
            "(export it with `python -m imageedit_r1.data export`, or set the path)"
        )


def check_data_columns(report: Report, trainer: str, data: dict, columns: list[str], batch_key: str,
                       batch_size: int | None) -> None:
    """The other trainer's export is rejected by its columns; too few rows for one batch is a warning."""
    from imageedit_r1.train.data_files import data_file_problems

    for key in ("train_files", "val_files"):
        paths = [p for p in _as_list(data.get(key)) if os.path.exists(p)]
        problems, warnings = data_file_problems(trainer, f"data.{key}", paths, columns, batch_key,
                                                batch_size if key == "train_files" else None)
        report.problems.extend(problems)
        report.notes.extend(f"warning: {w}" for w in warnings)


def check_model_path(report: Report, name: str, value: Any) -> None:
    if not value:
        report.fail(f"{name} is not set")
        return
    path = str(value)
    if os.path.exists(path):
        return
    if path.startswith(("/", ".", "~")) or not _HUB_MODEL.match(path):
        report.fail(f"{name}: model directory not found: {path}")
    else:
        report.notes.append(f"{name}: {path} will be downloaded from the Hugging Face hub")


def visible_gpus() -> int:
    """GPUs this process can use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([d for d in env.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_gpus(report: Report, n_gpus_per_node: int | None, nnodes: int | None, *, check_devices: bool) -> None:
    if n_gpus_per_node is None or nnodes is None or not check_devices:
        return
    if nnodes == 1:
        found = visible_gpus()
        if found < n_gpus_per_node:
            report.fail(
                f"n_gpus_per_node={n_gpus_per_node} but this node has {found} visible GPU(s); "
                "set N_GPUS_PER_NODE to the number of GPUs to use"
            )
    else:
        report.notes.append(f"{nnodes} nodes: Ray checks that {nnodes * n_gpus_per_node} GPUs have joined")


# ---------------------------------------------------------------- EasyR1


def check_easyr1(config: dict, *, check_files: bool = True, check_devices: bool = True) -> Report:
    """EasyR1's own constraints (ray_trainer.py and fsdp_workers.py), checked before Ray starts."""
    report = Report()
    for message in unknown_easyr1_keys(config):
        report.fail(message)

    nnodes = _positive_int(report, "trainer.nnodes", _get(config, "trainer.nnodes", 1))
    gpus = _positive_int(report, "trainer.n_gpus_per_node", _get(config, "trainer.n_gpus_per_node", 8))
    rollout_bs = _positive_int(report, "data.rollout_batch_size", _get(config, "data.rollout_batch_size", 512))
    global_bs = _positive_int(
        report, "worker.actor.global_batch_size", _get(config, "worker.actor.global_batch_size", 256)
    )
    n = _positive_int(report, "worker.rollout.n", _get(config, "worker.rollout.n", 1))
    micro_update = _positive_int(
        report,
        "worker.actor.micro_batch_size_per_device_for_update",
        _get(config, "worker.actor.micro_batch_size_per_device_for_update", 4),
    )
    micro_exp = _positive_int(
        report,
        "worker.actor.micro_batch_size_per_device_for_experience",
        _get(config, "worker.actor.micro_batch_size_per_device_for_experience", 16),
    )
    tp = _positive_int(
        report, "worker.rollout.tensor_parallel_size", _get(config, "worker.rollout.tensor_parallel_size", 2)
    )
    ulysses = _positive_int(report, "worker.actor.ulysses_size", _get(config, "worker.actor.ulysses_size", 1))

    estimator = _get(config, "algorithm.adv_estimator", "grpo")
    if estimator in _GROUP_ESTIMATORS and n is not None and n < 2:
        report.fail(f"{estimator} compares rollouts within a group: worker.rollout.n must be > 1, got {n}")
    if rollout_bs and global_bs and rollout_bs % global_bs:
        report.fail(
            f"data.rollout_batch_size ({rollout_bs}) must be divisible by "
            f"worker.actor.global_batch_size ({global_bs})"
        )
    if rollout_bs and n and micro_exp and (rollout_bs * n) % micro_exp:
        report.fail(
            f"data.rollout_batch_size * worker.rollout.n ({rollout_bs * n}) must be divisible by "
            f"worker.actor.micro_batch_size_per_device_for_experience ({micro_exp})"
        )
    if gpus and nnodes and global_bs and n and micro_update and ulysses:
        world = gpus * nnodes
        if world % ulysses:
            report.fail(f"{world} GPUs are not divisible by worker.actor.ulysses_size ({ulysses})")
        else:
            per_device = global_bs * n // (world // ulysses)
            if per_device == 0:
                report.fail(
                    f"worker.actor.global_batch_size * worker.rollout.n ({global_bs * n}) is smaller than "
                    f"the data-parallel size ({world // ulysses})"
                )
            elif per_device % micro_update:
                report.fail(
                    f"per-device update batch ({per_device} = {global_bs}*{n}/{world // ulysses}) must be divisible "
                    f"by worker.actor.micro_batch_size_per_device_for_update ({micro_update})"
                )
        if tp and world % tp:
            report.fail(f"{world} GPUs are not divisible by worker.rollout.tensor_parallel_size ({tp})")

    if check_files:
        check_data_files(report, "data.train_files", _get(config, "data.train_files"), required=True)
        check_data_files(report, "data.val_files", _get(config, "data.val_files"), required=False)
        columns = [_get(config, "data.prompt_key", "problem"), _get(config, "data.answer_key", "answer"),
                   _get(config, "data.image_key", "images")]
        check_data_columns(report, "easyr1", config.get("data", {}), columns, "data.rollout_batch_size", rollout_bs)
        check_model_path(report, "worker.actor.model.model_path", _get(config, "worker.actor.model.model_path"))
        prompt = _get(config, "data.format_prompt")
        if prompt and not os.path.isfile(prompt):
            report.fail(f"data.format_prompt: template not found: {prompt}")
        _check_easyr1_budget(report, config)
        reward = _get(config, "worker.reward.reward_function")
        if not reward:
            report.fail("worker.reward.reward_function is not set")
        elif not os.path.isfile(str(reward).rsplit(":", 1)[0]):
            report.fail(f"worker.reward.reward_function: file not found: {str(reward).rsplit(':', 1)[0]}")
    if "imageedit_r1" in os.path.basename(str(_get(config, "worker.reward.reward_function") or "")):
        check_reward_weights(report, "worker.reward.reward_function_kwargs",
                             _get(config, "worker.reward.reward_function_kwargs"))
    check_gpus(report, gpus, nnodes, check_devices=check_devices)
    return report


def check_reward_weights(report: Report, name: str, weights: Any) -> None:
    """The reward weights a run would use, validated as the reward itself will (``resolve_weights``)
    before any GPU work: a typo or a NaN fails here, not at the first reward step."""
    from imageedit_r1.rewards import resolve_weights

    if isinstance(weights, str):
        try:
            weights = json.loads(weights) if weights.strip() else {}
        except json.JSONDecodeError as exc:
            report.fail(f"{name} is not JSON: {exc}")
            return
    if weights is None:
        return
    if not isinstance(weights, dict):
        report.fail(f"{name} must be a mapping of component weights, got {type(weights).__name__}")
        return
    try:
        resolve_weights(weights)
    except ValueError as exc:
        report.fail(f"{name}: {exc}")


# ---------------------------------------------------------------- upstream verl


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
            raise PreflightError([_unknown_verl_key(unknown.group(1))]) from exc
        raise PreflightError([f"verl rejected the overrides: {' '.join(str(exc).split())}"]) from exc


def _unknown_verl_key(key: str) -> str:
    """One line for a key verl's config does not define, with the key probably meant."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from imageedit_r1.config import did_you_mean

    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        defaults = OmegaConf.to_container(compose(config_name="ppo_trainer"), resolve=False)
    known = list(flatten(defaults))
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in known if k.rsplit(".", 1)[0] == parent] or known
    hint = did_you_mean(key, siblings)
    return (f"unknown verl config key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; to add a key verl does not define, write +{key}=...")


def check_verl(config, *, check_files: bool = True, check_devices: bool = True) -> Report:
    """verl's ``validate_config`` plus the reward hook and our data checks."""
    import warnings

    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    report = Report()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "critic disabled for GRPO" is expected
        try:
            validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        except (AssertionError, ValueError) as exc:
            report.fail(f"verl validate_config: {exc}")

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
    if config.algorithm.adv_estimator in _GROUP_ESTIMATORS and n < 2:
        report.fail(f"{config.algorithm.adv_estimator} needs actor_rollout_ref.rollout.n > 1, got {n}")
    mini = config.actor_rollout_ref.actor.ppo_mini_batch_size
    if config.data.train_batch_size % mini:
        report.fail(
            f"data.train_batch_size ({config.data.train_batch_size}) must be divisible by "
            f"actor_rollout_ref.actor.ppo_mini_batch_size ({mini})"
        )
    try:
        if get_custom_reward_fn(config) is None:
            report.fail("reward.custom_reward_function.path is not set: verl would use its built-in scorers")
    except Exception as exc:  # import errors of any kind from the user's reward module
        report.fail(f"reward.custom_reward_function cannot be loaded: {exc}")
    reward_fn = config.reward.get("custom_reward_function") or {}
    if "imageedit_r1" in str(reward_fn.get("path") or ""):
        kwargs = _plain(reward_fn.get("reward_kwargs") or {})
        from imageedit_r1.integrations.verl import VERL_RUNTIME_KWARGS

        check_reward_weights(report, "reward.custom_reward_function.reward_kwargs",
                             {k: v for k, v in kwargs.items() if k not in VERL_RUNTIME_KWARGS})

    nnodes = _positive_int(report, "trainer.nnodes", config.trainer.nnodes)
    gpus = _positive_int(report, "trainer.n_gpus_per_node", config.trainer.n_gpus_per_node)
    if check_files:
        check_data_files(report, "data.train_files", _plain(config.data.train_files), required=True)
        check_data_files(report, "data.val_files", _plain(config.data.val_files), required=False)
        data = {"train_files": _plain(config.data.train_files), "val_files": _plain(config.data.val_files)}
        columns = [config.data.prompt_key, config.data.get("image_key", "images"), "reward_model"]
        check_data_columns(report, "verl", data, columns, "data.train_batch_size", config.data.train_batch_size)
        check_model_path(report, "actor_rollout_ref.model.path", config.actor_rollout_ref.model.path)
        from imageedit_r1.train.budget_check import check_image_budget

        check_image_budget(
            report, "verl", train_files=_as_list(_plain(config.data.train_files)),
            max_prompt_length=config.data.max_prompt_length,
        )
    check_gpus(report, gpus, nnodes, check_devices=check_devices)
    return report


def _check_easyr1_budget(report: Report, config: dict) -> None:
    """EasyR1 resizes to data.min_pixels/max_pixels (its defaults: 262,144 and 4,194,304)."""
    from imageedit_r1.image_budget import ImageBudget, ImageBudgetError
    from imageedit_r1.train.budget_check import check_image_budget

    try:
        budget = ImageBudget(_get(config, "data.min_pixels", 262_144), _get(config, "data.max_pixels", 4_194_304))
    except ImageBudgetError as exc:
        report.fail(f"data.min_pixels/data.max_pixels: {exc}")
        return
    check_image_budget(
        report, "easyr1", train_files=_as_list(_get(config, "data.train_files")),
        max_prompt_length=_get(config, "data.max_prompt_length", 512), config_budget=budget,
    )


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


# ---------------------------------------------------------------- TRL

def _per_device_batch(argv: Sequence[str]) -> int:
    """``--per_device_train_batch_size`` as TRL's parser will read it: the last flag, else the
    ``--config`` file's value, else GRPOConfig's default."""
    value = None
    for index, arg in enumerate(argv[:-1]):
        if arg == "--per_device_train_batch_size":
            value = argv[index + 1]
        elif arg == "--config" and value is None:
            import yaml

            try:
                with open(argv[index + 1], encoding="utf-8") as handle:
                    value = (yaml.safe_load(handle) or {}).get("per_device_train_batch_size")
            except (OSError, yaml.YAMLError, AttributeError):
                value = None
    if value is None:
        from trl import GRPOConfig

        value = GRPOConfig.__dataclass_fields__["per_device_train_batch_size"].default
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_trl(
    argv: Sequence[str],
    *,
    num_processes: int = 1,
    num_machines: int = 1,
    use_cpu: bool = False,
    check_files: bool = True,
    check_devices: bool = True,
) -> Report:
    """TRL's own argument parsing and ``GRPOConfig`` checks, the batch arithmetic for
    ``num_processes`` processes, the reward weights, data columns, model path and GPUs."""
    import contextlib
    import io

    from imageedit_r1.integrations.trl import reward_weights
    from imageedit_r1.train.trl_grpo import check_columns, parse_args

    report = Report()
    argv = list(argv)
    if not use_cpu and "--use_cpu" not in argv and not _cuda_available():
        # Checked on a machine without GPUs (a login node, a dry run): TrainingArguments would refuse
        # bf16 here, not on the GPUs; whether GPUs are there is the GPU check's job below.
        argv += ["--use_cpu", "true"]
    processes = num_processes if isinstance(num_processes, int) and num_processes > 0 else 1
    if processes > 1:
        # GRPOConfig checks its generation batch for the world size of the parsing process (1 here):
        # parse with the whole job's batch per step, so TRL's own check sees the launched job's numbers.
        argv += ["--per_device_train_batch_size", str(_per_device_batch(argv) * processes)]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            data_args, config, model_args = parse_args(argv)
    except SystemExit:  # argparse: unknown or malformed flags
        message = stderr.getvalue().strip().splitlines()
        report.fail(f"TRL rejected the arguments: {message[-1] if message else 'invalid arguments'}")
        return report
    except (ValueError, TypeError) as exc:  # GRPOConfig.__post_init__ and TrainingArguments checks
        report.fail(f"TRL rejected the arguments: {exc}")
        return report

    spg = config.steps_per_generation or config.gradient_accumulation_steps
    report.notes.append(
        f"{config.generation_batch_size // config.num_generations} prompts x {config.num_generations} generations "
        f"per generation batch on {processes} process(es), {spg} accumulation step(s) each"
    )
    try:
        reward_weights(config.reward_weights)
    except ValueError as exc:
        report.fail(f"--reward_weights: {exc}")
    if not data_args.train_files:
        report.fail("--train_files is not set: point it at the exported TRL parquet")
    try:
        data_args.image_budget  # noqa: B018 - validation on construction
    except ValueError as exc:
        report.fail(f"image budget (--min_pixels/--max_pixels): {exc}")
    if model_args.use_peft:
        try:
            import peft  # noqa: F401
        except ImportError:
            report.fail("--use_peft needs peft: pip install 'imageedit-r1[trl]'")
    if config.use_vllm and config.vllm_mode == "server":
        report.notes.append(
            f"vLLM server mode: start `trl vllm-serve --model {model_args.model_name_or_path}` on "
            f"{config.vllm_server_host}:{config.vllm_server_port} first, on GPUs not used for training"
        )
    if check_files:
        for problem in check_columns(list(data_args.train_files) + list(data_args.val_files)):
            report.fail(problem)
        check_model_path(report, "--model_name_or_path", model_args.model_name_or_path)
    _positive_int(report, "num_processes", num_processes)
    machines = _positive_int(report, "num_machines", num_machines)
    if not use_cpu and processes and machines:
        if processes % machines:
            report.fail(f"num_processes ({processes}) must be divisible by num_machines ({machines})")
        else:
            check_gpus(report, processes // machines, machines, check_devices=check_devices)
    return report
