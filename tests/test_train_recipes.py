"""The GRPO recipes: EasyR1 keys and constraints, verl's own config and validation, dry runs."""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imageedit_r1.train import preflight

ROOT = Path(__file__).resolve().parents[1]
EASYR1_RECIPE = ROOT / "recipes" / "run_grpo_qwen25vl.sh"
VERL_RECIPE = ROOT / "recipes" / "run_grpo_qwen25vl_verl.sh"
EASYR1_YAML = ROOT / "recipes" / "configs" / "grpo_qwen25vl.yaml"


EASYR1_COLUMNS = {"problem": "<image>Change the coat to red", "answer": "{}", "images": ["a.png"]}
VERL_COLUMNS = {"data_source": "imageedit", "prompt": [{"role": "user", "content": "<image>x"}],
                "images": [{"bytes": b"", "path": "a.png", "min_pixels": 262_144, "max_pixels": 1_003_520}],
                "ability": "decompose", "reward_model": {"ground_truth": "{}"},
                "extra_info": {"id": "a"}}


def write_rows(path: Path, row: dict, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([row] * n), path)
    return path


@pytest.fixture()
def data_files(tmp_path):
    """EasyR1 exports: one rollout batch (32) of training rows."""
    return (write_rows(tmp_path / "train.parquet", EASYR1_COLUMNS, 32),
            write_rows(tmp_path / "val.parquet", EASYR1_COLUMNS, 4))


@pytest.fixture()
def verl_files(tmp_path):
    return (write_rows(tmp_path / "verl_train.parquet", VERL_COLUMNS, 32),
            write_rows(tmp_path / "verl_val.parquet", VERL_COLUMNS, 4))


def run_recipe(script: Path, *args: str, env: dict | None = None, cwd=None,
               easyr1: str | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    if easyr1:
        full_env["PYTHONPATH"] = os.pathsep.join([easyr1, full_env.get("PYTHONPATH", "")])
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=300)


def printed_command(stdout: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if not line.startswith("#")]
    return shlex.split(" ".join(line.rstrip("\\").strip() for line in lines))


def overrides_of(command: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in command if "=" in arg)


# ---------------------------------------------------------------- EasyR1


def test_key_list_names_the_easyr1_commit_and_core_keys():
    keys = preflight.easyr1_keys()
    assert len(keys.source) == 40
    for key in ("data.rollout_batch_size", "worker.actor.global_batch_size", "worker.rollout.n",
                "worker.actor.optim.lr", "algorithm.kl_coef", "trainer.n_gpus_per_node", "trainer.nnodes"):
        assert keys.accepts(key), key
    assert keys.accepts("worker.reward.reward_function_kwargs.goal")  # free-form mapping
    assert not keys.accepts("worker.actor.global_batch_size_per_device")  # derived by EasyR1 itself
    assert not keys.accepts("data.train_batch_size")  # verl's name, not EasyR1's


def test_easyr1_yaml_uses_only_keys_easyr1_defines_and_the_papers_defaults():
    config = preflight.load_easyr1_config([f"config={EASYR1_YAML}"])
    assert preflight.unknown_easyr1_keys(config) == []
    assert config["worker"]["actor"]["model"]["model_path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config["trainer"]["n_gpus_per_node"] == 8
    assert config["worker"]["actor"]["global_batch_size"] == 32
    assert config["worker"]["rollout"]["n"] == 8
    assert config["worker"]["rollout"]["temperature"] == 1.0
    assert config["worker"]["actor"]["optim"]["lr"] == 1e-6
    assert config["algorithm"]["adv_estimator"] == "grpo"
    assert config["algorithm"]["disable_kl"] is False and config["algorithm"]["kl_coef"] > 0
    assert config["data"]["format_prompt"].endswith("imageedit_r1/prompts/decompose.jinja")
    assert config["worker"]["reward"]["reward_function"].endswith("reward_fns/imageedit_r1.py:compute_score")
    assert "file" in config["trainer"]["logger"]
    report = preflight.check_easyr1(config, check_files=False, check_devices=False)
    assert report.problems == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["worker.rollout.n=1"], "worker.rollout.n must be > 1"),
        (["data.rollout_batch_size=48"], "must be divisible by worker.actor.global_batch_size (32)"),
        (["worker.actor.micro_batch_size_per_device_for_experience=3"], "micro_batch_size_per_device_for_experience"),
        (["worker.actor.micro_batch_size_per_device_for_update=3"], "per-device update batch"),
        (["trainer.n_gpus_per_node=3"], "not divisible by worker.rollout.tensor_parallel_size"),
        (["trainer.n_gpus_per_node=0"], "trainer.n_gpus_per_node must be a positive integer"),
        (["worker.rollout.temprature=0.7"], "did you mean 'worker.rollout.temperature'"),
    ],
)
def test_easyr1_constraints_are_caught(overrides, message):
    config = preflight.load_easyr1_config([f"config={EASYR1_YAML}", *overrides])
    report = preflight.check_easyr1(config, check_files=False, check_devices=False)
    assert any(message in p for p in report.problems), report.problems


