"""GRPO through TRL's own GRPOTrainer on the CPU, with this project's data, prompt, reward and tools.

1. End to end, as a user runs it: ``data export --format trl`` on images drawn in code, then
   ``recipes/run_grpo_qwen25vl_trl.sh`` (accelerate, one CPU process, LoRA) on the tiny Qwen2.5-VL:
   a few steps with several generations per prompt. The logs hold the four reward components,
   ``train curves`` reads them, the checkpoint is exported (LoRA merged into the base) and loaded
   back by the pipeline's transformers backend, whose decomposer runs on it.
2. A learning check through the same trainer: a random tiny model cannot write the tag format in a
   few CPU steps, so (as the fallback the project accepts) each prompt's group is a fixed set of
   candidate decompositions from exact to garbage, handed to TRL through its ``rollout_func`` hook;
   TRL scores them with our four reward functions, computes the group advantages, the KL term and
   the updates. The policy's log-probability of the high-reward candidates must rise relative to
   the low-reward ones, and the exported full-weight checkpoint must carry that change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from imageedit_r1.decomposition import Decomposition  # noqa: E402
from imageedit_r1.rewards import score  # noqa: E402
from imageedit_r1.testing.tiny_qwen import MAX_PIXELS, MIN_PIXELS  # noqa: E402
from tests.trl_fixtures import SCENES, TRUTHS, export_trl  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.trl]

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "run_grpo_qwen25vl_trl.sh"
BUDGET = ["--image-min-pixels", str(MIN_PIXELS), "--image-max-pixels", str(MAX_PIXELS)]
COMPONENTS = ("format", "action", "subject", "goal")


@pytest.fixture(scope="module")
def tiny(tiny_qwen25vl):
    return tiny_qwen25vl


@pytest.fixture(scope="module")
def trl_data(tmp_path_factory):
    """TRL parquet from the real exporter (leakage guard on), images at the tiny model's budget."""
    return export_trl(tmp_path_factory.mktemp("data"), *BUDGET)


