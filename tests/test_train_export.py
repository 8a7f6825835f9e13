"""Checkpoint export: the trainer's merger runs, and the merged folder is proven to load and run."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl  # noqa: E402
from imageedit_r1.train import export  # noqa: E402
from imageedit_r1.train.__main__ import main  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "model")


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


@pytest.mark.slow
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
