"""Loopback fakes of the hosted image-editing APIs, built on ``FakeServer``.

``fake_openai_images_server(edit_fn)`` answers ``POST /v1/images/edits`` (multipart upload in,
``data[0].b64_json`` out); ``fake_gemini_image_server(edit_fn)`` answers Gemini
``generateContent`` with the image in ``inline_data``. ``edit_fn(image, prompt, request)`` gets
the decoded input image, the prompt and the recorded request, and returns a PIL image (the edit),
or a ``FakeResponse`` / ``GeminiImageReply`` to answer something else (a refusal, a block).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from imageedit_r1.images import to_png_bytes
from imageedit_r1.testing.fake_servers import FakeResponse, FakeServer, FaultPlan, gemini_images, gemini_text


def _png_b64(image: Image.Image) -> str:
    return base64.b64encode(to_png_bytes(image)).decode("ascii")


def openai_refusal(message: str = "Your request was rejected as a result of our safety system.") -> FakeResponse:
    """The 400 the OpenAI images API answers when moderation blocks an edit."""
    return FakeResponse(400, {"error": {"code": "moderation_blocked", "message": message,
                                        "type": "image_generation_user_error", "param": None}})


def fake_openai_images_server(
    edit_fn: Callable[[Image.Image, str, Any], Any], *, faults: FaultPlan = None, **server_options
) -> FakeServer:
    server = FakeServer(faults=faults, **server_options)

    def handle(request, _match):
        fields = request.multipart()
        uploads = fields.get("image") or fields.get("image[]")
        if not uploads:
            return FakeResponse(400, {"error": {"code": "missing_image", "message": "image is required",
                                                "type": "invalid_request_error"}})
        image = Image.open(io.BytesIO(uploads[0].data)).convert("RGB")
        result = edit_fn(image, fields["prompt"][0].text, request)
        if isinstance(result, FakeResponse):
            return result
        return {"created": int(time.time()), "data": [{"b64_json": _png_b64(result)}],
                "output_format": "png", "usage": {"input_tokens": 10, "output_tokens": 10, "total_tokens": 20}}

    return server.add_route("POST", r"^/v1/images/edits$", handle)


@dataclass
class GeminiImageReply:
    """A Gemini answer without an image: ``block_reason`` blocks the prompt (no candidates);
    ``finish_reason`` ends the candidate (e.g. ``IMAGE_SAFETY``); ``text`` is what it says instead."""

    text: str | None = None
    finish_reason: str = "STOP"
    block_reason: str | None = None


def gemini_image_request(request_json: dict) -> tuple[str, Image.Image | None]:
    """(prompt text, first inline image) of a recorded generateContent request."""
    images = gemini_images(request_json)
    return gemini_text(request_json), (images[0].convert("RGB") if images else None)


def fake_gemini_image_server(
    edit_fn: Callable[[Image.Image, str, Any], Any], *, faults: FaultPlan = None, **server_options
) -> FakeServer:
    server = FakeServer(faults=faults, **server_options)

    def handle(request, match):
        prompt, image = gemini_image_request(request.json or {})
        if image is None:
            return FakeResponse(400, {"error": {"code": 400, "message": "no image in the request", "status": "INVALID_ARGUMENT"}})
        result = edit_fn(image, prompt, request)
        if isinstance(result, FakeResponse):
            return result
        usage = {"promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20}
        if isinstance(result, GeminiImageReply):
            if result.block_reason:
                return {"promptFeedback": {"blockReason": result.block_reason}, "usageMetadata": usage}
            parts = [{"text": result.text}] if result.text else []
            return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": result.finish_reason,
                                    "index": 0}], "usageMetadata": usage, "modelVersion": match.group(1)}
        parts = [{"inlineData": {"mimeType": "image/png", "data": _png_b64(result)}}]
        return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage, "modelVersion": match.group(1)}

    return server.add_route("POST", r"^/v1(?:beta|alpha)?/models/([^/:]+):generateContent$", handle)