@pytest.mark.slow
def test_easyr1_dry_run_prints_the_resolved_command(data_files, tmp_path, easyr1_layout):
    train, val = data_files
    result = run_recipe(
        EASYR1_RECIPE, "--dry-run", "trainer.val_freq=10",
        env={"TRAIN_FILES": str(train), "VAL_FILES": str(val), "ROLLOUT_N": "4", "CHECKPOINT_DIR": str(tmp_path / "ck")},
        easyr1=easyr1_layout,
    )
    assert result.returncode == 0, result.stderr
    command = printed_command(result.stdout)
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main"]
    options = overrides_of(command)
    assert options["config"] == str(EASYR1_YAML)
    assert options["data.train_files"] == str(train) and options["data.val_files"] == str(val)
    assert options["worker.rollout.n"] == "4"  # environment override
    assert options["worker.actor.global_batch_size"] == "32" and options["data.rollout_batch_size"] == "32"
    assert options["worker.actor.optim.lr"] == "1e-6" and options["worker.rollout.temperature"] == "1.0"
    assert options["trainer.n_gpus_per_node"] == "8" and options["trainer.nnodes"] == "1"
    assert options["worker.reward.reward_function"] == f"{ROOT}/reward_fns/imageedit_r1.py:compute_score"
    assert options["data.format_prompt"] == f"{ROOT}/imageedit_r1/prompts/decompose.jinja"
    assert command[-1] == "trainer.val_freq=10"  # pass-through overrides come last
    # The image budget and the prompt length come from the one budget module.
    from imageedit_r1.data.export import max_prompt_length
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    assert options["data.min_pixels"] == str(DEFAULT_BUDGET.min_pixels)
    assert options["data.max_pixels"] == str(DEFAULT_BUDGET.max_pixels)
    assert options["data.max_prompt_length"] == str(max_prompt_length(DEFAULT_BUDGET))
    # What EasyR1 would receive is a valid EasyR1 config.
    config = preflight.load_easyr1_config(command[3:])
    assert preflight.check_easyr1(config, check_devices=False).problems == []


@pytest.mark.parametrize(
    ("env", "args", "message", "command_printed"),
    [
        ({"TRAIN_FILES": "/nonexistent/train.parquet"}, [], "data file not found: /nonexistent/train.parquet", True),
        ({"N_GPUS_PER_NODE": "eight"}, [], "trainer.n_gpus_per_node must be a positive integer", True),
        ({"ROLLOUT_BATCH_SIZE": "40"}, [], "data.rollout_batch_size (40) must be divisible", True),
        ({"ROLLOUT_N": "1"}, [], "worker.rollout.n must be > 1", True),
        ({}, ["worker.actor.model.model_path=/no/such/model"], "model directory not found", True),
        # The recipe's own usage errors come before there is a command to show.
        ({"N_GPUS_PER_NODE": ""}, [], "N_GPUS_PER_NODE is empty", False),
        ({}, ["bogus"], "expected key=value", False),
    ],
)
@pytest.mark.slow
def test_easyr1_dry_run_prints_the_command_then_the_problems(data_files, env, args, message, command_printed,
                                                            easyr1_layout):
    train, val = data_files
    result = run_recipe(EASYR1_RECIPE, "--dry-run", *args,
                        env={"TRAIN_FILES": str(train), "VAL_FILES": str(val), **env}, easyr1=easyr1_layout)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert ("verl.trainer.main" in result.stdout) == command_printed
    assert "launch checked" not in result.stdout


