"""The service's HTTP routes (FastAPI), in front of whatever plans and edits (a ``Backend``).

- ``POST /v1/images/edits``: OpenAI's multipart form (``image`` or ``image[]``, ``prompt``,
  ``model``, ``n``, ``size``, ``response_format``, ``output_format``, ``output_compression``,
  ``user``); plans, then edits ``n`` times with distinct seeds; answers OpenAI's JSON (``created``,
  ``data[].b64_json``) plus ``imageedit_r1``: the model, the plan and each image's trace summary.
- ``POST /v1/plans``: image and prompt in, the plan out (``Plan.to_dict()``, as ``Plan.to_json``).
- ``POST /v1/plans/execute``: image and ``plan`` (JSON) in; the plan is run as given and its
  changes are in each trace's ``plan`` entry.
- ``GET /v1/models``: the configured pipelines; ``GET /healthz``: liveness, no key needed.

Every parameter is checked before any work; anything the service does not do (``url``
responses, masks, more than one image, a size other than the input's, streaming) is a 400
naming the parameter. The front door (``imageedit_r1.serve.front_door``) checks keys and body
sizes before a route runs. In Ray Serve the backend is the ingress deployment, which calls the
planner and editor deployments (``imageedit_r1.serve.deployments``).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imageedit_r1.pipeline.plan import MAX_TEXT_CHARS, Plan, PlanError
from imageedit_r1.serve import errors
from imageedit_r1.serve.errors import APIError
from imageedit_r1.serve.front_door import (
    UPLOAD_ROUTES,
    UploadLimits,
    UploadRefused,
    door_middlewares,
    read_image,
)
from imageedit_r1.serve.work import OUTPUT_FORMATS

log = logging.getLogger("imageedit_r1.serve")

EDITS, PLANS, EXECUTE = UPLOAD_ROUTES
MAX_SEED = 2**31 - 1
MAX_FIELD_BYTES = 2**20  # a text field: a plan or a prompt (images are files, bounded by the upload limits)
MAX_FORM_FILES = 4  # enough to say "one image per request" rather than fail the parse
# OpenAI parameters the service takes, and the values of the ones it takes as long as they ask for nothing
# it does not do.
EDIT_FIELDS = ("image", "image[]", "prompt", "model", "n", "size", "response_format", "output_format",
               "output_compression", "user", "safety_identifier", "seed", "quality", "background", "moderation",
               "stream")
NEUTRAL_VALUES = {"quality": ("auto",), "background": ("auto", "opaque"), "moderation": ("auto",),
                  "stream": ("false", "False", "0")}
PLAN_FIELDS = ("image", "image[]", "prompt", "model", "user", "safety_identifier")
EXECUTE_FIELDS = ("image", "image[]", "plan", "model", "n", "size", "response_format", "output_format",
                  "output_compression", "user", "safety_identifier", "seed")


class Backend(Protocol):
    async def plan(self, model: str, image: bytes, prompt: str) -> tuple[dict[str, Any], int]:
        """The plan (``Plan.to_dict()``) and the size of the batch it was planned in; raises ``APIError``."""

    async def edit(self, model: str, image: bytes, plan: dict[str, Any], seeds: list[int], output_format: str,
                   output_compression: int | None) -> list[dict[str, Any]]:
        """One ``{"b64_json", "trace"}`` per seed; raises ``APIError``."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    editor: str
    mode: str
    seed: int | None = None  # the pipeline's configured seed (None: a fresh one per request)


@dataclass(frozen=True)
class ApiSettings:
    models: tuple[ServedModel, ...]
    limits: UploadLimits = field(default_factory=UploadLimits)
    max_n: int = 4
    key_digests: tuple[str, ...] = ()


@dataclass
class EditForm:
    """A checked edit (or execute) request."""

    model: str
    image: bytes
    width: int
    height: int
    n: int = 1
    seed: int | None = None
    output_format: str = "png"
    output_compression: int | None = None
    prompt: str | None = None
    plan: dict[str, Any] | None = None


