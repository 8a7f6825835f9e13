"""The TRL recipe: accelerate launch, the paper's hyperparameters as TRL flags, LoRA / vLLM options,
and the preflight (TRL's own parser and GRPOConfig checks, batch arithmetic, data columns, GPUs)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from imageedit_r1.train import preflight  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "run_grpo_qwen25vl_trl.sh"
CONFIG = ROOT / "recipes" / "configs" / "grpo_qwen25vl_trl.yaml"


@pytest.fixture()
def trl_files(tmp_path):
    """Parquet files with the TRL export's schema: one batch of 32 prompts to train on, 5 rows, 4 held out,
    and an (empty) EasyR1 file. The preflight reads the schema and the row count only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imageedit_r1.data.export import easyr1
    from tests.trl_fixtures import write_trl_rows

    paths = {name: write_trl_rows(tmp_path / f"{name}.parquet", rows)
             for name, rows in (("train", 32), ("short", 5), ("val", 4))}
    paths["easyr1"] = tmp_path / "easyr1.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=easyr1.features().arrow_schema), paths["easyr1"])
    return paths


def run_recipe(*args: str, env: dict) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(RECIPE), *args], capture_output=True, text=True, env=full_env, cwd=ROOT,
                          timeout=600)


def flags_of(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """(launcher arguments, trainer flags -> values) of the printed command."""
    lines = [line for line in stdout.splitlines() if not line.startswith("#")]
    command = shlex.split(" ".join(line.rstrip("\\").strip() for line in lines))
    cut = command.index("imageedit_r1.train.trl_grpo")
    flags: dict[str, list[str]] = {}
    for arg in command[cut + 1 :]:
        if arg.startswith("--"):
            current = flags.setdefault(arg[2:], [])
        else:
            current.append(arg)
    return command[: cut + 1], flags


def test_dry_run_launches_accelerate_with_the_papers_settings(trl_files, tmp_path):
    result = run_recipe("--dry-run", "save_steps=10", env={
        "TRAIN_FILES": str(trl_files["train"]), "VAL_FILES": str(trl_files["val"]), "CHECKPOINT_DIR": str(tmp_path / "ck"),
        "REWARD_GOAL": "0"})
    assert result.returncode == 0, result.stderr
    launcher, flags = flags_of(result.stdout)
    assert launcher[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert launcher[launcher.index("--num_processes") + 1] == "8" and "bf16" in launcher
    assert launcher[launcher.index("--config_file") + 1].endswith("trl/accelerate_configs/fsdp2.yaml")
    assert launcher[-2:] == ["-m", "imageedit_r1.train.trl_grpo"]
    assert flags["config"] == [str(CONFIG)]
    assert flags["num_generations"] == ["8"] and flags["temperature"] == ["1.0"]
    assert flags["learning_rate"] == ["1e-6"] and flags["beta"] == ["1e-2"]
    # 32 prompts x 8 generations = 256 completions per update: 8 per GPU x 8 GPUs x 4 accumulation steps.
    assert flags["per_device_train_batch_size"] == ["8"] and flags["gradient_accumulation_steps"] == ["4"]
    assert flags["reward_weights"] == ["0.25", "0.25", "0.25", "0"]
    assert flags["val_files"] == [str(trl_files["val"])] and flags["eval_strategy"] == ["steps"]
    assert flags["output_dir"] == [str(tmp_path / "ck")] and flags["save_steps"] == ["10"]  # overrides come last
    assert "use_peft" not in flags and "use_vllm" not in flags
    assert "32 prompts x 8 generations per generation batch on 8 process(es)" in result.stderr

    # What TRL receives parses with TRL's own parser into the paper's settings (on the CPU here: no bf16 check).
    from imageedit_r1.train.trl_grpo import parse_args

    data_args, config, model_args = parse_args(
        [arg for key, values in flags.items() for arg in (f"--{key}", *values)] + ["--use_cpu", "true"])
    assert (config.num_generations, config.temperature, config.learning_rate, config.beta) == (8, 1.0, 1e-6, 0.01)
    assert config.loss_type == "dapo" and config.scale_rewards == "group" and config.max_completion_length == 512
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and model_args.dtype == "bfloat16"
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    assert data_args.image_budget == DEFAULT_BUDGET


def test_one_gpu_lora_and_vllm_options(trl_files, tmp_path):
    result = run_recipe("--dry-run", env={
        "TRAIN_FILES": str(trl_files["train"]), "N_GPUS_PER_NODE": "1", "USE_LORA": "1", "USE_VLLM": "1",
        "CHECKPOINT_DIR": str(tmp_path / "ck")})
    assert result.returncode == 0, result.stderr
    launcher, flags = flags_of(result.stdout)
    assert launcher[launcher.index("--num_processes") + 1] == "1" and "--config_file" not in launcher
    assert flags["use_peft"] == ["true"] and flags["lora_r"] == ["64"] and flags["lora_alpha"] == ["128"]
    assert flags["use_vllm"] == ["true"] and flags["vllm_mode"] == ["colocate"]
    assert flags["gradient_accumulation_steps"] == ["32"]  # the same 256 completions per update on one GPU
    assert "val_files" not in flags


def test_zero_gpus_is_a_cpu_smoke_test_sized_for_a_few_rows(trl_files, tmp_path):
    """The documented smoke test, `N_GPUS_PER_NODE=0 MODEL_PATH=... MAX_STEPS=2`, sizes itself to make steps
    from a few-row export; the data here holds 5 rows."""
    result = run_recipe("--dry-run", env={"TRAIN_FILES": str(trl_files["short"]), "N_GPUS_PER_NODE": "0",
                                          "MAX_STEPS": "2", "CHECKPOINT_DIR": str(tmp_path / "ck")})
    assert result.returncode == 0, result.stderr
    launcher, flags = flags_of(result.stdout)
    assert "--cpu" in launcher and launcher[launcher.index("--num_processes") + 1] == "1"
    assert flags["num_generations"] == ["4"] and flags["per_device_train_batch_size"] == ["4"]
    assert flags["gradient_accumulation_steps"] == ["2"]  # 2 prompts x 4 generations per update
    assert flags["max_completion_length"] == ["64"] and flags["max_steps"] == ["2"]
    assert flags["use_cpu"] == ["true"] and flags["dtype"] == ["float32"]
    assert "2 prompts x 4 generations per generation batch on 1 process(es)" in result.stderr


def test_recipe_rejects_bad_inputs_before_launching(trl_files, tmp_path):
    base = {"TRAIN_FILES": str(trl_files["train"]), "CHECKPOINT_DIR": str(tmp_path / "ck")}
    result = run_recipe("--dry-run", env={**base, "MICRO_BATCH_SIZE": "3"})
    assert result.returncode == 2 and "must be divisible by MICRO_BATCH_SIZE x processes" in result.stderr
    result = run_recipe(env={**base, "N_GPUS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "0", "TRAIN_FILES": str(trl_files["easyr1"])})
    assert result.returncode == 2 and not (tmp_path / "ck").exists()
    assert "is an EasyR1 export" in result.stderr and "TRL needs prompt, images, ground_truth" in result.stderr
    assert "use the trl/ files of `python -m imageedit_r1.data export`" in result.stderr
    assert "n_gpus_per_node=2 but this node has 1 visible GPU(s)" in result.stderr


def _args(train, *extra):
    return ["--config", str(CONFIG), "--model_name_or_path", "Qwen/Qwen2.5-VL-7B-Instruct",
            "--train_files", str(train), "--output_dir", "/tmp/x", *extra]


@pytest.mark.parametrize(
    ("extra", "launch", "message"),
    [
        (["--bogus_flag", "1"], {}, "TRL rejected the arguments"),
        (["--num_generations", "1"], {}, "at least 2 generations"),
        (["--per_device_train_batch_size", "3"], {"num_processes": 2},
         "generation_batch_size (6) must be divisible by num_generations (8)"),
        (["--reward_weights", "1", "1"], {}, "expected 4 values in the order"),
        (["--reward_weights", "1", "-1", "1", "1"], {}, "non-negative"),
        (["--min_pixels", "2000000"], {}, "image budget"),
        ([], {"num_processes": 3, "num_machines": 2}, "num_processes (3) must be divisible by num_machines (2)"),
    ],
)
def test_preflight_catches_what_trl_would_reject_later(trl_files, extra, launch, message):
    report = preflight.check_trl(_args(trl_files["train"], *extra), check_devices=False, **launch)
    assert any(message in problem for problem in report.problems), report.problems


def test_preflight_accepts_the_recipe_config(trl_files):
    report = preflight.check_trl(_args(trl_files["train"]), num_processes=8, check_devices=False)
    assert report.problems == []
    assert any("will be downloaded" in note for note in report.notes)
    # 4 completions per GPU hold no whole group of 8, but 2 GPUs together do: what the launched job sees.
    report = preflight.check_trl(_args(trl_files["train"], "--per_device_train_batch_size", "4"),
                                 num_processes=2, check_devices=False)
    assert report.problems == [], report.problems
    assert "1 prompts x 8 generations per generation batch on 2 process(es)" in report.notes[0]


def test_preflight_refuses_a_run_that_could_not_make_one_step_and_names_what_fits(trl_files):
    # The recipe's one-GPU batch: 32 prompts x 8 generations in micro-batches of 8, 32 accumulation steps.
    one_gpu = ["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "32"]
    report = preflight.check_trl(_args(trl_files["short"], *one_gpu), check_devices=False)
    assert report.problems == [
        "--train_files holds 5 row(s), fewer than one batch of 32 prompts (prompts per generation batch): the trainer "
        "drops an incomplete batch, so this run would make no training step; 5 prompts x 8 generations fit: "
        "ROLLOUT_BATCH_SIZE=5 MICRO_BATCH_SIZE=8 in the recipe (--per_device_train_batch_size 8 "
        "--gradient_accumulation_steps 5), or export at least 32 rows"]
    # What it names passes: 5 prompts x 8 generations in micro-batches of 8.
    fits = _args(trl_files["short"], "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "5")
    assert preflight.check_trl(fits, check_devices=False).problems == []


def test_help_lists_the_environment_and_options():
    result = subprocess.run(["bash", str(RECIPE), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in ("MODEL_PATH", "TRAIN_FILES", "N_GPUS_PER_NODE", "ROLLOUT_N", "USE_LORA", "USE_VLLM",
                 "MICRO_BATCH_SIZE", "ACCELERATE_CONFIG", "--dry-run", "--format trl"):
        assert name in result.stdout


def test_every_trainers_files_are_told_apart_by_the_one_column_check(trl_files, tmp_path):
    """TRL's check reads files as EasyR1's and verl's preflights do: another trainer's export is
    named, with the recipe that takes it; a missing file says how to export one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imageedit_r1.data.export import verl
    from imageedit_r1.train.trl_grpo import check_columns

    verl_file = tmp_path / "verl.parquet"
    pq.write_table(pa.Table.from_pylist([], schema=verl.features().arrow_schema), verl_file)
    assert check_columns([str(trl_files["train"])]) == []
    (problem,) = check_columns([str(verl_file)])
    assert "is an upstream verl export" in problem and "recipes/run_grpo_qwen25vl_verl.sh" in problem
    (problem,) = check_columns([str(tmp_path / "nowhere.parquet")])
    assert "not found" in problem and "--format trl" in problem