@pytest.mark.slow
def test_a_launch_with_a_problem_starts_nothing(data_files, easyr1_layout):
    train, val = data_files
    result = run_recipe(EASYR1_RECIPE, "worker.actor.model.model_path=/no/such/model",
                        env={"TRAIN_FILES": str(train), "VAL_FILES": str(val), "SKIP_GPU_CHECK": "1"},
                        easyr1=easyr1_layout)
    assert result.returncode == 2 and "model directory not found" in result.stderr
    assert result.stdout == ""  # no command shown as if it ran, no trainer started


@pytest.mark.slow
def test_easyr1_recipe_checks_visible_gpus_before_launching(data_files, easyr1_layout):
    train, val = data_files
    result = run_recipe(EASYR1_RECIPE, env={"TRAIN_FILES": str(train), "VAL_FILES": str(val),
                                            "CUDA_VISIBLE_DEVICES": "0,1"}, easyr1=easyr1_layout)
    assert result.returncode == 2
    assert "n_gpus_per_node=8 but this node has 2 visible GPU(s)" in result.stderr


@pytest.mark.slow
def test_recipe_help_lists_the_environment():
    result = run_recipe(EASYR1_RECIPE, "--help")
    assert result.returncode == 0
    for name in ("MODEL_PATH", "TRAIN_FILES", "N_GPUS_PER_NODE", "ROLLOUT_N", "--dry-run"):
        assert name in result.stdout


# ---------------------------------------------------------------- upstream verl


verl_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("hydra") is None or __import__("importlib").util.find_spec("verl") is None,
    reason="needs upstream verl (the [verl] extra)",
)


