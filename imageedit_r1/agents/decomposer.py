"""The decomposition agent: request + image → actions, subjects and goals.

It asks with exactly the prompt the model was trained on (``prompts/decompose.jinja`` around
``"<image>" + request``, the image placed where EasyR1 puts it) and reads the answer with the
tolerant parser of ``imageedit_r1.decomposition``.

Repair policy, when the answer cannot be read or names no action: ``reasks`` bounded repairs
(one by default; asked through ``imageedit_r1.agents.asking``), then a ``DecompositionError``
that carries every raw output.
- ``"schema"``: ask again under a JSON schema (``{"actions", "subjects", "goals"}``) that the
  backend enforces while decoding (OpenAI / vLLM / Gemini structured output);
- ``"reask"``: show the model its answer and the parse error and ask once more for the tagged format;
- ``"auto"`` (default): ``"schema"`` where the backend enforces schemas, else ``"reask"``;
- ``"none"``: no repair.
Backend failures (``RefusalError``, ``RetriesExhausted``, ``BackendError``) are not repaired:
they propagate unchanged.

``run_batch(images, requests)`` decomposes many requests in one batched call per round (the
backend's ``chat_batch``; repairs are batched too) and returns each request's result or its own
error; ``run`` is ``run_batch`` of one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.agents.asking import Ask, AskLog, NoReadableAnswer, ask_batch, ask_log_of
from imageedit_r1.backends.base import ChatBackend, ChatMessage
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


class DecompositionError(NoReadableAnswer):
    """No usable decomposition after the bounded repair; ``raw_outputs`` holds every model answer."""


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


def _from_tags(text: str) -> tuple[Decomposition, list[str]]:
    """The tagged answer the model was trained to write, and what the tolerant parser mended."""
    result = parse(text)
    _check_usable(result.decomposition)
    return result.decomposition, list(result.repairs)


def _from_schema_json(text: str) -> tuple[Decomposition, list[str]]:
    """A JSON answer asked for under the decomposition schema."""
    decomposition = _from_json(text)
    _check_usable(decomposition)
    return decomposition, []


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
        reasks: int = 1,
    ) -> None:
        if repair not in REPAIR_MODES:
            raise ValueError(f"repair must be one of {REPAIR_MODES}, got {repair!r}")
        if reasks < 0:
            raise ValueError(f"reasks must be >= 0, got {reasks}")
        self.backend = backend
        self.repair = repair
        self.reasks = reasks
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
        """The decomposition of one request; raises what ``run_batch`` gives as its error."""
        (result,) = self.run_batch([image], [request])
        if isinstance(result, BaseException):
            raise result
        return result

    def run_batch(self, images: Sequence[Any], requests: Sequence[str]) -> list[DecomposerResult | Exception]:
        """One result per (image, request) pair, in order: a ``DecomposerResult``, or that pair's error
        (``ValueError`` for an empty request, ``ImageLoadError``, ``DecompositionError``, a backend error).
        Every pair is asked in one batched call, and the repairs of those that need one in another."""
        from imageedit_r1.images import load_image

        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        results: list[Any] = [None] * len(requests)
        firsts: dict[int, Ask] = {}
        for index, (image, request) in enumerate(zip(images, requests, strict=True)):
            try:
                if not isinstance(request, str) or not request.strip():
                    raise ValueError("the edit request is empty")
                firsts[index] = Ask(decomposition_messages(load_image(image), clean_request(request)), _from_tags)
            except Exception as exc:  # noqa: BLE001 - this pair's error alone
                results[index] = exc
        started = time.perf_counter()
        mode = self.repair_mode()
        reasks = 0 if mode == "none" else self.reasks
        answers = ask_batch(self.backend, list(firsts.values()), reasks=reasks, unreadable=DecompositionParseError,
                            reask=self._repair(mode), schema_name="decomposition", temperature=self.temperature,
                            max_tokens=self.max_tokens, seed=self.seed)
        for index, answer in zip(firsts, answers, strict=True):
            results[index] = self._read(answer, mode, reasks, started)
        return results

    def _read(self, answer, mode: str, reasks: int, started: float) -> DecomposerResult | Exception:
        if isinstance(answer, DecompositionParseError):
            log = ask_log_of(answer)
            made = log.asks - 1 if log is not None else reasks
            how = "repair is off" if reasks == 0 else f"after one {mode} repair" if made == 1 else \
                f"after {made} {mode} repairs" if made else f"({answer})"
            error = DecompositionError(f"the decomposition agent ({self.backend.model}) gave no readable "
                                       f"decomposition {how}", log)
            error.__cause__ = answer
            return error
        if isinstance(answer, BaseException):
            return answer
        decomposition, repairs = answer.value
        if answer.reasked:
            repairs = ["re-asked under the decomposition JSON schema"] if mode == "schema" \
                else ["re-asked with the parse error", *repairs]
        return self._result(decomposition, repairs, answer.log, started)

    def _repair(self, mode: str):
        """How a failed ask becomes the next: the same turn under the JSON schema ("schema"), or the
        answer shown back with the parse error ("reask")."""
        def schema_repair(previous: Ask, reply, error) -> Ask:
            if previous.json_schema is not None:  # already under the schema: ask the same way again
                return previous
            turn = ChatMessage("user", [*previous.messages[-1].parts(), "\n\nAnswer with a JSON object holding "
                                        'the three lists "actions", "subjects" and "goals".'])
            return Ask([*previous.messages[:-1], turn], _from_schema_json, self.schema)

        def reask_repair(previous: Ask, reply, error) -> Ask:
            return Ask([*previous.messages, ChatMessage("assistant", reply.text), ChatMessage(
                "user", f"Your answer could not be read ({error}). Answer again in exactly this form, "
                f"each list a JSON array of strings:\n{_FORMAT_EXAMPLE}")], _from_tags)

        return schema_repair if mode == "schema" else reask_repair

    def _result(self, decomposition: Decomposition, repairs: list[str], log: AskLog, started) -> DecomposerResult:
        return DecomposerResult(
            decomposition=decomposition.canonicalized(),
            repairs=repairs,
            raw_outputs=log.raw_outputs,
            model=log.replies[-1].model,
            seconds=time.perf_counter() - started,
            prompt_tokens=log.prompt_tokens,
            completion_tokens=log.completion_tokens,
            usage=[
                {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "seconds": r.seconds}
                for r in log.replies
            ],
        )

