"""Turn a trained FSDP checkpoint into a Hugging Face folder the pipeline loads, and prove it loads.

Merging is each trainer's own job (their shard layouts and DTensor placements change between
versions), so this module runs their merger as a subprocess:
- EasyR1: ``python scripts/model_merger.py --local_dir …/global_step_N/actor`` (writes
  ``…/actor/huggingface``; the script lives in the EasyR1 checkout, not in the installed package);
- verl: ``python -m verl.model_merger merge --backend fsdp --local_dir … --target_dir …``.
TRL checkpoints (``<output_dir>/checkpoint-N`` or the output folder itself) are already Hugging Face
folders: full fine-tuning writes the weights, which are copied without the optimizer and trainer
state; LoRA (``--use_peft``) writes an adapter, which peft merges into its base model
(``adapter_config.json``'s ``base_model_name_or_path``, or ``base_model``).
Then the image budget the agent was trained with is written into the folder's processor config
(``imageedit_r1.image_budget.write_budget``), so the exported agent carries it to every loader, and
the folder is checked the way the pipeline will use it: config, processor, every weight present,
and one forward pass on an image and a request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, write_budget


class ExportError(RuntimeError):
    """The checkpoint could not be merged, or the merged folder does not load."""


@dataclass
class CheckResult:
    folder: Path
    model_class: str
    parameters: int
    dtype: str
    device: str
    input_tokens: int
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.folder}: {self.model_class}, {self.parameters / 1e6:.1f}M parameters ({self.dtype}), "
            f"forward on {self.input_tokens} tokens on {self.device} OK in {self.seconds:.1f}s"
        )


def _shard_files(local_dir: Path) -> list[Path]:
    return sorted(local_dir.glob("model_world_size_*_rank_*.pt"))


def merger_command(trainer: str, local_dir: Path, out: Path, *, easyr1_dir: str | None, python: str) -> list[str]:
    if trainer == "easyr1":
        root = easyr1_dir or os.environ.get("EASYR1_DIR")
        if not root:
            raise ExportError("EasyR1's merger lives in its source checkout: pass --easyr1-dir or set EASYR1_DIR "
                              "(`make setup-easyr1` clones it into .venv-easyr1/src/EasyR1; the image has /opt/EasyR1)")
        script = Path(root) / "scripts" / "model_merger.py"
        if not script.is_file():
            raise ExportError(f"EasyR1 merger not found: {script} (is --easyr1-dir an EasyR1 checkout?)")
        return [python, str(script), "--local_dir", str(local_dir)]
    if trainer == "verl":
        return [python, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
                "--local_dir", str(local_dir), "--target_dir", str(out)]
    raise ExportError(f"unknown trainer {trainer!r}: choose easyr1 or verl")


def check_checkpoint_layout(trainer: str, local_dir: Path) -> None:
    if not local_dir.is_dir():
        raise ExportError(f"checkpoint folder not found: {local_dir}")
    if local_dir.name == "huggingface":
        raise ExportError(f"{local_dir} is the merged output folder; pass its parent (…/global_step_N/actor)")
    if not _shard_files(local_dir):
        hint = " (pass the actor folder: …/global_step_N/actor)" if (local_dir / "actor").is_dir() else ""
        raise ExportError(f"no model_world_size_*_rank_*.pt shards in {local_dir}{hint}")
    if not (local_dir / "huggingface" / "config.json").is_file():
        raise ExportError(f"{local_dir}/huggingface/config.json is missing: the trainer saves it with every checkpoint")
    if trainer == "verl" and not (local_dir / "fsdp_config.json").is_file():
        raise ExportError(f"{local_dir}/fsdp_config.json is missing: is this a verl checkpoint (not EasyR1)?")


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ExportError(f"cannot run the merger: {exc}") from exc
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise ExportError(f"the merger failed (exit {proc.returncode}):\n{tail}")


# What a TRL / transformers Trainer checkpoint holds besides the model: never part of an export.
_TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def _has_processor(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _PROCESSOR_FILES)


def export_trl_checkpoint(local_dir: str | os.PathLike, out: str | os.PathLike, *, base_model: str | None = None) -> Path:
    """A TRL checkpoint (full weights or a LoRA adapter) as a Hugging Face folder at ``out``.

    Raises ``ExportError`` when the folder is neither, the base model of an adapter cannot be
    loaded, or no processor is found (the checkpoint's, else the base model's).
    """
    local, target = Path(local_dir).resolve(), Path(out).resolve()
    if not local.is_dir():
        raise ExportError(f"checkpoint folder not found: {local}")
    adapter = local / "adapter_config.json"
    if adapter.is_file():
        _merge_lora(local, target, base_model)
    elif (local / "config.json").is_file() and any(local.glob("*.safetensors")):
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(local.iterdir()):
            if path.is_file() and path.name not in _TRAINING_STATE and not path.name.startswith("rng_state"):
                shutil.copy2(path, target / path.name)
        if not _has_processor(target):
            if not base_model:
                raise ExportError(f"{local} holds no processor: pass --base-model to take it from the base model")
            _save_processor(base_model, target)
    else:
        hint = " (pass one of its checkpoint-N folders)" if any(local.glob("checkpoint-*")) else ""
        raise ExportError(f"{local} holds neither model weights (config.json + *.safetensors) nor a LoRA adapter{hint}")
    return target


def _save_processor(source: str | os.PathLike, target: Path) -> None:
    from transformers import AutoProcessor

    try:
        AutoProcessor.from_pretrained(source).save_pretrained(target)
    except Exception as exc:  # transformers raises several types for a missing or broken processor
        raise ExportError(f"cannot load the processor from {source}: {exc}") from exc


def _merge_lora(local: Path, target: Path, base_model: str | None) -> None:
    import json

    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ExportError("merging a LoRA checkpoint needs peft: pip install 'imageedit-r1[trl]'") from exc
    from transformers import AutoModelForImageTextToText

    base = base_model or json.loads((local / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ExportError(f"{local}/adapter_config.json names no base model: pass --base-model")
    print(f"merging the LoRA adapter {local} into {base}", flush=True)
    try:
        model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    except Exception as exc:
        raise ExportError(f"cannot load the base model {base} of the adapter: {exc} (pass --base-model)") from exc
    try:
        merged = PeftModel.from_pretrained(model, local).merge_and_unload()
    except Exception as exc:  # peft: shape or module mismatches between adapter and base
        raise ExportError(f"the adapter in {local} does not fit the base model {base}: {exc}") from exc
    target.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(target)
    _save_processor(local if _has_processor(local) else base, target)


def export_checkpoint(
    trainer: str,
    local_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    easyr1_dir: str | None = None,
    python: str = sys.executable,
    check: bool = True,
    device: str = "auto",
    base_model: str | None = None,
    image_budget: ImageBudget = DEFAULT_BUDGET,
) -> Path:
    """Merge (EasyR1, verl) or copy / LoRA-merge (TRL) a checkpoint into ``out``, record ``image_budget``
    in its processor config, and check it loads."""
    local = Path(local_dir).resolve()
    target = Path(out).resolve()
    if target.exists() and any(target.iterdir()):
        raise ExportError(f"output folder {target} exists and is not empty; choose a new one")
    if trainer == "trl":  # already a Hugging Face folder: copied, or its LoRA adapter merged
        export_trl_checkpoint(local, target, base_model=base_model)
    else:
        check_checkpoint_layout(trainer, local)
        cmd = merger_command(trainer, local, target, easyr1_dir=easyr1_dir, python=python)
        _run(cmd)
        if trainer == "easyr1":
            merged = local / "huggingface"
            if not any(merged.glob("*.safetensors")):
                raise ExportError(f"the EasyR1 merger wrote no weights to {merged}")
            shutil.copytree(merged, target, dirs_exist_ok=True)
    try:
        written = write_budget(target, image_budget)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(f"{target}: cannot record the image budget: {exc} (the merger saved no processor?)") from exc
    print(f"image budget {image_budget} written to {', '.join(p.name for p in written)}")
    if check:
        print(check_model_folder(target, device=device).summary())
    return target


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_model_folder(folder: str | os.PathLike, *, device: str = "auto") -> CheckResult:
    """Load ``folder`` as the pipeline does and run one forward pass on an image and a request."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder}: config.json is missing; not a Hugging Face model folder")
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from imageedit_r1.prompts import render_prompt

    start = time.perf_counter()
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as exc:  # transformers raises several error types for a bad config
        raise ExportError(f"{folder}: config does not load: {exc}") from exc
    try:
        processor = AutoProcessor.from_pretrained(folder)
    except Exception as exc:
        raise ExportError(f"{folder}: processor/tokenizer does not load: {exc}") from exc
    if not hasattr(processor, "image_processor"):
        raise ExportError(f"{folder}: the processor has no image processor; the decomposer needs one")
    device = _pick_device(device)
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(
            folder, dtype="auto", output_loading_info=True
        )
    except Exception as exc:
        raise ExportError(f"{folder}: weights do not load: {exc}") from exc
    missing = list(info.get("missing_keys", []))
    if missing:
        raise ExportError(f"{folder}: {len(missing)} weights missing after merge, e.g. {missing[:3]}")
    model = model.to(device).eval()

    image = Image.new("RGB", (112, 112), (200, 40, 40))
    request = render_prompt("decompose", content="Make the red square blue.")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request}]}]
    try:
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(device)
    except Exception as exc:  # a tokenizer without the image tokens or the chat template fails here
        raise ExportError(f"{folder}: the processor cannot prepare an image+request input: {exc}") from exc
    try:
        with torch.no_grad():
            logits = model(**inputs).logits  # mm_token_type_ids from the processor set the mRoPE positions
    except Exception as exc:
        raise ExportError(f"{folder}: the forward pass failed: {exc}") from exc
    vocab = config.get_text_config().vocab_size
    if logits.shape[:2] != inputs["input_ids"].shape or logits.shape[-1] < vocab:
        raise ExportError(f"{folder}: unexpected logits shape {tuple(logits.shape)}")
    if not torch.isfinite(logits.float()).all():
        raise ExportError(f"{folder}: the forward pass produced NaN/inf logits; the weights are corrupt")
    return CheckResult(
        folder=folder,
        model_class=type(model).__name__,
        parameters=sum(p.numel() for p in model.parameters()),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        device=device,
        input_tokens=int(inputs["input_ids"].shape[1]),
        seconds=time.perf_counter() - start,
    )
