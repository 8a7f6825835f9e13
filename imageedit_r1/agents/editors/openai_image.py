"""OpenAI image editing through the ``openai`` SDK's ``images.edit`` (base64 PNG in, base64 out).

The model name is configuration: image models retire (gpt-image-1 was shut down in October 2026).
Each model takes its own sizes (``openai_sizes.SIZE_RULES``: gpt-image-2 free sizes within
documented bounds, gpt-image-1/1.5 three fixed sizes, dall-e-2 squares). By default
(``size="match"``) the request asks for the valid size closest to the input's aspect at about
``area`` pixels; the input is scaled and padded (white) to exactly that size, and the padding is
cut off the answer before it is resized to the input's exact size.

Transparency: ``background="transparent"`` asks the service for a transparent answer (PNG or
WebP), and the editor keeps its alpha; the written file keeps it where its format can. Any other
answer with alpha (``background="auto"`` may choose transparency for "remove the background") is
composited onto white, as every editor's answer is: a transparent field never turns black.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from PIL import Image

from imageedit_r1.agents.editors.api_common import HostedEditor, api_key_from_env, editor_exception
from imageedit_r1.agents.editors.base import EditorError, EditorUnavailableError, fit_to_size, unletterbox
from imageedit_r1.agents.editors.openai_sizes import size_rule
from imageedit_r1.backends.sdk_errors import classify_openai_error
from imageedit_r1.endpoints import RetryConfig
from imageedit_r1.images import shrink_to_pixels, to_png_bytes
from imageedit_r1.retry import RetryPolicy, call_with_retries

DEFAULT_MODEL = "gpt-image-2"
AUTO_MAX_UPLOAD_PIXELS = 8_294_400  # gpt-image-2's largest output (3840x2160)


class OpenAIImageEditor(HostedEditor):
    name = "openai-image"
    key_optional_with_base_url = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_key_env: str | list[str] = "OPENAI_API_KEY",
        base_url: str | None = None,
        timeout: float = 300.0,
        retry: RetryConfig | RetryPolicy | dict | None = None,
        size: str = "match",
        area: int = 1024 * 1024,
        quality: str | None = None,
        background: str | None = None,
        extra_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, api_key_env=api_key_env, base_url=base_url, timeout=timeout, retry=retry)
        # "match": the valid size nearest the input's aspect at ~`area` pixels; else sent as is
        # ("auto", "1536x1024") after checking it against the model's rule, before any call.
        self.size_rule = size_rule(model)
        if size != "match":
            self.size_rule.check(size)
        self.size = size
        self.area = int(area)
        self.quality = quality
        self.extra_params = dict(extra_params or {})
        self.background = background or self.extra_params.pop("background", None)
        if self.background not in (None, "auto", "opaque", "transparent"):
            raise ValueError(f"background must be auto, opaque or transparent, got {self.background!r}")
        output_format = str(self.extra_params.get("output_format", "png")).lower()
        if self.background == "transparent" and output_format not in ("png", "webp"):
            raise ValueError(f"background='transparent' needs output_format png or webp, not {output_format!r}")
        self.keeps_transparency = self.background == "transparent"

    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise EditorUnavailableError("openai is not installed: pip install 'imageedit-r1[api]'") from exc
            key = api_key_from_env(self.api_key_env, "OpenAI images",
                                   optional=bool(self.base_url) and self.key_optional_with_base_url)
            self._secrets = [key]
            # The SDK's own retries are off: one bounded policy (ours) decides. It wants a non-empty key.
            self._client = openai.OpenAI(api_key=key or "EMPTY", base_url=self.base_url, timeout=self.timeout,
                                         max_retries=0)
        return self._client

    def _request_size(self, image: Image.Image) -> tuple[Image.Image, tuple, str]:
        """(the upload, the input's box in it as fractions, the ``size`` to ask for)."""
        if self.size == "auto":  # the service picks; keep the upload within the largest size any model makes
            return shrink_to_pixels(image, AUTO_MAX_UPLOAD_PIXELS), (0.0, 0.0, 1.0, 1.0), "auto"
        if self.size == "match":
            width, height = self.size_rule.choose(image.width, image.height, area=self.area)
        else:
            width, height = (int(part) for part in self.size.lower().split("x"))
        upload, box = fit_to_size(image, (width, height))
        return upload, box, f"{width}x{height}"

    def _edit(self, image: Image.Image, instruction: str, *, seed: int | None) -> Image.Image:
        padded, box, size = self._request_size(image)
        client = self.client()
        params: dict[str, Any] = {"model": self.model_id, "prompt": instruction, "size": size, "n": 1}
        if self.quality:
            params["quality"] = self.quality
        if self.background:
            params["background"] = self.background
        if self.size_rule.response_format:
            params["response_format"] = self.size_rule.response_format
        params.update(self.extra_params)
        png = to_png_bytes(padded)

        def call():
            try:
                return client.images.edit(image=("image.png", png, "image/png"), **params)
            except Exception as exc:
                failure = classify_openai_error(exc, secrets=self._secrets, timeout=self.timeout)
                if failure is None:
                    raise
                raise editor_exception(failure, self.model_id) from exc

        response = call_with_retries(call, self.retry)
        return unletterbox(self._image_from(response), box)

    def _image_from(self, response) -> Image.Image:
        data = getattr(response, "data", None) or []
        if not data:
            raise EditorError(f"{self.model_id} returned no image")
        first = data[0]
        if not getattr(first, "b64_json", None):
            if getattr(first, "url", None):
                raise EditorError(f"{self.model_id} returned a URL instead of base64 data; use a GPT image model")
            raise EditorError(f"{self.model_id} returned an empty image entry")
        try:  # decoded as sent: its transparency is settled by ``_finish``, never dropped to black here
            image = Image.open(io.BytesIO(base64.b64decode(first.b64_json, validate=True)))
            image.load()
            return image
        except (binascii.Error, ValueError, OSError) as exc:
            raise EditorError(f"{self.model_id} returned undecodable image data: {exc}") from exc

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url, "size": self.size, "size_rule": self.size_rule.name,
                "background": self.background}
