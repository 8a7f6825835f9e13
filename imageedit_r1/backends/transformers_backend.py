"""A local vision-language model (Qwen2.5-VL and kin) through transformers ``generate``.

The processor and model are loaded once per process and shared by every backend instance that
names the same checkpoint, device and dtype. Everything the processor returns is passed to
``generate`` — Qwen2.5-VL needs ``mm_token_type_ids`` to build its 3-D mRoPE positions, and
without it the model silently sees different positions than in training.

Images are fitted to the image budget (``imageedit_r1.image_budget``) before the processor sees
them, and the processor is loaded with the same bounds: by default the budget recorded in the
checkpoint by ``train export-checkpoint``, else the project's default, so the agent gets the image
tokens it was trained on whatever bounds the checkpoint's own processor config had.

Batches: ``chat_batch`` decodes its conversations together, left-padded, in one ``generate``
call per batch. A batch holds at most ``max_batch_size`` conversations and at most
``max_batch_tokens`` padded tokens (conversations x (longest prompt + ``max_tokens``)): that
bounds the KV cache and the prefill activations. Conversations are grouped by prompt length so
little is padding. A batch that ``generate`` refuses (a CUDA out-of-memory error, a malformed
conversation) is split in halves until the failing item is alone (``batching.run_isolated``).
Left padding changes no answer: Qwen2.5-VL builds its positions from the attention mask and
``mm_token_type_ids``, so at temperature 0 a batched answer equals the one ``chat`` gives.

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
from imageedit_r1.backends.batching import InProcessBatches, encode_each, run_isolated

logger = logging.getLogger("imageedit_r1.backends.transformers")

# One generate call decodes at most this many conversations, of at most this many padded tokens in
# all: on an 80 GB GPU a 7B agent's batch of 16 plans (about 1,600 prompt + 400 answer tokens each)
# keeps its KV cache near 2 GB.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_BATCH_TOKENS = 32768

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


class TransformersBackend(InProcessBatches):
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
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        generate_options: dict[str, Any] | None = None,
    ) -> None:
        """``model``: a local folder or a hub id.

        ``image_budget``: ``"auto"`` (the budget recorded in the checkpoint, else the default),
        ``{"min_pixels": …, "max_pixels": …}``, or ``"off"`` (the processor's own bounds).
        ``min_pixels`` / ``max_pixels`` are a shorthand for an explicit budget.
        ``max_batch_size`` / ``max_batch_tokens`` bound one batched ``generate`` (module docs);
        ``generate_options`` are more keyword arguments of ``generate`` (``repetition_penalty``, ...).
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
        self._set_batch_bounds(max_batch_size, max_batch_tokens, generate_options)
        self._processor, self._network, self._lock = load_model(
            self.model, device=device, dtype=dtype, attn_implementation=attn_implementation,
            min_pixels=budget.min_pixels if budget else None, max_pixels=budget.max_pixels if budget else None,
        )

    @classmethod
    def from_loaded(cls, processor, network, *, name: str, image_budget: Any = None,
                    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                    generate_options: dict[str, Any] | None = None) -> TransformersBackend:
        """A backend around a processor and model already in memory (a notebook, a benchmark at
        real shapes); ``image_budget`` as for the constructor, None: images as they are."""
        from imageedit_r1.image_budget import resolve

        backend = cls.__new__(cls)
        backend.model = name
        backend.image_budget = resolve(image_budget, None) if image_budget is not None else None
        backend._set_batch_bounds(max_batch_size, max_batch_tokens, generate_options)
        backend._processor, backend._network, backend._lock = processor, network, threading.Lock()
        return backend

    def _set_batch_bounds(self, max_batch_size: int, max_batch_tokens: int, generate_options) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1:
            raise BackendError(f"transformers {self.model}: max_batch_size and max_batch_tokens must be >= 1, "
                               f"got {max_batch_size} and {max_batch_tokens}")
        self.max_batch_size = int(max_batch_size)
        self.max_batch_tokens = int(max_batch_tokens)
        self.generate_options = dict(generate_options or {})

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

    def _encode(self, messages: list[ChatMessage], json_schema: dict[str, Any] | None):
        """The processor's outputs for one conversation, on the CPU, unpadded."""
        validate_messages(messages)
        chat, images = self._template_messages(messages, json_schema)
        processor = self._processor
        prompt = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        # Lists first, tensors after: with return_tensors="pt" the processor's check of the image-token
        # count walks the ids tensor element by element (~20 ms a 650-token prompt, most of a small
        # model's batch preparation); on lists it takes microseconds. The tensors are the same.
        from transformers import BatchFeature

        return BatchFeature(dict(processor(text=[prompt], images=images or None)), tensor_type="pt")

    def _on_device(self, inputs):
        inputs = inputs.to(self._network.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._network.dtype)
        return inputs

    def prepare_inputs(self, messages: list[ChatMessage], *, json_schema: dict[str, Any] | None = None):
        """The processor's model inputs for ``messages`` (input_ids with the image tokens, pixel_values, …)."""
        return self._on_device(self._encode(messages, json_schema))

    def chat_batch(
        self,
        conversations: list[list[ChatMessage]],
        *,
        json_schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        temperature: float | None = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
    ) -> list[ChatResponse | Exception]:
        """One answer (or error) per conversation, decoded in left-padded batches (module docs)."""
        results, encoded = encode_each(lambda messages: self._encode(messages, json_schema), conversations)
        settings = self._generate_settings(temperature, max_tokens)
        for batch in self.batches([inputs for _, inputs in encoded], max_tokens):
            items = [encoded[position] for position in batch]
            answers = run_isolated(lambda part: self._generate([inputs for _, inputs in part], settings, max_tokens,
                                                               seed), items, self._note_split)
            for (index, _), answer in zip(items, answers, strict=True):
                results[index] = answer
        return results

    def batches(self, encoded: list[Any], max_tokens: int) -> list[list[int]]:
        """Positions of ``encoded`` grouped into batches within the bounds, longest prompts first."""
        order = sorted(range(len(encoded)), key=lambda i: -int(encoded[i]["input_ids"].shape[1]))
        batches: list[list[int]] = []
        longest = 0
        for position in order:
            length = int(encoded[position]["input_ids"].shape[1]) + max_tokens
            current = batches[-1] if batches else None
            if (current is not None and len(current) < self.max_batch_size
                    and (len(current) + 1) * max(longest, length) <= self.max_batch_tokens):
                current.append(position)
                longest = max(longest, length)
            else:
                batches.append([position])
                longest = length
        return batches

    def _note_split(self, error: BaseException, size: int) -> None:
        logger.warning("transformers %s: a batch of %d failed (%s); splitting it", self.model, size,
                       str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
        if self._network.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()  # an out-of-memory batch leaves its blocks cached

    def _generate_settings(self, temperature: float | None, max_tokens: int) -> dict[str, Any]:
        tokenizer = self._processor.tokenizer
        settings: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": tokenizer.pad_token_id,
                                    **self.generate_options}
        if temperature is None or temperature <= 0:
            settings.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            settings.update(do_sample=True, temperature=temperature)
        return settings

    def _generate(self, encoded: list[Any], settings: dict[str, Any], max_tokens: int,
                  seed: int | None) -> list[ChatResponse]:
        import torch

        inputs = self._on_device(left_padded(encoded, self._processor.tokenizer.pad_token_id))
        started = time.perf_counter()
        devices = [self._network.device.index or 0] if self._network.device.type == "cuda" else []
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            try:
                output = self._network.generate(**inputs, **settings)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"transformers {self.model}: generation failed: {exc}") from exc
        seconds = time.perf_counter() - started
        padded_length = inputs["input_ids"].shape[1]
        eos = self._network.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        replies = []
        for row, item in enumerate(encoded):
            new_tokens = output[row, padded_length:].tolist()
            # A row that ended before the longest one is filled with padding after its end token.
            end = next((i for i, token in enumerate(new_tokens) if token in eos_ids), None)
            if end is not None:
                new_tokens = new_tokens[: end + 1]
            replies.append(ChatResponse(
                text=self._processor.decode(new_tokens, skip_special_tokens=True),
                model=self.model,
                prompt_tokens=int(item["input_ids"].shape[1]),
                completion_tokens=len(new_tokens),
                finish_reason="stop" if end is not None or len(new_tokens) < max_tokens else "length",
                seconds=seconds,
            ))
        return replies


