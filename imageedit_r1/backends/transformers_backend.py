"""A local vision-language model (Qwen2.5-VL and kin) through transformers ``generate``.

The processor and model are loaded once per process and shared by every backend instance that
names the same checkpoint, device and dtype. Everything the processor returns is passed to
``generate`` — Qwen2.5-VL needs ``mm_token_type_ids`` to build its 3-D mRoPE positions, and
without it the model silently sees different positions than in training.

Images are fitted to the image budget (``imageedit_r1.image_budget``) before the processor sees
them, and the processor is loaded with the same bounds: by default the budget recorded in the
checkpoint by ``train export-checkpoint``, else the project's default, so the agent gets the image
tokens it was trained on whatever bounds the checkpoint's own processor config had.

Structured output is best effort: the schema is described in the prompt, and callers validate
the answer (``supports_json_schema`` is False).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from imageedit_r1.backends.base import (
    BackendError,
    BackendUnavailableError,
    ChatMessage,
    ChatResponse,
    schema_instruction,
    validate_messages,
)

logger = logging.getLogger("imageedit_r1.backends.transformers")

_cache_lock = threading.Lock()
_loaded: dict[tuple, tuple[Any, Any, threading.Lock]] = {}


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, bfloat16, float16 or float32, got {dtype!r}") from None


def load_model(model: str, *, device: str = "auto", dtype: str = "auto", attn_implementation: str | None = None,
               min_pixels: int | None = None, max_pixels: int | None = None):
    """(processor, model, generate_lock) for a checkpoint, loaded once per process."""
    device = _resolve_device(device)
    key = (str(model), device, dtype, attn_implementation, min_pixels, max_pixels)
    with _cache_lock:
        if key in _loaded:
            return _loaded[key]
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise BackendUnavailableError(
                "the transformers backend needs torch and transformers: pip install 'imageedit-r1[diffusers]'"
            ) from exc
        processor_kwargs = {}
        if min_pixels is not None:
            processor_kwargs["min_pixels"] = min_pixels
        if max_pixels is not None:
            processor_kwargs["max_pixels"] = max_pixels
        model_kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype, device)}
        if attn_implementation:
            model_kwargs["attn_implementation"] = attn_implementation
        started = time.perf_counter()
        try:
            processor = AutoProcessor.from_pretrained(model, **processor_kwargs)
            network = AutoModelForImageTextToText.from_pretrained(model, **model_kwargs)
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(f"cannot load a vision-language model from {model!r}: {exc}") from exc
        network = network.to(device).eval()
        logger.info("loaded %s on %s in %.1fs", model, device, time.perf_counter() - started)
        _loaded[key] = (processor, network, threading.Lock())
        return _loaded[key]


class TransformersBackend:
    name = "transformers"
    supports_json_schema = False

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        image_budget: Any = "auto",
    ) -> None:
        """``model``: a local folder or a hub id.

        ``image_budget``: ``"auto"`` (the budget recorded in the checkpoint, else the default),
        ``{"min_pixels": …, "max_pixels": …}``, or ``"off"`` (the processor's own bounds).
        ``min_pixels`` / ``max_pixels`` are a shorthand for an explicit budget.
        """
        from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, ImageBudgetError, resolve

        self.model = str(model)
        try:
            if min_pixels is not None or max_pixels is not None:
                budget = ImageBudget(min_pixels or DEFAULT_BUDGET.min_pixels, max_pixels or DEFAULT_BUDGET.max_pixels)
            else:
                budget = resolve(image_budget, self.model)
        except ImageBudgetError as exc:
            raise BackendError(f"transformers {self.model}: {exc}") from exc
        self.image_budget = budget
        self._processor, self._network, self._lock = load_model(
            self.model, device=device, dtype=dtype, attn_implementation=attn_implementation,
            min_pixels=budget.min_pixels if budget else None, max_pixels=budget.max_pixels if budget else None,
        )

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, device={str(self._network.device)!r})"

    def _template_messages(self, messages: list[ChatMessage], json_schema: dict | None):
        chat, images = [], []
        for message in messages:
            content = []
            for part in message.parts():
                if isinstance(part, str):
                    content.append({"type": "text", "text": part})
                else:
                    from imageedit_r1.images import fit_to_budget, to_rgb

                    content.append({"type": "image"})
                    images.append(fit_to_budget(to_rgb(part), self.image_budget))
            chat.append({"role": message.role, "content": content})
        if json_schema is not None:
            chat[-1]["content"].append({"type": "text", "text": "\n\n" + schema_instruction(json_schema)})
        return chat, images

    def prepare_inputs(self, messages: list[ChatMessage], *, json_schema: dict[str, Any] | None = None):
        """The processor's model inputs for ``messages`` (input_ids with the image tokens, pixel_values, …)."""
        validate_messages(messages)
        chat, images = self._template_messages(messages, json_schema)
        processor = self._processor
        prompt = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
        inputs = inputs.to(self._network.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._network.dtype)
        return inputs

    def chat(
        self,
        messages: list[ChatMessage],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float | None = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> ChatResponse:
        import torch

        inputs = self.prepare_inputs(messages, json_schema=json_schema)
        processor = self._processor
        tokenizer = processor.tokenizer
        generate_kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": tokenizer.pad_token_id}
        if temperature is None or temperature <= 0:
            generate_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            generate_kwargs.update(do_sample=True, temperature=temperature)
        started = time.perf_counter()
        devices = [self._network.device.index or 0] if self._network.device.type == "cuda" else []
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            try:
                output = self._network.generate(**inputs, **generate_kwargs)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"transformers {self.model}: generation failed: {exc}") from exc
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:].tolist()
        eos = self._network.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        finished = bool(new_tokens) and new_tokens[-1] in eos_ids
        text = processor.decode(new_tokens, skip_special_tokens=True)
        return ChatResponse(
            text=text,
            model=self.model,
            prompt_tokens=int(prompt_length),
            completion_tokens=len(new_tokens),
            finish_reason="stop" if finished or len(new_tokens) < max_tokens else "length",
            seconds=time.perf_counter() - started,
        )
