"""Checkpoint export: the trainer's merger runs, and the merged folder is proven to load and run."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.slow  # the tiny Qwen2.5-VL, loaded and merged

torch = pytest.importorskip("torch")

from imageedit_r1.train import export  # noqa: E402
from imageedit_r1.train.__main__ import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_qwen25vl):
    return tiny_qwen25vl


def test_check_accepts_a_saved_model_and_runs_a_forward(tiny, capsys):
    result = export.check_model_folder(tiny, device="cpu")
    assert result.model_class == "Qwen2_5_VLForConditionalGeneration"
    assert result.parameters > 0 and result.input_tokens > 10
    assert main(["check-model", str(tiny), "--device", "cpu"]) == 0
    assert "forward on" in capsys.readouterr().out


def test_check_rejects_broken_folders(tiny, tmp_path):
    no_processor = tmp_path / "no_processor"
    shutil.copytree(tiny, no_processor)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_processor / name).unlink()
    with pytest.raises(export.ExportError, match="processor"):
        export.check_model_folder(no_processor, device="cpu")

    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(tiny, partial)
    weights = partial / "model.safetensors"
    state = load_file(weights)
    dropped = sorted(k for k in state if "lm_head" not in k)[0]
    del state[dropped]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(export.ExportError, match="weights missing after merge"):
        export.check_model_folder(partial, device="cpu")

    with pytest.raises(export.ExportError, match="config.json is missing"):
        export.check_model_folder(tmp_path, device="cpu")


def test_checkpoint_layout_errors_are_specific(tmp_path):
    step = tmp_path / "global_step_5"
    (step / "actor").mkdir(parents=True)
    with pytest.raises(export.ExportError, match="pass the actor folder"):
        export.export_checkpoint("verl", step, tmp_path / "out")
    with pytest.raises(export.ExportError, match="checkpoint folder not found"):
        export.export_checkpoint("verl", tmp_path / "nope", tmp_path / "out")
    with pytest.raises(export.ExportError, match="EASYR1_DIR"):
        export.merger_command("easyr1", step / "actor", tmp_path / "out", easyr1_dir=None, python="python")


def fsdp_checkpoint(model_dir, actor_dir):
    """The layout an FSDP actor checkpoint has with one rank: full tensors, the HF config beside them."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    actor_dir.mkdir(parents=True)
    torch.save(model.state_dict(), actor_dir / "model_world_size_1_rank_0.pt")
    (actor_dir / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
    hf = actor_dir / "huggingface"
    hf.mkdir()
    for item in model_dir.iterdir():
        if not item.name.endswith(".safetensors"):
            shutil.copy(item, hf / item.name)
    return model.state_dict()


def test_verl_checkpoint_exports_through_verls_merger(tiny, tmp_path):
    pytest.importorskip("verl")
    original = fsdp_checkpoint(tiny, tmp_path / "global_step_2" / "actor")
    out = tmp_path / "exported"
    folder = export.export_checkpoint("verl", tmp_path / "global_step_2" / "actor", out, device="cpu")
    assert folder == out.resolve()

    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    key = next(k for k in original if k.endswith("q_proj.weight"))
    torch.testing.assert_close(merged[key].float(), original[key].to(torch.bfloat16).float())
    # The exported agent carries the image budget it was trained with: its processor resizes to it.
    from transformers import AutoProcessor

    from imageedit_r1.image_budget import DEFAULT_BUDGET, read_budget

    assert read_budget(out) == DEFAULT_BUDGET
    processor = AutoProcessor.from_pretrained(out)
    from PIL import Image

    grid = processor.image_processor(images=[Image.new("RGB", (4032, 3024))], return_tensors="pt")["image_grid_thw"]
    assert int(grid.prod()) // 4 == DEFAULT_BUDGET.image_tokens(4032, 3024) == 1_230
    with pytest.raises(export.ExportError, match="not empty"):
        export.export_checkpoint("verl", tmp_path / "global_step_2" / "actor", out)


# ---------------------------------------------------------------- TRL


def _logits(model, processor):
    from PIL import Image

    from imageedit_r1.prompts import render_prompt

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": render_prompt(
        "decompose", content="Make the sky a sunset.")}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (96, 64), (30, 90, 200))], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def test_trl_lora_checkpoint_is_merged_into_its_base(tiny, tmp_path, capsys):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny)
    base = AutoModelForImageTextToText.from_pretrained(tiny, dtype=torch.float32).eval()
    base_logits = _logits(base, processor)
    # An adapter that changes the model (LoRA B is zero at init; random here), saved as TRL saves one.
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                             init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(0)
    tuned = peft.get_peft_model(base, config).eval()
    checkpoint = tmp_path / "run" / "checkpoint-3"
    tuned.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
        (checkpoint / name).write_bytes(b"{}")
    expected = _logits(tuned, processor)
    assert not torch.allclose(expected, base_logits, atol=1e-3)

    out = tmp_path / "merged"
    from imageedit_r1.testing.tiny_qwen import MAX_PIXELS, MIN_PIXELS

    assert main(["export-checkpoint", "--trainer", "trl", "--local-dir", str(checkpoint), "--out", str(out),
                 "--device", "cpu", "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS)]) == 0
    assert "merging the LoRA adapter" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if "adapter" in p.name or p.suffix == ".pt") == []
    merged = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    assert torch.allclose(_logits(merged, AutoProcessor.from_pretrained(out)), expected, atol=1e-4)

    # The output folder of a run is not a checkpoint; a wrong base model is named.
    with pytest.raises(export.ExportError, match="pass one of its checkpoint-N folders"):
        export.export_checkpoint("trl", tmp_path / "run", tmp_path / "o1")
    with pytest.raises(export.ExportError, match="cannot load the base model"):
        export.export_checkpoint("trl", checkpoint, tmp_path / "o2", base_model=str(tmp_path / "nowhere"))


def test_trl_full_checkpoint_is_copied_without_training_state(tiny, tmp_path):
    checkpoint = tmp_path / "checkpoint-5"
    shutil.copytree(tiny, checkpoint)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
        (checkpoint / name).write_bytes(b"{}")
    folder = export.export_checkpoint("trl", checkpoint, tmp_path / "out", device="cpu")
    names = {p.name for p in folder.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not names & {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"}
    assert (folder / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
