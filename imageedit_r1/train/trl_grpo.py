"""GRPO on TRL: ``[accelerate launch …] python -m imageedit_r1.train.trl_grpo --train_files … [TRL flags]``.

TRL's own ``GRPOTrainer`` does the sampling (``generate``, or vLLM with ``--use_vllm``), the
group-relative advantages, the KL term (``--beta``), the update and the checkpoints. This entry
point only wires in what is ours: the exported TRL parquet (``data export --format trl``), the
processor with the training image budget, the four component rewards of
``imageedit_r1.integrations.trl`` with the project's weights, and a metrics file.

Arguments are TRL's: every ``GRPOConfig`` field (``--num_generations``, ``--learning_rate``,
``--beta``, ``--reward_weights`` in format/action/subject/goal order, ``--use_vllm``, …), every
``ModelConfig`` field (``--model_name_or_path``, ``--dtype``, ``--use_peft``, ``--lora_r``, …),
``--config file.yaml`` for any of them, plus ``TrainingDataArguments`` below. ``--help`` lists all.

Writes ``<output_dir>/checkpoint-N/`` (TRL's checkpoints; with ``--use_peft`` they hold the LoRA
adapter), the final model in ``<output_dir>``, and ``<output_dir>/metrics.jsonl``: one JSON line
per logging step, ``{"step": N, "reward": …, "rewards/format/mean": …, …}``, which
``python -m imageedit_r1.train curves`` plots.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainingDataArguments:
    """Our arguments beside TRL's."""

    train_files: list[str] = field(
        default_factory=list, metadata={"help": "TRL parquet file(s) from `python -m imageedit_r1.data export --format trl`"}
    )
    val_files: list[str] = field(
        default_factory=list, metadata={"help": "held-out parquet file(s); evaluated when --eval_strategy is not 'no'"}
    )
    min_pixels: int = field(
        default=DEFAULT_BUDGET.min_pixels, metadata={"help": "image budget: fewest pixels per image (as in the export)"}
    )
    max_pixels: int = field(
        default=DEFAULT_BUDGET.max_pixels, metadata={"help": "image budget: most pixels per image (as in the export)"}
    )

    @property
    def image_budget(self) -> ImageBudget:
        """The budget these bounds define; ``ImageBudgetError`` (a ValueError) when they are unusable."""
        return ImageBudget(self.min_pixels, self.max_pixels)
    metrics_file: str | None = field(
        default=None, metadata={"help": f"JSONL of the logged metrics (default: <output_dir>/{METRICS_FILE})"}
    )
    lora_vision_tower: bool = field(
        default=False, metadata={"help": "with --use_peft: adapt the vision tower's projections too (default: the "
                                         "language model's only)"}
    )


def make_parser():
    from trl import GRPOConfig, ModelConfig, TrlParser

    return TrlParser((TrainingDataArguments, GRPOConfig, ModelConfig), prog="python -m imageedit_r1.train.trl_grpo")


def parse_args(argv: Sequence[str]):
    """(data args, GRPOConfig, ModelConfig) from a command line; unknown flags are an error."""
    return make_parser().parse_args_and_config(list(argv))


def apply_project_settings(data_args: TrainingDataArguments, training_args, model_args) -> None:
    """What the project fixes in TRL's arguments: reward weights, image budget checks, model loading."""
    from imageedit_r1.integrations.trl import reward_weights

    if not data_args.train_files:
        raise ValueError("--train_files is required: the TRL parquet from `python -m imageedit_r1.data export --format trl`")
    if not model_args.model_name_or_path:
        raise ValueError("--model_name_or_path is required")
    data_args.image_budget  # noqa: B018 - validates the bounds before any model is loaded
    training_args.reward_weights = reward_weights(training_args.reward_weights)
    model_init_kwargs = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation,
                         "revision": model_args.model_revision}
    model_init_kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs


# Qwen2.5-VL's vision blocks name their MLP gate_proj / up_proj / down_proj like the language model's,
# so target names alone would adapt them too (``model.visual.*`` in transformers 5, ``visual.*`` before).
VISION_TOWER = r"(.*\.)?visual\..*"


