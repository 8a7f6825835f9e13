"""What every trainer's preflight shares: the report, the error, and the checks of data files,
model paths, GPUs and reward weights."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# `owner/name@split` (optionally with a sub-config) is a Hugging Face dataset reference, not a path.
_HUB_DATASET = re.compile(r"^[\w.-]+/[\w.-]+(?:@[\w.\-:\[\]%]+)$")
_HUB_MODEL = re.compile(r"^[\w.-]+/[\w.-]+$")
# Estimators that compare rollouts within a group: they need more than one rollout per prompt.
GROUP_ESTIMATORS = {"grpo", "rloo"}


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


def get_dotted(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def positive_int(report: Report, name: str, value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        report.fail(f"{name} must be a positive integer, got {value!r}")
        return None
    return value


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def check_data_files(report: Report, name: str, value: Any, *, required: bool) -> None:
    paths = as_list(value)
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


def check_data_columns(report: Report, trainer: str, data: dict, columns: list[str]) -> int | None:
    """The other trainer's export is rejected by its columns; returns the training rows (None: not counted)."""
    from imageedit_r1.train.data_files import data_file_problems

    train_rows = None
    for key in ("train_files", "val_files"):
        paths = [p for p in as_list(data.get(key)) if os.path.exists(p)]
        problems, rows = data_file_problems(trainer, f"data.{key}", paths, columns)
        report.problems.extend(problems)
        if key == "train_files":
            train_rows = rows
    return train_rows


def check_one_step(report: Report, name: str, rows: int | None, batch: str, batch_size: int | None,
                   fits: Callable[[int], str | None]) -> None:
    """Refuse training data that holds no whole batch: every trainer drops an incomplete batch, so
    such a run would make no step. ``fits(rows)`` names settings under which ``rows`` make one."""
    if rows is None or not batch_size or rows >= batch_size:
        return
    fitting = fits(rows) if rows else None
    report.fail(
        f"{name} holds {rows} row(s), fewer than one batch of {batch_size} prompts ({batch}): the trainer drops "
        f"an incomplete batch, so this run would make no training step; "
        + (f"{fitting}, or " if fitting else "") + f"export at least {batch_size} rows"
    )


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
