"""Loopback fakes of the hosted image-editing APIs, built on ``FakeServer``.

``fake_openai_images_server(edit_fn)`` answers ``POST /v1/images/edits`` (multipart upload in,
``data[0].b64_json`` out; ``background`` as documented: ``transparent`` keeps the edit's alpha and
needs PNG or WebP output, ``opaque`` sends none, ``auto`` sends what the edit has); ``fake_gemini_image_server(edit_fn)`` answers Gemini
``generateContent`` with the image in ``inline_data`` (thought parts with a draft image first for
thinking models). ``edit_fn(image, prompt, request)`` gets the decoded input image, the prompt and
the recorded request, and returns a PIL image (the edit), or a ``FakeResponse`` /
``GeminiImageReply`` to answer something else (a refusal, a block, text only).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from imageedit_r1.images import has_alpha, to_png_bytes, to_rgb
from imageedit_r1.testing.fake_servers import FakeResponse, FakeServer, FaultPlan, gemini_images, gemini_text


def png_b64(image: Image.Image) -> str:
    return base64.b64encode(to_png_bytes(image)).decode("ascii")


def openai_refusal(message: str = "Your request was rejected as a result of our safety system.") -> FakeResponse:
    """The 400 the OpenAI images API answers when moderation blocks an edit."""
    return FakeResponse(400, {"error": {"code": "moderation_blocked", "message": message,
                                        "type": "image_generation_user_error", "param": None}})


def openai_invalid_size(message: str) -> FakeResponse:
    """The 400 the OpenAI images API answers for a size the model does not take."""
    return FakeResponse(400, {"error": {"code": "invalid_value", "message": message, "param": "size",
                                        "type": "invalid_request_error"}})


# The documented size rules, written out here on their own (not read from the editor's table) so
# that a wrong table in the editor meets a refusal here instead of agreeing with itself.
_FIXED_GPT_IMAGE_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
_DALL_E_2_SIZES = {"256x256", "512x512", "1024x1024"}


def openai_size_problem(model: str, size: str, upload: Image.Image, upload_bytes: int) -> str | None:
    """What the service would reject about ``size`` (and the upload) for ``model``, or None."""
    if model.startswith("dall-e-2"):
        if size not in _DALL_E_2_SIZES:
            return f"Invalid size '{size}'. Supported sizes are 256x256, 512x512, and 1024x1024."
        if upload.width != upload.height:
            return "Invalid input image - image must be square."
        if upload_bytes >= 4 * 1024 * 1024:
            return "Invalid input image - image must be less than 4 MB."
        return None
    if model.startswith("gpt-image-2"):
        if size == "auto":
            return None
        try:
            width, height = (int(v) for v in size.split("x"))
        except ValueError:
            return f"Invalid size '{size}'."
        problems = []
        if width % 16 or height % 16:
            problems.append("width and height must be multiples of 16")
        if not (width * 3 >= height and height * 3 >= width):
            problems.append("the aspect ratio must be between 1:3 and 3:1")
        if not 655_360 <= width * height <= 8_294_400:
            problems.append("the total pixel count must be between 655360 and 8294400")
        if max(width, height) > 3840:
            problems.append("the longest edge must be at most 3840")
        return f"Invalid size '{size}': {'; '.join(problems)}." if problems else None
    if model.startswith(("gpt-image-1", "chatgpt-image")) and size not in _FIXED_GPT_IMAGE_SIZES:
        return f"Invalid size '{size}'. Supported sizes are 1024x1024, 1024x1536, 1536x1024, and auto."
    return None


def fake_openai_images_server(
    edit_fn: Callable[[Image.Image, str, Any], Any], *, faults: FaultPlan = None, enforce_sizes: bool = True,
    **server_options,
) -> FakeServer:
    """A FakeServer answering ``POST /v1/images/edits`` (``add_openai_images_route``)."""
    return add_openai_images_route(FakeServer(faults=faults, **server_options), edit_fn, enforce_sizes=enforce_sizes)


def add_openai_images_route(server: FakeServer, edit_fn: Callable[[Image.Image, str, Any], Any], *,
                            enforce_sizes: bool = True) -> FakeServer:
    """``POST /v1/images/edits``. With ``enforce_sizes`` (the default) a size the model does not take
    is answered with the service's 400, and the edit comes back at the requested size, as the
    service's does; dall-e-2 answers with a URL unless ``response_format=b64_json`` was asked for."""

    def handle(request, _match):
        fields = request.multipart()
        uploads = fields.get("image") or fields.get("image[]")
        if not uploads:
            return FakeResponse(400, {"error": {"code": "missing_image", "message": "image is required",
                                                "type": "invalid_request_error"}})
        image = Image.open(io.BytesIO(uploads[0].data)).convert("RGB")
        model = fields["model"][0].text if "model" in fields else "dall-e-2"
        size = fields["size"][0].text if "size" in fields else "auto"
        if enforce_sizes:
            problem = openai_size_problem(model, size, image, len(uploads[0].data))
            if problem:
                return openai_invalid_size(problem)
        background = fields["background"][0].text if "background" in fields else "auto"
        output_format = fields["output_format"][0].text if "output_format" in fields else "png"
        if background == "transparent" and output_format not in ("png", "webp"):
            return FakeResponse(400, {"error": {"code": "invalid_value", "param": "background",
                                                "type": "invalid_request_error", "message":
                                                "Transparent background requires output_format png or webp."}})
        result = edit_fn(image, fields["prompt"][0].text, request)
        if isinstance(result, FakeResponse):
            return result
        if background == "opaque":
            result = to_rgb(result)
        if enforce_sizes and size != "auto":
            result = result.resize(tuple(int(v) for v in size.split("x")))
        response_format = fields["response_format"][0].text if "response_format" in fields else None
        if model.startswith("dall-e-2") and response_format != "b64_json":
            return {"created": int(time.time()), "data": [{"url": "https://images.example.invalid/edit.png"}]}
        return {"created": int(time.time()), "data": [{"b64_json": png_b64(result)}],
                "background": "transparent" if has_alpha(result) else "opaque", "output_format": "png",
                "usage": {"input_tokens": 10, "output_tokens": 10, "total_tokens": 20}}

    return server.add_route("POST", r"^/v1/images/edits$", handle)


