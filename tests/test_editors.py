"""Editors: sizes, seeds, the process-wide pipeline cache, and the tiny FLUX.1-Kontext pipeline."""

import pytest
from PIL import Image

from imageedit_r1.agents.editors import EDITORS, EditorUnavailableError, build_editor
from imageedit_r1.agents.editors.base import (
    fit_to_size,
    nearest_aspect,
    restore_size,
    unletterbox,
    working_size,
)
from imageedit_r1.images import image_sha256


def gradient(width, height):
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image


# ----------------------------------------------------------------------------- sizes


def test_working_size_keeps_aspect_snaps_to_the_multiple_and_respects_the_area_budget():
    w, h = working_size(4000, 3000, max_area=1024**2, multiple=16)
    assert w % 16 == 0 and h % 16 == 0 and w * h <= 1024**2
    assert abs(w / h - 4 / 3) < 0.03
    # Small inputs are scaled up to the minimum area instead of being edited at a size the model never saw.
    w, h = working_size(200, 100, max_area=1024**2, min_area=512 * 512, multiple=16)
    assert w * h >= 0.9 * 512 * 512 and abs(w / h - 2) < 0.05
    assert working_size(67, 45, max_area=10**6, min_area=0, multiple=2) == (66, 44)
    assert working_size(5, 5, max_area=10**6, min_area=0, multiple=16) == (16, 16)


@pytest.mark.parametrize("size", [(39_000_000, 1), (1, 39_000_000), (100_000, 3), (16, 1)])
def test_the_working_area_never_passes_max_area_whatever_the_aspect(size):
    # A side raised to one multiple must not leave the other at full length: 39,000,000 x 1 once
    # asked FLUX for 6,394,864 x 16, 98 times its budget.
    for max_area, min_area in ((1024**2, 512 * 512), (80 * 60, 0)):
        w, h = working_size(*size, max_area=max_area, min_area=min_area, multiple=16)
        assert w % 16 == 0 and h % 16 == 0 and w * h <= max_area
        assert (w >= h) == (size[0] >= size[1])  # the long side stays the long side


@pytest.mark.parametrize("size", [(39_000, 1), (1, 39_000)])
def test_a_thin_region_comes_back_at_the_input_size(size):
    work = working_size(*size, max_area=64 * 64, multiple=16)
    assert restore_size(Image.new("RGB", work, (9, 9, 9)), size).size == size
    padded, box = fit_to_size(Image.new("RGB", size, (9, 9, 9)), (64, 64))
    assert padded.size == (64, 64)
    assert restore_size(unletterbox(padded.resize((96, 96)), box), size).size == size


def test_restore_size_crops_a_different_aspect_instead_of_stretching():
    wide = Image.new("RGB", (200, 100), (0, 0, 255))
    wide.paste((255, 0, 0), (0, 0, 50, 100))  # a red band at the left that a centre crop removes
    restored = restore_size(wide, (50, 50))
    assert restored.size == (50, 50)
    assert restored.getpixel((2, 25))[2] > 200  # blue: the left band was cropped, not squeezed in


def test_padding_round_trip_recovers_the_original_region():
    image = gradient(90, 30)
    padded, box = fit_to_size(image, (90, 90))
    assert padded.size == (90, 90)
    # A model answering at another resolution: the box is in fractions, so it still lines up.
    answer = padded.resize((300, 300), Image.Resampling.LANCZOS)
    back = restore_size(unletterbox(answer, box), image.size)
    assert back.size == image.size
    diff = sum(abs(a - b) for a, b in zip(back.getpixel((45, 15)), image.getpixel((45, 15)), strict=True))
    assert diff < 20
    assert nearest_aspect(1600, 900, ["1:1", "4:3", "16:9"]) == "16:9"