def create_api(backend: Backend, settings: ApiSettings) -> FastAPI:
    """The FastAPI app for ``backend``, behind the front door."""
    app = FastAPI(title="ImageEdit-R1", docs_url=None, redoc_url=None, openapi_url=None)
    for entry in door_middlewares(settings.key_digests, settings.limits.max_bytes):  # the last added is outermost
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    models = {model.name: model for model in settings.models}

    @app.exception_handler(APIError)
    async def api_error(_request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (a malformed multipart body, an unknown route) in the same shape.
        return error_response(APIError(exc.status_code, str(exc.detail),
                                       code="not_found" if exc.status_code == 404 else None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(errors.server_error(f"the server failed: {type(exc).__name__}"))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:  # answered without a key: it says nothing of what is served
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": model.name, "object": "model", "created": created, "owned_by": "imageedit-r1",
             "imageedit_r1": {"editor": model.editor, "mode": model.mode}} for model in settings.models]}

    @app.post(EDITS)
    async def images_edits(request: Request) -> JSONResponse:
        async with _form(request) as form:
            check_fields(form, EDIT_FIELDS)
            edit = read_edit_form(form, settings, models)
            edit.prompt = _prompt(form)
        plan, batch_size = await backend.plan(edit.model, edit.image, edit.prompt)
        body = await _edit(backend, edit, plan, models[edit.model])
        body["imageedit_r1"]["planning"] = {"batch_size": batch_size}
        return JSONResponse(body)

    @app.post(PLANS)
    async def plans(request: Request) -> JSONResponse:
        async with _form(request) as form:
            check_fields(form, PLAN_FIELDS)
            model = _model(form, settings, models)
            image, _, _ = _image(form, settings)
            prompt = _prompt(form)
        plan, _ = await backend.plan(model, image, prompt)
        return JSONResponse(plan)

    @app.post(EXECUTE)
    async def plans_execute(request: Request) -> JSONResponse:
        async with _form(request) as form:
            check_fields(form, EXECUTE_FIELDS)
            edit = read_edit_form(form, settings, models)
            edit.plan = _plan(form)
        return JSONResponse(await _edit(backend, edit, edit.plan, models[edit.model]))

    return app


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


async def _edit(backend: Backend, edit: EditForm, plan: dict[str, Any], model: ServedModel) -> dict[str, Any]:
    seeds = distinct_seeds(edit.seed if edit.seed is not None else model.seed, edit.n, len(plan.get("instructions") or [1]))
    results = await backend.edit(edit.model, edit.image, plan, seeds, edit.output_format, edit.output_compression)
    return {
        "created": int(time.time()),
        "data": [{"b64_json": result["b64_json"]} for result in results],
        "output_format": edit.output_format,
        "size": f"{edit.width}x{edit.height}",
        "imageedit_r1": {"model": edit.model, "plan": plan, "traces": [result["trace"] for result in results]},
    }


def distinct_seeds(base: int | None, n: int, steps: int) -> list[int]:
    """The base seed of each of ``n`` images: ``steps`` apart (multi-turn step i uses base + i), so
    no two images share a seed; ``base`` None draws one."""
    steps = max(1, steps)
    if base is None:
        base = secrets.randbelow(MAX_SEED - n * steps)
    return [(base + index * steps) % (MAX_SEED + 1) for index in range(n)]


# ----------------------------------------------------------------------------- reading the form


class _form:
    """``async with _form(request) as form``: the multipart form, parsed within bounds and closed after."""

    def __init__(self, request: Request) -> None:
        self.request, self.form = request, None

    async def __aenter__(self):
        content_type = self.request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise errors.invalid(f"send the request as multipart/form-data (got {content_type or 'no content type'!r}), "
                                 "as the OpenAI SDK does")
        try:
            self.form = await self.request.form(max_files=MAX_FORM_FILES, max_fields=64,
                                                max_part_size=MAX_FIELD_BYTES)
        except StarletteHTTPException as exc:  # the multipart parser's refusals, in OpenAI's shape
            if "maximum size" in str(exc.detail):
                raise APIError(413, f"a text field (the plan, the prompt) is over {MAX_FIELD_BYTES // 1024} KiB; "
                               "a plan from POST /v1/plans is far smaller", code="request_too_large") from None
            raise errors.invalid(f"the form could not be read: {exc.detail}") from None
        return self.form

    async def __aexit__(self, *exc_info) -> None:
        if self.form is not None:
            await self.form.close()