def peft_config(model_args, data_args: TrainingDataArguments):
    """TRL's LoRA config for ``model_args`` (None without ``--use_peft``), on the language model's
    projections only unless ``--lora_vision_tower``: an adapter served unmerged (vLLM LoRA) then
    holds the whole change, and the vision tower stays the base model's, as in the docs."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is not None and not data_args.lora_vision_tower and config.exclude_modules is None:
        config.exclude_modules = VISION_TOWER
    return config


TRL_COLUMNS = ("prompt", "images", "ground_truth")


def check_columns(files: Sequence[str]) -> list[str]:
    """Problems with TRL data files: missing, unreadable, another trainer's export, or lacking a
    column the run needs (``imageedit_r1.train.data_files``, as every trainer's preflight reads them)."""
    from imageedit_r1.train.data_files import data_file_problems

    missing = [f"train/val file not found: {path} (export it with `python -m imageedit_r1.data export "
               "--format trl`)" for path in files if not os.path.isfile(path)]
    found = [str(path) for path in files if os.path.isfile(path)]
    return missing + data_file_problems("trl", "train/val file", found, list(TRL_COLUMNS))[0]


def load_split(files: Sequence[str]):
    """A ``datasets.Dataset`` over exported TRL parquet files; images decode lazily, row by row."""
    import datasets

    problems = check_columns(files)
    if problems:
        raise ValueError("; ".join(problems))
    return datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")


def load_processor(model_path: str, data_args: TrainingDataArguments):
    """The model's processor with the training image budget; left padding, as GRPOTrainer needs.

    TRL saves this processor with every checkpoint, so the budget travels with the trained model.
    """
    from transformers import AutoProcessor

    budget = data_args.image_budget
    return AutoProcessor.from_pretrained(
        model_path, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels, padding_side="left"
    )


def metrics_callback(path: str | Path):
    """A ``TrainerCallback`` appending each log (main process only) to a JSONL file, with its step.

    Records go through the run store's append: after a run killed mid-write, the resumed run's
    first record starts a line of its own. While training, the file's run lock is held; a second
    training writing the same file stops at its start instead of interleaving its metrics.
    """
    from transformers import TrainerCallback

    from imageedit_r1.store import append_jsonl, run_lock

    target = Path(path)
    lock = run_lock(target, single_file=True, if_busy="stop")

    class MetricsFile(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                lock.acquire()

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                lock.release()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            append_jsonl(target, {"step": state.global_step, **{k: v for k, v in logs.items() if _is_number(v)}})

    return MetricsFile()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_trainer(data_args: TrainingDataArguments, training_args, model_args, *, callbacks=(), **trainer_kwargs):
    """TRL's ``GRPOTrainer`` with our data, processor, rewards and metrics file (not yet trained)."""
    from trl import GRPOTrainer

    from imageedit_r1.integrations.trl import reward_funcs

    apply_project_settings(data_args, training_args, model_args)
    train_dataset = load_split(data_args.train_files)
    eval_dataset = None
    if data_args.val_files and training_args.eval_strategy != "no":
        eval_dataset = load_split(data_args.val_files)
    metrics_path = data_args.metrics_file or Path(training_args.output_dir) / METRICS_FILE
    return GRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reward_funcs(),
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=load_processor(model_args.model_name_or_path, data_args),
        peft_config=peft_config(model_args, data_args),
        callbacks=[metrics_callback(metrics_path), *callbacks],
        **trainer_kwargs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from imageedit_r1.store import RunBusy

    data_args, training_args, model_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        trainer = build_trainer(data_args, training_args, model_args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    except RunBusy as exc:  # another training writes the same metrics file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.state.global_step == 0:  # nothing trained: the model to save is the one loaded
        prompts = training_args.generation_batch_size // training_args.num_generations
        trainer.accelerator.print(
            f"error: the run made no training step: {len(trainer.train_dataset)} training row(s) hold no whole "
            f"batch of {prompts} prompts (x {training_args.num_generations} generations), and TRL drops an "
            "incomplete batch; no model was saved. Lower the batch (ROLLOUT_BATCH_SIZE in the recipe) or export "
            "more data", file=sys.stderr)
        return 1
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"saved the trained model to {training_args.output_dir} after "
                              f"{trainer.state.global_step} step(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
