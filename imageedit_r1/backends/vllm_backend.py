"""An offline vLLM engine (``vllm.LLM``) in this process: the fastest way to run a local agent on a GPU.

The engine is created once per process per checkpoint and shared. A JSON schema is enforced
by vLLM's structured-output decoding (``StructuredOutputsParams(json=…)``; the older
``GuidedDecodingParams`` on vLLM < 0.12). To serve several processes, run
``vllm serve`` instead and use the ``openai`` backend with ``base_url``.

``chat_batch`` hands every conversation to one ``LLM.chat`` call, where vLLM's scheduler decodes
them together; a conversation that cannot be encoded fails alone, and a call the engine refuses
is split until the conversation that causes it is alone (``batching.run_isolated``).
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
    image_data_url,
    validate_messages,
)
from imageedit_r1.backends.batching import InProcessBatches, encode_each, run_isolated
from imageedit_r1.images import fit_to_budget

logger = logging.getLogger("imageedit_r1.backends.vllm")

_cache_lock = threading.Lock()
_engines: dict[tuple, tuple[Any, threading.Lock]] = {}


def _engine(model: str, engine_kwargs: dict[str, Any]):
    key = (model, tuple(sorted((k, repr(v)) for k, v in engine_kwargs.items())))
    with _cache_lock:
        if key not in _engines:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise BackendUnavailableError(
                    "the vllm backend needs vLLM: pip install 'imageedit-r1[vllm]' (GPU), or use the openai "
                    "backend against a running `vllm serve`"
                ) from exc
            started = time.perf_counter()
            _engines[key] = (LLM(model=model, **engine_kwargs), threading.Lock())
            logger.info("started vLLM engine for %s in %.1fs", model, time.perf_counter() - started)
        return _engines[key]


def structured_output_params(json_schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword arguments that constrain decoding to ``json_schema``."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams  # vLLM < 0.12

        return {"guided_decoding": GuidedDecodingParams(json=json_schema)}
    return {"structured_outputs": StructuredOutputsParams(json=json_schema)}


class VLLMBackend(InProcessBatches):
    name = "vllm"
    supports_json_schema = True

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int = 8192,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        max_images: int = 4,
        engine_kwargs: dict[str, Any] | None = None,
        image_budget: Any = "auto",
    ) -> None:
        """``engine_kwargs`` pass straight to ``vllm.LLM`` (e.g. ``enforce_eager``, ``mm_processor_kwargs``).

        ``image_budget``: images are fitted to it before the engine sees them; ``"auto"`` is the
        budget recorded in the checkpoint, else the default (``imageedit_r1.image_budget``).
        """
        from imageedit_r1.image_budget import ImageBudgetError, resolve

        self.model = str(model)
        try:
            self.image_budget = resolve(image_budget, self.model)
        except ImageBudgetError as exc:
            raise BackendError(f"vllm {self.model}: {exc}") from exc
        options: dict[str, Any] = {
            "dtype": dtype,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "tensor_parallel_size": tensor_parallel_size,
            "limit_mm_per_prompt": {"image": max_images},
        }
        options.update(engine_kwargs or {})
        self._llm, self._lock = _engine(self.model, options)

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r})"

    def _encode(self, messages: list[ChatMessage]) -> list[dict[str, Any]]:
        encoded = []
        for message in messages:
            if isinstance(message.content, str):
                encoded.append({"role": message.role, "content": message.content})
                continue
            parts = [
                {"type": "text", "text": part}
                if isinstance(part, str)
                else {"type": "image_url", "image_url": {"url": image_data_url(fit_to_budget(part, self.image_budget))}}
                for part in message.parts()
            ]
            encoded.append({"role": message.role, "content": parts})
        return encoded

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
        """One answer (or error) per conversation, all decoded by one ``LLM.chat`` call (module docs)."""
        from vllm import SamplingParams

        results, encoded = encode_each(lambda messages: self._encode(validate_messages(messages)), conversations)
        params: dict[str, Any] = {"temperature": temperature or 0.0, "max_tokens": max_tokens, "seed": seed}
        if json_schema is not None:
            params.update(structured_output_params(json_schema))
        sampling = SamplingParams(**params)

        def run(items: list[tuple[int, list[dict[str, Any]]]]) -> list[ChatResponse]:
            started = time.perf_counter()
            with self._lock:
                try:
                    outputs = self._llm.chat([chat for _, chat in items], sampling, use_tqdm=False)
                except (RuntimeError, ValueError) as exc:
                    raise BackendError(f"vllm {self.model}: generation failed: {exc}") from exc
            seconds = time.perf_counter() - started
            return [self._response(output, seconds) for output in outputs]

        for (index, _), answer in zip(encoded, run_isolated(run, encoded), strict=True):
            results[index] = answer
        return results

    def _response(self, result, seconds: float) -> ChatResponse:
        completion = result.outputs[0]
        return ChatResponse(
            text=completion.text,
            model=self.model,
            prompt_tokens=len(result.prompt_token_ids or []),
            completion_tokens=len(completion.token_ids),
            finish_reason=completion.finish_reason,
            seconds=seconds,
        )