def check_fields(form, allowed: tuple[str, ...]) -> None:
    """400 naming the first parameter the route does not take, or takes only at a neutral value."""
    for name in form.keys():
        if name not in allowed:
            raise errors.invalid(_unsupported(name), param=name, code="unsupported_parameter")
        value = form.get(name)
        if name in NEUTRAL_VALUES and isinstance(value, str) and value not in NEUTRAL_VALUES[name]:
            raise errors.invalid(f"{name}={value!r} is not supported here; leave it out or send "
                                 f"{' or '.join(NEUTRAL_VALUES[name])}", param=name, code="unsupported_parameter")


def _unsupported(name: str) -> str:
    if name == "mask":
        return "mask is not supported: ImageEdit-R1 edits the whole image as the prompt asks; leave it out"
    return f"{name} is not a parameter this route takes; leave it out"


def read_edit_form(form, settings: ApiSettings, models: dict[str, ServedModel]) -> EditForm:
    model = _model(form, settings, models)
    response_format = _text(form, "response_format") or "b64_json"
    if response_format == "url":
        raise errors.invalid("response_format 'url' is not served: this service returns images inline only; "
                             "send response_format=b64_json or leave it out", param="response_format",
                             code="unsupported_value")
    if response_format != "b64_json":
        raise errors.invalid(f"response_format must be b64_json, got {response_format!r}", param="response_format")
    output_format = (_text(form, "output_format") or "png").lower()
    if output_format not in OUTPUT_FORMATS:
        raise errors.invalid(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}",
                             param="output_format")
    compression = _integer(form, "output_compression", 0, 100)
    if compression is not None and output_format == "png":
        raise errors.invalid("output_compression applies to jpeg and webp only", param="output_compression")
    image, width, height = _image(form, settings)
    size = _text(form, "size") or "auto"
    if size not in ("auto", f"{width}x{height}"):
        raise errors.invalid(f"size must be 'auto' or the input's size {width}x{height}: this service returns the "
                             f"edit at the input's size, got {size!r}", param="size")
    for name in ("user", "safety_identifier"):
        if len(_text(form, name) or "") > 256:
            raise errors.invalid(f"{name} is over 256 characters", param=name)
    return EditForm(model=model, image=image, width=width, height=height,
                    n=_integer(form, "n", 1, settings.max_n) or 1, seed=_integer(form, "seed", 0, MAX_SEED),
                    output_format=output_format, output_compression=compression)


def _text(form, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.invalid(f"{name} must be a text field, not a file", param=name)
    return value.strip()


def _integer(form, name: str, low: int, high: int) -> int | None:
    text = _text(form, name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.invalid(f"{name} must be an integer, got {text!r}", param=name) from None
    if not low <= value <= high:
        raise errors.invalid(f"{name} must be between {low} and {high}, got {value}", param=name)
    return value


def _model(form, settings: ApiSettings, models: dict[str, ServedModel]) -> str:
    model = _text(form, "model") or settings.models[0].name
    if model not in models:
        raise errors.unknown_model(model, list(models))
    return model


def _prompt(form) -> str:
    prompt = _text(form, "prompt")
    if not prompt:
        raise errors.invalid("prompt is required: the edit request, in natural language", param="prompt")
    if len(prompt) > MAX_TEXT_CHARS:
        raise errors.invalid(f"prompt is {len(prompt)} characters long; the limit is {MAX_TEXT_CHARS}", param="prompt")
    return prompt


def _image(form, settings: ApiSettings) -> tuple[bytes, int, int]:
    """The one uploaded image's bytes and upright size, checked against the limits."""
    files = [*form.getlist("image"), *form.getlist("image[]")]
    if not files:
        raise errors.invalid("image is required: upload the image to edit as a file", param="image")
    if len(files) > 1:
        raise errors.invalid(f"this service edits one image per request; {len(files)} were sent", param="image")
    upload = files[0]
    if isinstance(upload, str):
        raise errors.invalid("image must be a file upload, not a text field", param="image")
    data = upload.file.read(settings.limits.max_bytes + 1)
    try:
        decoded = read_image(data, settings.limits)
    except UploadRefused as exc:
        raise errors.invalid(str(exc), param="image", code="invalid_image") from None
    return data, decoded.width, decoded.height


def _plan(form) -> dict[str, Any]:
    text = _text(form, "plan")
    if not text:
        raise errors.invalid("plan is required: the JSON that POST /v1/plans returned (changed as you like)",
                             param="plan")
    try:
        plan = Plan.from_json(text).validate()
    except PlanError as exc:
        raise errors.invalid(f"the plan cannot be executed: {exc}", param="plan") from None
    return plan.to_dict()