@dataclass
class GeminiImageReply:
    """A Gemini answer other than the plain edit.

    ``block_reason`` blocks the prompt (``promptFeedback.blockReason``, no candidates);
    ``finish_reason`` ends the candidate (``IMAGE_SAFETY``, ``IMAGE_PROHIBITED_CONTENT``, ...);
    ``text`` is what the model says; ``image`` is a final image to send (None: no image part);
    ``thinking`` overrides the server's choice of sending thought parts (with a draft) first.
    """

    text: str | None = None
    finish_reason: str = "STOP"
    block_reason: str | None = None
    image: Image.Image | None = None
    thinking: bool | None = None


def gemini_image_request(request_json: dict) -> tuple[str, Image.Image | None]:
    """(prompt text, first inline image) of a recorded generateContent request."""
    images = gemini_images(request_json)
    return gemini_text(request_json), (images[0].convert("RGB") if images else None)


def is_thinking_image_model(model: str) -> bool:
    """Gemini 3 image models think before they answer (``gemini-3-pro-image-preview``, ...)."""
    return model.startswith("gemini-3") and "image" in model


def draft_of(image: Image.Image) -> Image.Image:
    """The draft a thinking model shows among its thoughts: here, the answer in grey, at half size."""
    return image.convert("L").convert("RGB").resize((max(1, image.width // 2), max(1, image.height // 2)))


def _inline(image: Image.Image) -> dict:
    return {"inlineData": {"mimeType": "image/png", "data": png_b64(image)}}


def gemini_image_candidate(reply: GeminiImageReply, *, thinking: bool, draft: Image.Image | None) -> dict:
    """One candidate in the documented shape: thought parts first (a note and a draft image, each
    ``thought: true``) when the model thinks, then the answer's text and image; the last part of a
    thinking model's answer carries a ``thoughtSignature``. A policy finish reason withholds the
    final image (the thoughts, draft included, may still have been sent)."""
    parts: list[dict] = []
    if thinking:
        parts.append({"text": "**Planning the edit**\nI will follow the instruction and keep the rest intact.",
                      "thought": True})
        if draft is not None:
            parts.append({**_inline(draft), "thought": True})
    if reply.text:
        parts.append({"text": reply.text})
    if reply.image is not None and reply.finish_reason == "STOP":
        parts.append(_inline(reply.image))
    if thinking and parts and not parts[-1].get("thought"):
        parts[-1]["thoughtSignature"] = base64.b64encode(b"fake-thought-signature").decode("ascii")
    candidate: dict[str, Any] = {"finishReason": reply.finish_reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if reply.finish_reason != "STOP":
        candidate["finishMessage"] = f"Unable to show the generated image (finish reason {reply.finish_reason})."
    return candidate


def fake_gemini_image_server(
    edit_fn: Callable[[Image.Image, str, Any], Any],
    *,
    faults: FaultPlan = None,
    thinking: bool | None = None,
    **server_options,
) -> FakeServer:
    """Gemini ``generateContent`` for image models. ``edit_fn`` returns the edit (a PIL image, sent
    with a line of text as the models do), a ``GeminiImageReply`` or a ``FakeResponse``.
    ``thinking`` (default: by model name, ``is_thinking_image_model``) sends thought parts with a
    draft image before the answer, as the Gemini 3 image models do."""
    server = FakeServer(faults=faults, **server_options)

    def handle(request, match):
        model = match.group(1)
        prompt, image = gemini_image_request(request.json or {})
        if image is None:
            return FakeResponse(400, {"error": {"code": 400, "message": "no image in the request", "status": "INVALID_ARGUMENT"}})
        result = edit_fn(image, prompt, request)
        if isinstance(result, FakeResponse):
            return result
        usage: dict[str, Any] = {"promptTokenCount": 10, "candidatesTokenCount": 10, "totalTokenCount": 20}
        if not isinstance(result, GeminiImageReply):
            result = GeminiImageReply(text="Here is the edited image.", image=result)
        if result.block_reason:
            return {"promptFeedback": {"blockReason": result.block_reason}, "usageMetadata": usage,
                    "modelVersion": model}
        thinks = result.thinking if result.thinking is not None else (
            thinking if thinking is not None else is_thinking_image_model(model))
        draft = draft_of(result.image if result.image is not None else image) if thinks else None
        candidate = gemini_image_candidate(result, thinking=thinks, draft=draft)
        if thinks:  # thinking is billed as output and reported apart from the answer
            usage.update(thoughtsTokenCount=40, totalTokenCount=60)
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    return server.add_route("POST", r"^/v1(?:beta|alpha)?/models/([^/:]+):generateContent$", handle)