def test_registry_names_every_editor_and_rejects_unknown_names_and_options():
    assert set(EDITORS) == {"flux-kontext", "qwen-image-edit", "qwen-image-edit-plus", "nano-banana", "openai-image"}
    with pytest.raises(ValueError, match="unknown editor 'dalle'.*flux-kontext"):
        build_editor("dalle")
    with pytest.raises(ValueError, match="bad options for editor 'flux-kontext'"):
        build_editor("flux-kontext", stepz=3)
    flux = build_editor("flux-kontext")
    assert (flux.model_id, flux.num_inference_steps, flux.guidance_scale) == ("black-forest-labs/FLUX.1-Kontext-dev", 28, 2.5)
    qwen = build_editor("qwen-image-edit")
    assert (qwen.num_inference_steps, qwen.true_cfg_scale, qwen.negative_prompt) == (50, 4.0, " ")
    assert build_editor("qwen-image-edit-plus").num_inference_steps == 40
    assert build_editor("openai-image", model="gpt-image-2.5-flare").model_id == "gpt-image-2.5-flare"


@pytest.mark.slow
def test_missing_weights_give_a_clear_error(tmp_path):
    editor = build_editor("flux-kontext", model_id=str(tmp_path / "no-such-model"), local_files_only=True, device="cpu")
    with pytest.raises(EditorUnavailableError, match="could not load FluxKontextPipeline weights") as info:
        editor.edit(gradient(32, 32), "make it red")
    assert "hf download" in str(info.value)


def test_an_empty_instruction_is_rejected_before_any_work():
    with pytest.raises(ValueError, match="instruction is empty"):
        build_editor("flux-kontext").edit(gradient(8, 8), "  ")


# ----------------------------------------------------------------------------- tiny FLUX.1-Kontext


@pytest.fixture(scope="module")
def flux_dir(tiny_flux_kontext):
    return tiny_flux_kontext


def tiny_flux(flux_dir, **options):
    base = dict(model_id=str(flux_dir), local_files_only=True, device="cpu", dtype="float32",
                min_area=0, num_inference_steps=2, max_sequence_length=32)
    return build_editor("flux-kontext", **{**base, **options})


def test_quiet_command_lines_load_the_diffusers_editor_without_loading_bars(flux_dir, monkeypatch, capfd):
    import os
    import sys

    import diffusers

    from imageedit_r1.agents.editors import diffusion
    from imageedit_r1.cli_common import NO_HF_PROGRESS
    from imageedit_r1.eval.__main__ import build_parser

    monkeypatch.delenv(NO_HF_PROGRESS, raising=False)
    monkeypatch.setattr(diffusion, "_PIPELINES", {})
    assert build_parser().parse_args(["run", "-q"]).quiet and os.environ[NO_HF_PROGRESS] == "1"
    # huggingface_hub reads the variable when imported: here it was imported before the flag was parsed
    monkeypatch.setattr(sys.modules["huggingface_hub.utils.tqdm"], "HF_HUB_DISABLE_PROGRESS_BARS", True)
    try:
        tiny_flux(flux_dir).load()
    finally:
        diffusers.utils.logging.enable_progress_bar()
    assert "Loading pipeline components" not in capfd.readouterr().err


@pytest.mark.slow
def test_tiny_flux_edits_at_the_inputs_size_not_1024_and_returns_the_exact_input_size(flux_dir):
    tokens = []

    def record(pipe, step, timestep, kwargs):
        tokens.append(kwargs["latents"].shape[1])
        return kwargs

    editor = tiny_flux(flux_dir, call_kwargs={"callback_on_step_end": record})
    out = editor.edit(gradient(67, 45), "Recoloring coat to scarlet", seed=0)
    assert out.size == (67, 45) and out.mode == "RGB"
    # The tiny VAE does not downsample; latents are packed 2x2: a 66x44 working size is 33*22 tokens.
    assert tokens and set(tokens) == {33 * 22}


@pytest.mark.slow
def test_tiny_flux_is_seeded_and_the_pipeline_is_loaded_once(flux_dir):
    editor = tiny_flux(flux_dir)
    image = gradient(40, 24)
    first = editor.edit(image, "make the sky orange", seed=7)
    again = tiny_flux(flux_dir).edit(image, "make the sky orange", seed=7)
    other = editor.edit(image, "make the sky orange", seed=8)
    assert image_sha256(first) == image_sha256(again)
    assert image_sha256(first) != image_sha256(other)
    assert tiny_flux(flux_dir).load() is editor.load()  # one pipeline per model id / dtype / device


