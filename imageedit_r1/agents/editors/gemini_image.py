"""Nano Banana (Gemini 2.5 Flash Image) through google-genai's ``generate_content``.

The model answers in one of a fixed set of aspect ratios, so the input is padded (white) to the
nearest one, the ratio is requested explicitly, and the padding is cut off the answer before it
is resized to the input's exact size.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from imageedit_r1.agents.editors.api_common import (
    api_key_from_env,
    is_transient_transport_error,
    retry_after_seconds,
)
from imageedit_r1.agents.editors.base import (
    BaseEditor,
    EditorError,
    EditorUnavailableError,
    EditRefusedError,
    letterbox,
    nearest_aspect,
    ratio_value,
    unletterbox,
)
from imageedit_r1.retry import RetryableError, RetryPolicy, call_with_retries

SUPPORTED_ASPECT_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
# Finish reasons that mean the service withheld the image on policy grounds.
_BLOCKED_FINISH = {
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
}


def _enum_name(value) -> str:
    return str(getattr(value, "name", value) or "")


class NanoBananaEditor(BaseEditor):
    name = "nano-banana"

    def __init__(
        self,
        model: str = "gemini-2.5-flash-image",
        *,
        api_key_env: str | list[str] = ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        base_url: str | None = None,
        timeout: float = 180.0,
        retry: RetryPolicy | dict | None = None,
        aspect_ratios: list[str] | None = None,
    ) -> None:
        self.model_id = model
        self.api_key_env = [api_key_env] if isinstance(api_key_env, str) else list(api_key_env)
        self.base_url = base_url
        self.timeout = float(timeout)
        self.retry = RetryPolicy(**retry) if isinstance(retry, dict) else (retry or RetryPolicy())
        self.aspect_ratios = list(aspect_ratios or SUPPORTED_ASPECT_RATIOS)
        self._client = None

    def client(self):
        if self._client is None:
            try:
                from google import genai
                from google.genai import types
            except ImportError as exc:
                raise EditorUnavailableError("google-genai is not installed: pip install 'imageedit-r1[api]'") from exc
            key = api_key_from_env(self.api_key_env, "Gemini (nano-banana)")
            options: dict[str, Any] = {"timeout": int(self.timeout * 1000)}  # milliseconds
            if self.base_url:
                options["base_url"] = self.base_url
            self._client = genai.Client(api_key=key, http_options=types.HttpOptions(**options))
        return self._client

    def _edit(self, image: Image.Image, instruction: str, *, seed: int | None) -> Image.Image:
        from google.genai import errors, types

        ratio = nearest_aspect(image.width, image.height, self.aspect_ratios)
        padded, box = letterbox(image, ratio_value(ratio))
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=ratio),
            seed=seed,
        )
        client = self.client()

        def call():
            try:
                return client.models.generate_content(model=self.model_id, contents=[instruction, padded], config=config)
            except errors.APIError as exc:
                if exc.code in (408, 429) or (exc.code or 0) >= 500:
                    raise RetryableError(f"{self.model_id}: HTTP {exc.code} {exc.message or ''}".strip(),
                                         retry_after_seconds(getattr(exc.response, "headers", None))) from exc
                if exc.code in (401, 403):
                    raise EditorError(f"{self.model_id}: the API key was rejected (HTTP {exc.code}): {exc.message}") from exc
                raise EditorError(f"{self.model_id}: HTTP {exc.code}: {exc.message}") from exc
            except Exception as exc:
                if is_transient_transport_error(exc):
                    raise RetryableError(f"{self.model_id}: {type(exc).__name__}: {exc}") from exc
                raise

        response = call_with_retries(call, self.retry)
        return unletterbox(self._image_from(response), box)

    def _image_from(self, response) -> Image.Image:
        feedback = getattr(response, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            detail = getattr(feedback, "block_reason_message", None) or ""
            raise EditRefusedError(
                f"{self.model_id} blocked the request: {_enum_name(feedback.block_reason)} {detail}".strip()
            )
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise EditorError(f"{self.model_id} returned no candidates")
        candidate = candidates[0]
        finish = _enum_name(getattr(candidate, "finish_reason", None))
        texts = []
        parts = getattr(getattr(candidate, "content", None), "parts", None) or []
        for part in parts:
            blob = getattr(part, "inline_data", None)
            if blob is not None and blob.data and str(blob.mime_type or "").startswith("image/"):
                try:
                    return Image.open(io.BytesIO(blob.data)).convert("RGB")
                except OSError as exc:
                    raise EditorError(f"{self.model_id} returned an unreadable {blob.mime_type} image: {exc}") from exc
            if getattr(part, "text", None):
                texts.append(part.text.strip())
        said = f"; it said: {' '.join(texts)[:500]!r}" if texts else ""
        if finish in _BLOCKED_FINISH:
            raise EditRefusedError(f"{self.model_id} withheld the image (finish reason {finish}){said}")
        if texts:
            raise EditRefusedError(f"{self.model_id} answered with text instead of an image{said}")
        raise EditorError(f"{self.model_id} returned no image (finish reason {finish or 'none'})")

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url}
