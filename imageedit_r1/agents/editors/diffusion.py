"""Local diffusion editors: FLUX.1-Kontext-dev, Qwen-Image-Edit and Qwen-Image-Edit-2509 (diffusers).

Each editor loads its pipeline once per process (shared by every editor instance with the same
model id, dtype, device and offload setting) and calls it with the model card's defaults.
The input is edited at its own aspect ratio, scaled into the model's pixel budget and snapped to
the VAE's multiple, and the result is resized back to the input's exact size.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from PIL import Image

from imageedit_r1.agents.editors.base import BaseEditor, EditorUnavailableError, working_size
from imageedit_r1.images import resize

_PIPELINES: dict[tuple, Any] = {}
_PIPELINES_LOCK = threading.Lock()


def clear_pipeline_cache() -> None:
    """Drop every loaded pipeline (frees memory; the next edit reloads)."""
    with _PIPELINES_LOCK:
        _PIPELINES.clear()


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # bf16 where the hardware has it; fp32 on CPU, where bf16 matmuls are slow or missing.
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return value


class DiffusersEditor(BaseEditor):
    """Common loading, seeding and sizing for the diffusers editors."""

    pipeline_class: ClassVar[str] = ""
    default_model_id: ClassVar[str] = ""
    default_steps: ClassVar[int] = 28
    # What to tell a user whose weights are missing, beyond the generic advice.
    access_note: ClassVar[str] = ""

    def __init__(
        self,
        model_id: str | None = None,
        *,
        dtype: str = "auto",
        device: str = "auto",
        enable_model_cpu_offload: bool = False,
        num_inference_steps: int | None = None,
        max_area: int = 1024 * 1024,
        min_area: int = 512 * 512,
        max_sequence_length: int = 512,
        local_files_only: bool = False,
        call_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model_id = model_id or self.default_model_id
        self.dtype_name = dtype
        self.device_name = device
        self.enable_model_cpu_offload = bool(enable_model_cpu_offload)
        self.num_inference_steps = int(num_inference_steps or self.default_steps)
        self.max_area = int(max_area)
        self.min_area = int(min_area)
        self.max_sequence_length = int(max_sequence_length)
        self.local_files_only = bool(local_files_only)
        self.call_kwargs = dict(call_kwargs or {})
        # Told (step, steps) after each denoising step, when set (an app's progress bar).
        self.on_denoise_step: Callable[[int, int], None] | None = None
        self._pipe = None

    @classmethod
    def from_pipeline(cls, pipe, **options: Any) -> DiffusersEditor:
        """Wrap a pipeline already in memory (LoRAs fused, custom components, a benchmark's random weights)."""
        model_id = options.pop("model_id", None) or getattr(pipe, "name_or_path", None) or f"in-memory {type(pipe).__name__}"
        editor = cls(model_id, **options)
        editor._pipe = pipe
        return editor

    # ------------------------------------------------------------------ loading

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    @property
    def pipe(self):
        return self.load()

    def load(self):
        """Load (or fetch from the process cache) the diffusers pipeline."""
        if self._pipe is not None:
            return self._pipe
        device = self.device
        dtype = resolve_dtype(self.dtype_name, device)
        key = (self.pipeline_class, self.model_id, str(dtype), device, self.enable_model_cpu_offload)
        with _PIPELINES_LOCK:
            pipe = _PIPELINES.get(key)
            if pipe is None:
                pipe = self._load_uncached(dtype, device)
                _PIPELINES[key] = pipe
        return pipe

    def _load_uncached(self, dtype, device: str):
        import diffusers
        from huggingface_hub.utils import are_progress_bars_disabled

        if are_progress_bars_disabled():  # -q, or the user's HF_HUB_DISABLE_PROGRESS_BARS: diffusers has no switch of its own
            diffusers.utils.logging.disable_progress_bar()

        try:
            pipeline_cls = getattr(diffusers, self.pipeline_class)
        except AttributeError as exc:
            raise EditorUnavailableError(
                f"diffusers {diffusers.__version__} has no {self.pipeline_class}; "
                "install the diffusers extra: pip install 'imageedit-r1[diffusers]'"
            ) from exc
        try:
            pipe = pipeline_cls.from_pretrained(
                self.model_id, dtype=dtype, local_files_only=self.local_files_only
            )
        except (OSError, ValueError) as exc:
            raise EditorUnavailableError(
                f"could not load {self.pipeline_class} weights from {self.model_id!r}: {exc}\n"
                f"Download them first (`hf download {self.model_id}`) or set editor.options.model_id "
                f"to a local folder saved with save_pretrained. {self.access_note}".rstrip()
            ) from exc
        if self.enable_model_cpu_offload:
            if device == "cpu":
                raise ValueError("enable_model_cpu_offload needs an accelerator device (cuda), not cpu")
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # ------------------------------------------------------------------ editing

    def _generator(self, pipe, seed: int | None):
        if seed is None:
            return None
        import torch

        # Noise is drawn where the pipeline runs (the GPU even under CPU offload), as diffusers expects.
        return torch.Generator(device=pipe._execution_device).manual_seed(int(seed))

    def _multiple(self, pipe) -> int:
        return int(pipe.vae_scale_factor) * 2

    def _prepared_call(self, image: Image.Image, instruction: str) -> tuple[Any, dict[str, Any]]:
        pipe = self.load()
        width, height = working_size(
            *image.size, max_area=self.max_area, min_area=self.min_area, multiple=self._multiple(pipe)
        )
        condition = resize(image, (width, height), Image.Resampling.LANCZOS)
        kwargs = self._call_kwargs(pipe, condition, instruction, width, height)
        if self.on_denoise_step is not None:
            kwargs["callback_on_step_end"] = self._denoised
        kwargs.update(self.call_kwargs)
        accepted = inspect.signature(pipe.__call__).parameters
        return pipe, {name: value for name, value in kwargs.items() if name in accepted}

    def _denoised(self, pipe, step: int, timestep, tensors: dict) -> dict:
        # diffusers' callback_on_step_end contract: return the tensors (unchanged here).
        if self.on_denoise_step is not None:
            self.on_denoise_step(step + 1, int(getattr(pipe, "num_timesteps", 0) or self.num_inference_steps))
        return tensors

    def _edit(self, image: Image.Image, instruction: str, *, seed: int | None) -> Image.Image:
        pipe, kwargs = self._prepared_call(image, instruction)
        output = pipe(generator=self._generator(pipe, seed), **kwargs)
        return output.images[0]

    can_batch = True

    def _edit_batch(self, image: Image.Image, instruction: str, *, seeds: list[int]) -> list[Image.Image]:
        # One pipeline call: num_images_per_prompt candidates, one generator each, so candidate i
        # draws the noise a single edit with seeds[i] would (diffusers' list-of-generators contract).
        pipe, kwargs = self._prepared_call(image, instruction)
        kwargs["num_images_per_prompt"] = len(seeds)
        output = pipe(generator=[self._generator(pipe, seed) for seed in seeds], **kwargs)
        return list(output.images)

    def _call_kwargs(self, pipe, image: Image.Image, instruction: str, width: int, height: int) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {
            **super().describe(),
            "pipeline": self.pipeline_class,
            "num_inference_steps": self.num_inference_steps,
            "dtype": self.dtype_name,
            "device": self.device_name,
            "enable_model_cpu_offload": self.enable_model_cpu_offload,
        }


class FluxKontextEditor(DiffusersEditor):
    """FLUX.1-Kontext-dev through diffusers' FluxKontextPipeline (28 steps, guidance 2.5)."""

    name = "flux-kontext"
    pipeline_class = "FluxKontextPipeline"
    default_model_id = "black-forest-labs/FLUX.1-Kontext-dev"
    default_steps = 28
    access_note = "FLUX.1-Kontext-dev is gated: accept its license on the Hub and set HF_TOKEN before downloading."

    def __init__(self, model_id: str | None = None, *, guidance_scale: float = 2.5, **options: Any) -> None:
        super().__init__(model_id, **options)
        self.guidance_scale = float(guidance_scale)

    def _call_kwargs(self, pipe, image, instruction, width, height):
        # Without height/width/max_area the pipeline edits at ~1024² whatever the input, and with
        # _auto_resize it snaps the context image to its preferred resolutions: pin both to our size.
        return {
            "image": image,
            "prompt": instruction,
            "height": height,
            "width": width,
            "max_area": width * height,
            "_auto_resize": False,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "max_sequence_length": self.max_sequence_length,
        }

    def describe(self) -> dict:
        return {**super().describe(), "guidance_scale": self.guidance_scale}


class QwenImageEditEditor(DiffusersEditor):
    """Qwen-Image-Edit through diffusers' QwenImageEditPipeline (50 steps, true CFG 4.0)."""

    name = "qwen-image-edit"
    pipeline_class = "QwenImageEditPipeline"
    default_model_id = "Qwen/Qwen-Image-Edit"
    default_steps = 50

    def __init__(
        self, model_id: str | None = None, *, true_cfg_scale: float = 4.0, negative_prompt: str = " ", **options: Any
    ) -> None:
        super().__init__(model_id, **options)
        self.true_cfg_scale = float(true_cfg_scale)
        # True CFG only runs when a negative prompt is given; " " is the model card's choice.
        self.negative_prompt = negative_prompt

    def _image_argument(self, image: Image.Image):
        return image

    def _call_kwargs(self, pipe, image, instruction, width, height):
        return {
            "image": self._image_argument(image),
            "prompt": instruction,
            "negative_prompt": self.negative_prompt,
            "true_cfg_scale": self.true_cfg_scale,
            "height": height,
            "width": width,
            "num_inference_steps": self.num_inference_steps,
            "max_sequence_length": self.max_sequence_length,
        }

    def describe(self) -> dict:
        return {**super().describe(), "true_cfg_scale": self.true_cfg_scale}


class QwenImageEditPlusEditor(QwenImageEditEditor):
    """Qwen-Image-Edit-2509 through diffusers' QwenImageEditPlusPipeline (a list of images, 40 steps)."""

    name = "qwen-image-edit-plus"
    pipeline_class = "QwenImageEditPlusPipeline"
    default_model_id = "Qwen/Qwen-Image-Edit-2509"
    default_steps = 40

    def _image_argument(self, image: Image.Image):
        return [image]