@pytest.mark.slow
def test_multi_turn_steps_chain_outputs_and_offset_seeds(flux_dir):
    editor = tiny_flux(flux_dir)
    image = gradient(30, 20)
    steps = editor.edit_steps(image, ["remove the car", "blur the hills"], seed=3)
    assert len(steps) == 2 and all(step.size == (30, 20) for step in steps)
    assert image_sha256(steps[0]) == image_sha256(editor.edit(image, "remove the car", seed=3))
    assert image_sha256(steps[1]) == image_sha256(editor.edit(steps[0], "blur the hills", seed=4))


@pytest.mark.slow
def test_cpu_offload_on_cpu_is_a_clear_error(flux_dir):
    editor = tiny_flux(flux_dir, enable_model_cpu_offload=True)
    with pytest.raises(ValueError, match="enable_model_cpu_offload needs an accelerator"):
        editor.edit(gradient(16, 16), "make it red")


# ----------------------------------------------------------------------------- tiny Qwen-Image-Edit


@pytest.fixture(scope="module")
def qwen_edit_dir(tiny_qwen_image_edit):
    return tiny_qwen_image_edit


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen-image-edit", "qwen-image-edit-plus"])
def test_tiny_qwen_image_edit_keeps_the_input_size_and_runs_true_cfg(qwen_edit_dir, name):
    prompts = []

    editor = build_editor(name, model_id=str(qwen_edit_dir), local_files_only=True, device="cpu", dtype="float32",
                          min_area=0, num_inference_steps=1)
    pipe = editor.load()
    original = pipe.encode_prompt

    def spy(*args, **kwargs):
        prompts.append(kwargs.get("prompt"))
        return original(*args, **kwargs)

    pipe.encode_prompt = spy
    try:
        out = editor.edit(gradient(67, 45), "Recoloring coat to scarlet", seed=0)
    finally:
        del pipe.encode_prompt
    assert out.size == (67, 45)
    assert prompts == ["Recoloring coat to scarlet", " "]  # the negative prompt is encoded: CFG ran


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen-image-edit", "qwen-image-edit-plus"])
def test_tiny_qwen_image_edit_makes_candidates_in_one_batched_call(qwen_edit_dir, name):
    import numpy as np

    steps = []
    editor = build_editor(name, model_id=str(qwen_edit_dir), local_files_only=True, device="cpu", dtype="float32",
                          min_area=0, max_area=64 * 48, num_inference_steps=2,
                          call_kwargs={"callback_on_step_end": lambda pipe, i, t, kw: (steps.append(i), kw)[1]})
    assert editor.can_batch
    image = gradient(67, 45)
    batch = editor.edit_batch(image, "Recoloring coat to scarlet", seeds=[0, 1000])
    assert len(steps) == 2  # one pipeline call of two steps made both candidates
    singles = [editor.edit(image, "Recoloring coat to scarlet", seed=seed) for seed in (0, 1000)]
    assert [im.size for im in batch] == [(67, 45)] * 2
    for batched, single in zip(batch, singles, strict=True):
        assert np.abs(np.asarray(batched, dtype=int) - np.asarray(single, dtype=int)).max() <= 2
    assert np.abs(np.asarray(batch[0], dtype=int) - np.asarray(batch[1], dtype=int)).mean() > 1  # two seeds differ


def test_an_editor_without_batching_makes_candidates_one_call_each_and_checks_its_inputs():
    from imageedit_r1.agents.editors import BaseEditor

    class Recording(BaseEditor):
        name, model_id = "rec", "rec"
        seeds = []

        def _edit(self, image, instruction, *, seed):
            self.seeds.append(seed)
            return image.resize((image.width * 2, image.height * 2))  # the model's own size

    editor = Recording()
    out = editor.edit_batch(Image.new("RGBA", (30, 20)), "  make it red ", seeds=[5, 6, 7])
    assert editor.seeds == [5, 6, 7] and [im.size for im in out] == [(30, 20)] * 3 and out[0].mode == "RGB"
    with pytest.raises(ValueError, match="empty"):
        editor.edit_batch(Image.new("RGB", (4, 4)), " ", seeds=[1])
    with pytest.raises(ValueError, match="at least one seed"):
        editor.edit_batch(Image.new("RGB", (4, 4)), "x", seeds=[])
