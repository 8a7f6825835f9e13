"""The decomposition agent: request + image → actions, subjects and goals.

It asks with exactly the prompt the model was trained on (``prompts/decompose.jinja`` around
``"<image>" + request``, the image placed where EasyR1 puts it) and reads the answer with the
tolerant parser of ``imageedit_r1.decomposition``.

Repair policy, when the answer cannot be read or names no action:
one bounded repair, then a ``DecompositionError`` that carries every raw output.
- ``"schema"``: ask again under a JSON schema (``{"actions", "subjects", "goals"}``) that the
  backend enforces while decoding (OpenAI / vLLM / Gemini structured output);
- ``"reask"``: show the model its answer and the parse error and ask once more for the tagged format;
- ``"auto"`` (default): ``"schema"`` where the backend enforces schemas, else ``"reask"``;
- ``"none"``: no repair.
Backend failures (``RefusalError``, ``RetriesExhausted``, ``BackendError``) are not repaired:
they propagate unchanged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.backends.base import ChatBackend, ChatMessage, ChatResponse
from imageedit_r1.decomposition import Decomposition, DecompositionParseError, parse
from imageedit_r1.jsontext import unfence
from imageedit_r1.prompts import render_prompt
from imageedit_r1.request_text import clean_request

# EasyR1's image slot: the training prompt is decompose.jinja rendered around "<image>" + request.
IMAGE_SLOT = "<image>"
REPAIR_MODES = ("auto", "schema", "reask", "none")

_FORMAT_EXAMPLE = (
    '<think>…</think><action>["…"]</action><subjects>["…", "…"]</subjects><goals>["…"]</goals>'
)


class DecompositionError(RuntimeError):
    """No usable decomposition after the bounded repair; ``raw_outputs`` holds every model answer."""

    def __init__(self, message: str, raw_outputs: list[str], errors: list[str]) -> None:
        super().__init__(message)
        self.raw_outputs = list(raw_outputs)
        self.errors = list(errors)


@dataclass
class DecomposerResult:
    decomposition: Decomposition  # canonicalized: taxonomy labels, duplicates dropped
    repairs: list[str]  # what the parser mended, plus "re-asked …" when a repair round ran
    raw_outputs: list[str]  # every model answer, in order
    model: str = ""
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: list[dict[str, Any]] = field(default_factory=list)


def decomposition_json_schema(max_items: int | None = None, max_chars: int | None = None) -> dict[str, Any]:
    """The JSON shape of a decomposition, for schema-constrained decoding.

    Unbounded by default: the strictest hosted APIs reject length keywords. For a self-hosted
    engine (vLLM's xgrammar honours them) ``max_items`` adds ``maxItems`` to every list and
    ``minItems: 1`` to actions, and ``max_chars`` adds ``maxLength`` to every string, so a
    drifting model cannot run to the token limit. No ``think``: free text only costs tokens here.
    """
    item: dict[str, Any] = {"type": "string"}
    if max_chars is not None:
        item["maxLength"] = max_chars
    lists = {}
    for name in ("actions", "subjects", "goals"):
        array: dict[str, Any] = {"type": "array", "items": dict(item)}
        if max_items is not None:
            array["maxItems"] = max_items
            if name == "actions":
                array["minItems"] = 1
        lists[name] = array
    return {
        "type": "object",
        "properties": lists,
        "required": ["actions", "subjects", "goals"],
        "additionalProperties": False,
    }


def decomposition_messages(image, request: str) -> list[ChatMessage]:
    """The training prompt as one user turn, the image where EasyR1's ``<image>`` slot is."""
    prompt = render_prompt("decompose", content=IMAGE_SLOT + request.replace(IMAGE_SLOT, ""))
    before, _, after = prompt.partition(IMAGE_SLOT)
    parts = [part for part in (before, image, after) if not (isinstance(part, str) and not part)]
    return [ChatMessage("user", parts)]


def _check_usable(decomposition: Decomposition) -> None:
    if not decomposition.actions:
        raise DecompositionParseError("the answer names no action", decomposition.render())


def _from_json(text: str) -> Decomposition:
    try:
        data = json.loads(unfence(text))
    except json.JSONDecodeError as exc:
        raise DecompositionParseError(f"not valid JSON: {exc}", text) from exc
    except RecursionError:
        raise DecompositionParseError("not valid JSON: brackets nested too deep", text) from None
    try:
        return Decomposition.from_dict(data)
    except ValueError as exc:
        raise DecompositionParseError(str(exc), text) from exc


class Decomposer:
    def __init__(
        self,
        backend: ChatBackend,
        *,
        repair: str = "auto",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
        schema_max_items: int | None = None,
        schema_max_chars: int | None = None,
    ) -> None:
        if repair not in REPAIR_MODES:
            raise ValueError(f"repair must be one of {REPAIR_MODES}, got {repair!r}")
        self.backend = backend
        self.repair = repair
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.schema = decomposition_json_schema(schema_max_items, schema_max_chars)

    def repair_mode(self) -> str:
        if self.repair != "auto":
            return self.repair
        return "schema" if getattr(self.backend, "supports_json_schema", False) else "reask"

    def decompose(self, image, request: str) -> Decomposition:
        """The canonicalized decomposition (see ``run`` for repairs and raw outputs)."""
        return self.run(image, request).decomposition

    def run(self, image, request: str) -> DecomposerResult:
        if not isinstance(request, str) or not request.strip():
            raise ValueError("the edit request is empty")
        from imageedit_r1.images import load_image

        image = load_image(image)
        messages = decomposition_messages(image, clean_request(request))
        started = time.perf_counter()
        replies: list[ChatResponse] = []
        errors: list[str] = []

        first = self._chat(messages, replies)
        try:
            result = parse(first.text)
            _check_usable(result.decomposition)
            return self._result(result.decomposition, list(result.repairs), replies, started)
        except DecompositionParseError as exc:
            errors.append(str(exc))

        mode = self.repair_mode()
        if mode == "none":
            raise self._failure(replies, errors, "repair is off")
        if mode == "schema":
            repair_messages = [
                *messages[:-1],
                ChatMessage(
                    "user",
                    [*messages[-1].parts(), "\n\nAnswer with a JSON object holding the three lists "
                     '"actions", "subjects" and "goals".'],
                ),
            ]
            reply = self._chat(repair_messages, replies, json_schema=self.schema)
            try:
                decomposition = _from_json(reply.text)
                _check_usable(decomposition)
                return self._result(decomposition, ["re-asked under the decomposition JSON schema"], replies, started)
            except DecompositionParseError as exc:
                errors.append(str(exc))
        else:
            repair_messages = [
                *messages,
                ChatMessage("assistant", first.text),
                ChatMessage(
                    "user",
                    f"Your answer could not be read ({errors[-1]}). Answer again in exactly this form, "
                    f"each list a JSON array of strings:\n{_FORMAT_EXAMPLE}",
                ),
            ]
            reply = self._chat(repair_messages, replies)
            try:
                result = parse(reply.text)
                _check_usable(result.decomposition)
                repairs = ["re-asked with the parse error", *result.repairs]
                return self._result(result.decomposition, repairs, replies, started)
            except DecompositionParseError as exc:
                errors.append(str(exc))
        raise self._failure(replies, errors, f"after one {mode} repair")

    def _chat(self, messages: list[ChatMessage], replies: list[ChatResponse], json_schema=None) -> ChatResponse:
        reply = self.backend.chat(
            messages,
            json_schema=json_schema,
            schema_name="decomposition",
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
        )
        replies.append(reply)
        return reply

    def _result(self, decomposition: Decomposition, repairs: list[str], replies, started) -> DecomposerResult:
        return DecomposerResult(
            decomposition=decomposition.canonicalized(),
            repairs=repairs,
            raw_outputs=[r.text for r in replies],
            model=replies[-1].model,
            seconds=time.perf_counter() - started,
            prompt_tokens=sum(r.prompt_tokens or 0 for r in replies),
            completion_tokens=sum(r.completion_tokens or 0 for r in replies),
            usage=[
                {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "seconds": r.seconds}
                for r in replies
            ],
        )

    def _failure(self, replies: list[ChatResponse], errors: list[str], how: str) -> DecompositionError:
        preview = replies[-1].text[:200] if replies else ""
        error = DecompositionError(
            f"the decomposition agent ({self.backend.model}) gave no readable decomposition {how}: "
            f"{'; '.join(errors)}. Last answer starts: {preview!r}",
            [r.text for r in replies],
            errors,
        )
        # The tokens were spent all the same: the trace reports them.
        error.prompt_tokens = sum(r.prompt_tokens or 0 for r in replies)
        error.completion_tokens = sum(r.completion_tokens or 0 for r in replies)
        return error