def test_recipe_trains_logs_four_rewards_and_exports_a_checkpoint_the_pipeline_loads(tiny, trl_data, tmp_path):
    from imageedit_r1.agents.decomposer import Decomposer, DecompositionError, decomposition_messages
    from imageedit_r1.backends.transformers_backend import TransformersBackend
    from imageedit_r1.train.__main__ import main as train_main
    from tests.trl_fixtures import draw_scene

    out = tmp_path / "run"
    env = {
        **os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(tiny), "TRAIN_FILES": str(trl_data / "train.parquet"),
        "N_GPUS_PER_NODE": "0", "ROLLOUT_BATCH_SIZE": "1", "ROLLOUT_N": "4", "MICRO_BATCH_SIZE": "4",
        "MAX_STEPS": "2", "USE_LORA": "1", "LORA_R": "8", "CHECKPOINT_DIR": str(out), "HF_HUB_OFFLINE": "1",
    }
    overrides = [f"min_pixels={MIN_PIXELS}", f"max_pixels={MAX_PIXELS}", "max_completion_length=12",
                 "save_steps=2", "gradient_checkpointing=false", "seed=0"]
    result = subprocess.run(["bash", str(RECIPE), *overrides], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"saved the trained model to {out} after 2 step(s)" in result.stdout

    # TRL's own log history: one record per step, each with the four components and their sum.
    checkpoint = out / "checkpoint-2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    steps = [r for r in state["log_history"] if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        components = [record[f"rewards/{name}/mean"] for name in COMPONENTS]
        assert all(0.0 <= value <= 1.0 for value in components)
        assert record["reward"] == pytest.approx(sum(components) / 4, abs=1e-6)  # weights normalised: reward = overall
        assert record["completions/mean_length"] > 0 and record["num_tokens"] > 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "reward" in m] == [1, 2]

    assert train_main(["curves", str(out), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 1000

    # The checkpoint holds a LoRA adapter; the export merges it into the base and checks a forward pass.
    assert (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "model.safetensors").exists()
    exported = tmp_path / "exported"
    assert train_main(["export-checkpoint", "--trainer", "trl", "--local-dir", str(checkpoint),
                       "--out", str(exported), "--device", "cpu",
                       "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS)]) == 0
    assert (exported / "model.safetensors").is_file() and not (exported / "optimizer.pt").exists()
    assert not list(exported.glob("adapter_*"))

    # The pipeline's transformers backend loads it, at the training image budget, and the decomposer runs.
    backend = TransformersBackend(str(exported), device="cpu")
    image_processor = backend._processor.image_processor
    assert (image_processor.size["shortest_edge"], image_processor.size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS)
    _, request, _, background, shape, _ = SCENES[0]
    image = draw_scene((1200, 900), background, shape)
    reply = backend.chat(decomposition_messages(image, request), max_tokens=8)
    assert reply.prompt_tokens > 100 and reply.completion_tokens > 0
    # The decomposer drives it (random weights answer garbage, which it reports, not crashes on).
    with pytest.raises(DecompositionError):
        Decomposer(backend, repair="none", max_tokens=8).run(image, request)


def test_a_run_that_makes_no_step_exits_non_zero_and_saves_no_model(tiny, trl_data, tmp_path):
    """Past the recipe's preflight (the entry point run by hand): 4 rows hold no batch of 8 prompts."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "imageedit_r1.train.trl_grpo", "--config", str(ROOT / "recipes" / "configs" /
               "grpo_qwen25vl_trl.yaml"), "--model_name_or_path", str(tiny), "--train_files",
               str(trl_data / "train.parquet"), "--output_dir", str(out), "--use_cpu", "true", "--bf16", "false",
               "--dtype", "float32", "--num_generations", "4", "--per_device_train_batch_size", "4",
               "--gradient_accumulation_steps", "8", "--max_steps", "2", "--min_pixels", str(MIN_PIXELS),
               "--max_pixels", str(MAX_PIXELS), "--gradient_checkpointing", "false"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("error: the run made no training step: 4 training row(s) hold no whole batch of 8 prompts (x 4 "
            "generations), and TRL drops an incomplete batch; no model was saved") in result.stderr
    assert "saved the trained model" not in result.stdout + result.stderr
    assert not list(out.glob("*.safetensors"))


# ----------------------------------------------------------------------------- learning check


def _candidates(truth: Decomposition) -> list[str]:
    """Four reward levels, best first: exact, half right, wrong, no decomposition at all."""
    think = "the request names these edits"
    return [
        Decomposition(truth.actions, truth.subjects, truth.goals, think=think).render(),
        Decomposition(truth.actions, truth.subjects[:1], ["something else"], think=think).render(),
        Decomposition(["Style Transfer"], ["dog"], ["a hat"], think=think).render(),
        "I would edit the picture nicely.",
    ]


def _request_of(prompt) -> str:
    text = "".join(block.get("text") or "" for block in prompt[0]["content"] if block.get("type") == "text")
    for scene_id, request, *_ in SCENES:
        if request in text:
            return scene_id
    raise AssertionError(f"unknown prompt: {text[:200]!r}")


def _candidate_rollout(candidates: dict[str, list[str]]):
    """A TRL ``rollout_func``: the j-th copy of a prompt in the batch gets that prompt's j-th candidate."""
    from trl.data_utils import apply_chat_template

    def rollout(prompts, trainer):
        processor = trainer.processing_class
        seen: dict[str, int] = defaultdict(int)
        prompt_ids, completion_ids = [], []
        for prompt in prompts:
            scene = _request_of(prompt)
            text = apply_chat_template({"prompt": prompt}, processor)["prompt"]
            images = [block["image"] for block in prompt[0]["content"] if block.get("type") == "image"]
            ids = processor(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
            answer = candidates[scene][seen[scene] % len(candidates[scene])]
            seen[scene] += 1
            prompt_ids.append(ids)
            completion_ids.append(processor.tokenizer(answer)["input_ids"] + [processor.tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def _mean_logps(model, processor, rows, candidates) -> dict[str, torch.Tensor]:
    """Per scene: the policy's mean per-token log-prob of each candidate (with mRoPE token types)."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    out = {}
    tokenizer = processor.tokenizer
    for row in rows:
        prompt = prepare_multimodal_messages(row["prompt"], images=row["images"])
        prompt_text = apply_chat_template({"prompt": prompt}, processor)["prompt"]
        prompt_len = processor(text=[prompt_text], images=row["images"], return_tensors="pt")["input_ids"].shape[1]
        answers = candidates[row["id"]]
        texts = [prompt_text + answer + tokenizer.eos_token for answer in answers]
        tokenizer.padding_side = "right"
        inputs = processor(text=texts, images=row["images"] * len(texts), return_tensors="pt", padding=True)
        tokenizer.padding_side = "left"
        with torch.no_grad():
            logits = model(**inputs).logits
        targets = inputs["input_ids"][:, prompt_len:]
        logp = torch.log_softmax(logits[:, prompt_len - 1 : -1].float(), dim=-1).gather(-1, targets.unsqueeze(-1))
        mask = inputs["attention_mask"][:, prompt_len:].float()
        out[row["id"]] = (logp.squeeze(-1) * mask).sum(-1) / mask.sum(-1)
    return out


def test_trl_updates_raise_high_reward_decompositions_over_low_reward_ones(tiny, trl_data, tmp_path):
    import datasets
    from transformers import AutoModelForImageTextToText

    from imageedit_r1.train.__main__ import main as train_main
    from imageedit_r1.train.trl_grpo import build_trainer, parse_args

    scenes = ["photo-12mp", "panorama"]
    candidates = {scene: _candidates(TRUTHS[scene]) for scene in scenes}
    for scene in scenes:  # four distinct reward levels, best first
        rewards = [score(c, TRUTHS[scene].to_json())["overall"] for c in candidates[scene]]
        assert rewards == sorted(set(rewards), reverse=True), rewards

    subset = tmp_path / "subset.parquet"
    full = datasets.load_dataset("parquet", data_files=str(trl_data / "train.parquet"), split="train")
    full.filter(lambda row: row["id"] in scenes).to_parquet(str(subset))

    out = tmp_path / "run"
    data_args, config, model_args = parse_args([
        "--model_name_or_path", str(tiny), "--train_files", str(subset), "--output_dir", str(out),
        "--min_pixels", str(MIN_PIXELS), "--max_pixels", str(MAX_PIXELS),
        "--num_generations", "4", "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1",
        "--max_steps", "4", "--learning_rate", "2e-3", "--lr_scheduler_type", "constant", "--beta", "0.01",
        "--max_completion_length", "96", "--gradient_checkpointing", "false", "--use_cpu", "true",
        "--seed", "0", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
    ])
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trainer = build_trainer(data_args, config, model_args, rollout_func=_candidate_rollout(candidates))
    processor = trainer.processing_class
    rows = [row for row in trainer.train_dataset]
    before = _mean_logps(trainer.model, processor, rows, candidates)
    trainer.train()
    after = _mean_logps(trainer.model, processor, rows, candidates)

    # TRL logged what our four reward functions gave the candidates: the same spread every step.
    history = [r for r in trainer.state.log_history if "reward" in r]
    assert len(history) == 4
    expected = {name: sum(score(c, TRUTHS[s].to_json())[name] for s in scenes for c in candidates[s]) / 8
                for name in COMPONENTS}
    for record in history:
        for name in COMPONENTS:
            assert record[f"rewards/{name}/mean"] == pytest.approx(expected[name], abs=1e-5)
        assert record["reward_std"] > 0.1 and record["kl"] >= 0.0

    for scene in scenes:
        moved = (after[scene] - before[scene]).tolist()
        gap_before = float(before[scene][0] - before[scene][-1])
        gap_after = float(after[scene][0] - after[scene][-1])
        assert gap_after > gap_before + 0.5, (scene, gap_before, gap_after)
        assert moved[0] > moved[-1] and sum(moved[:2]) > sum(moved[2:]), (scene, moved)

    # The trained full weights export as they are and keep what was learned.
    trainer.save_model(str(out))
    exported = tmp_path / "exported"
    assert train_main(["export-checkpoint", "--trainer", "trl", "--local-dir", str(out),
                       "--out", str(exported), "--device", "cpu"]) == 0
    reloaded = AutoModelForImageTextToText.from_pretrained(exported, dtype=torch.float32).eval()
    again = _mean_logps(reloaded, processor, rows, candidates)
    for scene in scenes:  # equal up to float32 summation order of a fresh model
        assert torch.allclose(again[scene], after[scene], atol=2e-3), (again[scene], after[scene])
        assert float(again[scene][0] - again[scene][-1]) > float(before[scene][0] - before[scene][-1]) + 0.5