@verl_needed
@pytest.mark.slow
def test_verl_recipe_composes_with_verls_config_and_passes_its_validation(verl_files, tmp_path):
    train, val = verl_files
    result = run_recipe(VERL_RECIPE, "--dry-run", "trainer.total_epochs=1",
                        env={"TRAIN_FILES": str(train), "VAL_FILES": str(val), "NNODES": "2",
                             "CHECKPOINT_DIR": str(tmp_path / "ck")})
    assert result.returncode == 0, result.stderr
    command = printed_command(result.stdout)
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main_ppo"]
    overrides = command[3:]

    config = preflight.compose_verl_config(overrides)
    assert config.algorithm.adv_estimator == "grpo"
    assert config.data.train_batch_size == 32 and config.actor_rollout_ref.actor.ppo_mini_batch_size == 32
    assert config.actor_rollout_ref.rollout.n == 8 and config.actor_rollout_ref.rollout.temperature == 1.0
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6
    assert config.actor_rollout_ref.actor.use_kl_loss and config.actor_rollout_ref.actor.kl_loss_coef > 0
    assert config.trainer.nnodes == 2 and config.trainer.n_gpus_per_node == 8
    assert config.trainer.total_epochs == 1
    assert config.trainer.rollout_data_dir == str(tmp_path / "ck" / "logs" / "rollouts")
    assert preflight.check_verl(config, check_devices=False).problems == []

    # verl loads our reward through its own loader, with the weights from the recipe.
    from verl.trainer.ppo.reward import get_custom_reward_fn

    reward_fn = get_custom_reward_fn(config)
    truth = '{"actions": ["Recoloring"], "subjects": ["coat"], "goals": ["red"]}'
    good = reward_fn("imageedit", '<think>x</think><action>["Recoloring"]</action><subjects>["coat"]</subjects>'
                     '<goals>["red"]</goals>', truth)
    bad = reward_fn("imageedit", "no idea", truth)
    assert good["score"] == 1.0 and bad["score"] == 0.0

    # Constraints verl or we reject before any GPU work.
    from omegaconf import OmegaConf

    for key, value, message in [
        ("data.train_batch_size", 30, "must be divisible by actor_rollout_ref.actor.ppo_mini_batch_size"),
        ("actor_rollout_ref.rollout.n", 1, "needs actor_rollout_ref.rollout.n > 1"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", 64, "verl validate_config"),
    ]:
        changed = copy.deepcopy(config)
        OmegaConf.update(changed, key, value)
        report = preflight.check_verl(changed, check_devices=False)
        assert any(message in p for p in report.problems), (key, report.problems)
    with pytest.raises(preflight.PreflightError, match="actor_rollout_ref.rollout.temprature"):
        preflight.compose_verl_config(overrides + ["actor_rollout_ref.rollout.temprature=0.7"])


VERL_CPU_PYTHON = ROOT / ".venv-verl" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("gpus", [
    pytest.param("8", marks=verl_needed),
    pytest.param("0", marks=pytest.mark.skipif(not VERL_CPU_PYTHON.exists(), reason="needs .venv-verl")),
])
def test_the_verl_recipe_sets_each_key_once_for_the_run_it_is(verl_files, tmp_path, gpus):
    """A dry run prints the command as verl gets it: a key given twice (a GPU value, then the CPU's)
    reads as two settings; each is given once, with the value for this run."""
    train, val = verl_files
    env = {"TRAIN_FILES": str(train), "VAL_FILES": str(val), "N_GPUS_PER_NODE": gpus,
           "CHECKPOINT_DIR": str(tmp_path / "ck")}
    if gpus == "0":
        env["PYTHON"] = str(VERL_CPU_PYTHON)
    result = run_recipe(VERL_RECIPE, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    keys = [arg.split("=", 1)[0].lstrip("+") for arg in printed_command(result.stdout)[3:] if "=" in arg]
    assert sorted({key for key in keys if keys.count(key) > 1}) == []
    overrides = overrides_of(printed_command(result.stdout))
    cpu = gpus == "0"
    assert overrides["actor_rollout_ref.rollout.tensor_model_parallel_size"] == ("1" if cpu else "2")
    assert overrides["actor_rollout_ref.model.use_remove_padding"] == ("false" if cpu else "true")


# ---------------------------------------------------------------- multi-node launchers


def test_multi_node_launchers_wire_nnodes_through():
    import yaml

    sbatch = ROOT / "recipes" / "slurm" / "grpo_qwen25vl.sbatch"
    assert subprocess.run(["bash", "-n", str(sbatch)], capture_output=True).returncode == 0
    text = sbatch.read_text()
    assert "ray start --head" in text and "ray start --address" in text
    assert 'NNODES="$NNODES"' in text and "SLURM_JOB_NUM_NODES" in text

    job = yaml.safe_load((ROOT / "recipes" / "k8s" / "rayjob-grpo-qwen25vl.yaml").read_text())
    assert job["kind"] == "RayJob" and "recipes/run_grpo_qwen25vl.sh" in job["spec"]["entrypoint"]
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"]
    assert int(env["NNODES"]) == 1 + workers
    gpus = job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"]
    assert env["N_GPUS_PER_NODE"] == gpus


# ---------------------------------------------------------------- the right trainer and the right files


@pytest.mark.slow
def test_easyr1_dry_run_in_the_projects_venv_prints_the_command_and_says_how_to_get_easyr1(data_files):
    train, val = data_files  # this environment holds upstream verl (verl.trainer.main_ppo), as .venv does
    result = run_recipe(EASYR1_RECIPE, "--dry-run", env={"TRAIN_FILES": str(train), "VAL_FILES": str(val)})
    assert result.returncode == 2
    command = printed_command(result.stdout)
    assert command[:3] == [sys.executable, "-m", "verl.trainer.main"]  # the command first, whatever follows
    assert overrides_of(command)["data.train_files"] == str(train)
    assert "launch checked" not in result.stdout
    (problem,) = [line for line in result.stderr.splitlines() if line.startswith("error: - ")]
    assert problem.startswith("error: - this interpreter has upstream verl installed as 'verl', not EasyR1: "
                              "`-m verl.trainer.main` would fail with No module named verl.trainer.main. "
                              "Install EasyR1 in an environment of its own with `make setup-easyr1`")
    assert "recipes/run_grpo_qwen25vl_verl.sh" in problem


@pytest.mark.slow
def test_the_easyr1_recipe_uses_the_easyr1_venv_when_python_is_not_set(data_files, tmp_path, easyr1_layout):
    """``make setup-easyr1`` makes .venv-easyr1; the recipe picks its interpreter without PYTHON."""
    root = tmp_path / "checkout"
    (root / "recipes").mkdir(parents=True)
    for name in ("run_grpo_qwen25vl.sh", "common.sh"):
        (root / "recipes" / name).write_text((ROOT / "recipes" / name).read_text())
    (root / "recipes" / "configs").symlink_to(ROOT / "recipes" / "configs")
    for name in ("imageedit_r1", "reward_fns"):
        (root / name).symlink_to(ROOT / name)
    venv_bin = root / ".venv-easyr1" / "bin"
    venv_bin.mkdir(parents=True)
    interpreter = venv_bin / "python"  # stands in for the EasyR1 environment's interpreter
    interpreter.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    interpreter.chmod(0o755)
    train, val = data_files
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env.update(TRAIN_FILES=str(train), VAL_FILES=str(val), PYTHONPATH=easyr1_layout)
    result = subprocess.run(["bash", str(root / "recipes" / "run_grpo_qwen25vl.sh"), "--dry-run"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert printed_command(result.stdout)[0] == str(interpreter)


@pytest.mark.slow
def test_verl_preflight_says_when_easyr1_is_installed_instead(tmp_path, easyr1_layout):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([easyr1_layout, str(ROOT)])}
    result = subprocess.run([sys.executable, "-m", "imageedit_r1.train", "preflight", "verl", "--dry-run", "--",
                             "python3", "-m", "verl.trainer.main_ppo", "data.train_batch_size=8"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: this interpreter has EasyR1 installed as 'verl', not upstream verl: `-m verl.trainer.main_ppo` "
        "would fail with No module named verl.trainer.main_ppo. Install upstream verl in an environment of its own "
        "with `pip install -e '.[verl]'` (docs/training.md), set PYTHON to an interpreter that has it, or use "
        "recipes/run_grpo_qwen25vl.sh for EasyR1")
    assert printed_command(result.stdout) == ["python3", "-m", "verl.trainer.main_ppo", "data.train_batch_size=8"]


@pytest.mark.slow
def test_easyr1_recipe_rejects_verl_files_and_a_dataset_too_short_for_one_step(verl_files, tmp_path, easyr1_layout):
    train, val = verl_files
    result = run_recipe(EASYR1_RECIPE, "--dry-run", env={"TRAIN_FILES": str(train), "VAL_FILES": str(val)},
                        easyr1=easyr1_layout)
    assert result.returncode == 2
    assert f"data.train_files: {train} is an upstream verl export" in result.stderr
    assert "EasyR1 needs problem, answer, images" in result.stderr

    short = write_rows(tmp_path / "short.parquet", EASYR1_COLUMNS, 5)
    result = run_recipe(EASYR1_RECIPE, "--dry-run", env={"TRAIN_FILES": str(short), "VAL_FILES": str(short)},
                        easyr1=easyr1_layout)
    assert result.returncode == 2, result.stderr
    # 5 prompts x 8 rollouts split over 8 GPUs in EasyR1's micro-batches: all 5 rows make one step.
    assert ("data.train_files holds 5 row(s), fewer than one batch of 32 prompts (data.rollout_batch_size): the "
            "trainer drops an incomplete batch, so this run would make no training step; "
            "data.rollout_batch_size=5 worker.actor.global_batch_size=5 fit (ROLLOUT_BATCH_SIZE=5 "
            "GLOBAL_BATCH_SIZE=5 in the recipe), or export at least 32 rows") in result.stderr
    result = run_recipe(EASYR1_RECIPE, "--dry-run", env={"TRAIN_FILES": str(short), "VAL_FILES": str(short),
                                                        "ROLLOUT_BATCH_SIZE": "5", "GLOBAL_BATCH_SIZE": "5"},
                        easyr1=easyr1_layout)
    assert result.returncode == 0, result.stderr  # the settings it named pass


@verl_needed
@pytest.mark.slow
def test_verl_recipe_refuses_a_dataset_too_short_for_one_step_naming_what_fits(tmp_path):
    short = write_rows(tmp_path / "short.parquet", VERL_COLUMNS, 5)
    result = run_recipe(VERL_RECIPE, "--dry-run", env={"TRAIN_FILES": str(short), "VAL_FILES": str(short)})
    assert result.returncode == 2
    assert printed_command(result.stdout)[2] == "verl.trainer.main_ppo"
    assert ("data.train_files holds 5 row(s), fewer than one batch of 32 prompts (data.train_batch_size): the trainer "
            "drops an incomplete batch, so this run would make no training step; data.train_batch_size=5 "
            "actor_rollout_ref.actor.ppo_mini_batch_size=5 fit (ROLLOUT_BATCH_SIZE=5 GLOBAL_BATCH_SIZE=5 in the "
            "recipe), or export at least 32 rows") in result.stderr
    result = run_recipe(VERL_RECIPE, "--dry-run", env={"TRAIN_FILES": str(short), "VAL_FILES": str(short),
                                                      "ROLLOUT_BATCH_SIZE": "5", "GLOBAL_BATCH_SIZE": "5"})
    assert result.returncode == 0, result.stderr


@verl_needed
@pytest.mark.slow
def test_verl_recipe_rejects_easyr1_files(data_files):
    train, val = data_files
    result = run_recipe(VERL_RECIPE, "--dry-run", env={"TRAIN_FILES": str(train), "VAL_FILES": str(val)})
    assert result.returncode == 2
    assert f"data.train_files: {train} is an EasyR1 export" in result.stderr
    assert "upstream verl needs prompt, images, reward_model" in result.stderr


@verl_needed
@pytest.mark.slow
def test_an_unknown_verl_key_is_one_line_naming_the_key_meant():
    with pytest.raises(preflight.PreflightError) as caught:
        preflight.compose_verl_config(["data.train_batch_sise=8"])
    assert caught.value.problems == [
        "unknown verl config key 'data.train_batch_sise' (did you mean 'data.train_batch_size'?); to add a key "
        "verl does not define, write +data.train_batch_sise=..."]


# ---------------------------------------------------------------- image budget


def _exported(tmp_path, fmt, budget, max_prompt_bound, images_struct=None):
    """A training file beside an export manifest, as `python -m imageedit_r1.data export` leaves them."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "rl"
    (out / fmt).mkdir(parents=True)
    image = images_struct or pa.struct([("bytes", pa.binary()), ("path", pa.string()),
                                        ("min_pixels", pa.int64()), ("max_pixels", pa.int64())])
    pq.write_table(pa.table({"images": pa.array([], type=pa.list_(image))}), out / fmt / "train.parquet")
    manifest = {"image_budget": budget, "max_prompt_bound": max_prompt_bound}
    (out / "export_manifest.json").write_text(json.dumps(manifest))
    return str(out / fmt / "train.parquet")


def _budget_problems(trainer, train_file, max_prompt_length, config_budget=None):
    from imageedit_r1.train.budget_check import check_image_budget

    report = preflight.Report()
    check_image_budget(report, trainer, train_files=[train_file], max_prompt_length=max_prompt_length,
                       config_budget=config_budget)
    return report.problems


def test_preflight_refuses_a_max_prompt_length_that_would_drop_rows(tmp_path):
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    train = _exported(tmp_path, "verl", DEFAULT_BUDGET.as_dict(), 1_900)
    # verl's own recipe used to set 2048 with no budget: a 1920x1080 photo (2,691 tokens) was dropped.
    assert _budget_problems("verl", train, 2048) == []  # these rows fit
    (problem,) = _budget_problems("verl", train, 1_536)
    assert "data.max_prompt_length=1536 is below 1900" in problem and "drop" in problem
    # No manifest: the budget's worst case decides.
    lone = tmp_path / "lone.parquet"
    lone.write_bytes(b"PAR1")
    (problem,) = _budget_problems("easyr1", str(lone), 2048, DEFAULT_BUDGET)
    assert "below 3584" in problem


def test_preflight_refuses_a_trainer_budget_other_than_the_exported_one(tmp_path):
    from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget

    train = _exported(tmp_path, "easyr1", DEFAULT_BUDGET.as_dict(), 1_900)
    easyr1_defaults = ImageBudget(262_144, 4_194_304)  # what EasyR1 uses when the recipe's keys are missing
    problems = _budget_problems("easyr1", train, 8192, easyr1_defaults)
    assert any("exported for 262,144..1,003,520" in p and "resize" in p for p in problems), problems
    assert _budget_problems("easyr1", train, 8192, DEFAULT_BUDGET) == []


def test_preflight_refuses_verl_data_without_per_image_budget(tmp_path):
    import pyarrow as pa

    from imageedit_r1.image_budget import DEFAULT_BUDGET

    old = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # a plain datasets.Image column
    train = _exported(tmp_path, "verl", DEFAULT_BUDGET.as_dict(), 1_900, images_struct=old)
    (problem,) = _budget_problems("verl", train, 4096)
    assert "no min_pixels/max_pixels" in problem and "re-export" in problem


def test_budget_command_prints_what_the_recipes_use(capsys):
    from imageedit_r1.train.__main__ import main

    assert main(["budget", "--shell"]) == 0
    values = dict(line.split("=") for line in capsys.readouterr().out.split())
    assert values == {"MIN_PIXELS": "262144", "MAX_PIXELS": "1003520", "MAX_IMAGE_TOKENS": "1280",
                      "MAX_PROMPT_LENGTH": "3584"}
    assert main(["budget", "--min-pixels", "5000000"]) == 2
    assert "above max_pixels" in capsys.readouterr().err