def left_padded(encoded: list[Any], pad_token_id: int | None):
    """The processor outputs of several conversations as one left-padded batch.

    Per-token tensors (``input_ids``, ``attention_mask``, ``mm_token_type_ids``: shape [1, length])
    are padded on the left (``pad_token_id`` for the ids, 0 elsewhere: masked, text type); the
    others (``pixel_values``, ``image_grid_thw``: one row per image patch or per image, absent for
    a conversation without images) are joined in order, as the processor joins them for a batch.
    """
    import torch
    from transformers import BatchFeature

    if len(encoded) == 1:
        return encoded[0]
    lengths = [int(item["input_ids"].shape[1]) for item in encoded]
    longest = max(lengths)
    keys = list(dict.fromkeys(key for item in encoded for key in item))
    batch: dict[str, Any] = {}
    for key in keys:
        values = [item.get(key) for item in encoded]
        per_token = all(value is not None and value.dim() == 2 and value.shape == (1, length)
                        for value, length in zip(values, lengths, strict=True))
        if per_token:
            fill = (pad_token_id or 0) if key == "input_ids" else 0
            batch[key] = torch.cat([torch.nn.functional.pad(value, (longest - value.shape[1], 0), value=fill)
                                    for value in values], 0)
        else:
            batch[key] = torch.cat([value for value in values if value is not None], 0)
    return BatchFeature(batch)
