"""Nano Banana (Gemini image models) through google-genai's ``generate_content``.

The model answers in one of a fixed set of aspect ratios, so the input is padded (white) to the
nearest one (and scaled to at most ``max_input_pixels``), the ratio is requested explicitly, and
the padding is cut off the answer before it is resized to the input's exact size.

Reading the answer follows the documented shapes:

- Image models that think (the Gemini 3 image models) send parts marked ``thought: true`` first,
  notes and draft images; the answer is the last image part that is not a thought.
- A prompt blocked outright (``promptFeedback.blockReason``), or a candidate that ends with a
  policy finish reason (``IMAGE_SAFETY``, ``IMAGE_PROHIBITED_CONTENT``, ``PROHIBITED_CONTENT``,
  ``SAFETY``, ...) and no image, is a refusal (``EditRefusedError``) carrying that reason.
- An answer with text but no image is an ``EditorError`` that quotes the text.
- An answer image with alpha is composited onto white (the editors' one rule), never black.
"""

from __future__ import annotations

import io
import math
from typing import Any

from PIL import Image

from imageedit_r1.agents.editors.api_common import HostedEditor, api_key_from_env, editor_exception
from imageedit_r1.agents.editors.base import (
    EditorError,
    EditorUnavailableError,
    EditRefusedError,
    fit_to_size,
    nearest_aspect,
    ratio_value,
    unletterbox,
)
from imageedit_r1.backends.sdk_errors import (
    classify_genai_error,
    gemini_finish_reason,
    gemini_prompt_block,
    gemini_safety_stop,
)
from imageedit_r1.endpoints import RetryConfig
from imageedit_r1.retry import RetryPolicy, call_with_retries

SUPPORTED_ASPECT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]


class NanoBananaEditor(HostedEditor):
    name = "nano-banana"

    def __init__(
        self,
        model: str = "gemini-2.5-flash-image",
        *,
        api_key_env: str | list[str] = ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        base_url: str | None = None,
        timeout: float = 180.0,
        retry: RetryConfig | RetryPolicy | dict | None = None,
        aspect_ratios: list[str] | None = None,
        max_input_pixels: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__(model, api_key_env=api_key_env, base_url=base_url, timeout=timeout, retry=retry)
        self.aspect_ratios = list(aspect_ratios or SUPPORTED_ASPECT_RATIOS)
        self.max_input_pixels = int(max_input_pixels)

    def _canvas(self, image: Image.Image) -> tuple[str, tuple[int, int]]:
        """The ratio to ask for and the padded input's size: the input's own scale, capped in pixels."""
        ratio = nearest_aspect(image.width, image.height, self.aspect_ratios)
        aspect = ratio_value(ratio)
        width, height = float(image.width), float(image.height)
        if width / height > aspect:
            height = width / aspect
        else:
            width = height * aspect
        scale = min(1.0, math.sqrt(self.max_input_pixels / (width * height)))
        return ratio, (max(1, int(width * scale)), max(1, int(height * scale)))  # floor: stay under the cap

    def client(self):
        if self._client is None:
            try:
                from google import genai
                from google.genai import types
            except ImportError as exc:
                raise EditorUnavailableError("google-genai is not installed: pip install 'imageedit-r1[api]'") from exc
            key = api_key_from_env(self.api_key_env, "Gemini (nano-banana)")
            self._secrets = [key]
            options: dict[str, Any] = {"timeout": int(self.timeout * 1000)}  # milliseconds
            if self.base_url:
                options["base_url"] = self.base_url
            self._client = genai.Client(api_key=key, http_options=types.HttpOptions(**options))
        return self._client

    def _edit(self, image: Image.Image, instruction: str, *, seed: int | None) -> Image.Image:
        from google.genai import types

        ratio, canvas = self._canvas(image)
        padded, box = fit_to_size(image, canvas)
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=ratio),
            seed=seed,
        )
        client = self.client()

        def call():
            try:
                return client.models.generate_content(model=self.model_id, contents=[instruction, padded], config=config)
            except Exception as exc:
                failure = classify_genai_error(exc, secrets=self._secrets, timeout=self.timeout)
                if failure is None:
                    raise
                raise editor_exception(failure, self.model_id) from exc

        response = call_with_retries(call, self.retry)
        return unletterbox(self._image_from(response), box)

    def _image_from(self, response) -> Image.Image:
        blocked = gemini_prompt_block(response)
        if blocked:
            reason, detail = blocked
            raise EditRefusedError(f"{self.model_id} blocked the request: {reason} {detail or ''}".strip(), reason=reason)
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise EditorError(f"{self.model_id} returned no candidates")
        candidate = candidates[0]
        finish = gemini_finish_reason(candidate)
        stopped = gemini_safety_stop(candidate)
        final, texts = None, []
        for part in getattr(getattr(candidate, "content", None), "parts", None) or []:
            if getattr(part, "thought", False):  # the model's thinking: notes and draft images, never the answer
                continue
            blob = getattr(part, "inline_data", None)
            if blob is not None and blob.data and str(blob.mime_type or "").startswith("image/"):
                final = blob  # the last image part is the answer
            elif getattr(part, "text", None) and part.text.strip():
                texts.append(part.text.strip())
        said = f"; it said: {' '.join(texts)[:500]!r}" if texts else ""
        if stopped:
            _, categories = stopped
            why = f" for {', '.join(categories)}" if categories else ""
            raise EditRefusedError(f"{self.model_id} withheld the image (finish reason {finish}){why}{said}", reason=finish)
        if final is not None:
            try:  # decoded as sent: ``_finish`` composites any transparency onto white
                image = Image.open(io.BytesIO(final.data))
                image.load()
                return image
            except OSError as exc:
                raise EditorError(f"{self.model_id} returned an unreadable {final.mime_type} image: {exc}") from exc
        if texts:
            raise EditorError(f"{self.model_id} answered with text but no image (finish reason {finish or 'none'}){said}")
        raise EditorError(f"{self.model_id} returned no image (finish reason {finish or 'none'})")

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url}
