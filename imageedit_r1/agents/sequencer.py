"""The sequencing agent: decomposition + request + image → ordered sub-requests for the editor.

It asks with ``prompts/sequence.jinja``: under a JSON schema (``{"sub_requests": [...]}``) where
the backend enforces schemas, else for a bare JSON array. The answer is validated (a non-empty
list of non-empty strings, at most ``max_steps``, each at most ``max_chars`` long). An invalid
answer is asked again with the validation error (``reasks`` times, one by default, through
``imageedit_r1.agents.asking``); after that either a ``SequencingError``
carrying every raw output, or — only when ``fallback=True`` — the deterministic sub-requests of
``fallback_sub_requests`` built from the decomposition alone.

``run_batch(images, decompositions, requests)`` sequences many plans in one batched call per
round (the backend's ``chat_batch``; the re-asks of a batch are a batch too) and returns each
plan's result or its own error; ``run`` is ``run_batch`` of one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imageedit_r1.agents.asking import Ask, AskLog, NoReadableAnswer, ask_batch, ask_log_of
from imageedit_r1.backends.base import ChatBackend, ChatMessage
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.jsontext import embedded_json, fenced_blocks
from imageedit_r1.prompts import render_prompt
from imageedit_r1.request_text import clean_request
from imageedit_r1.taxonomy import ACTIONS, canonical_action


class SequencingError(NoReadableAnswer):
    """No valid list of sub-requests after the bounded repair; ``raw_outputs`` holds every answer."""


class InvalidSubRequests(ValueError):
    pass


@dataclass
class SequencerResult:
    sub_requests: list[str]
    repairs: list[str]
    raw_outputs: list[str]
    fallback_used: bool = False
    model: str = ""
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def sub_requests_json_schema(max_steps: int, *, bounded: bool = False, max_chars: int = 300) -> dict[str, Any]:
    """``{"sub_requests": [str, ...]}``; ``bounded`` adds minItems/maxItems/maxLength.

    Bounds are off by default because the strictest hosted APIs reject length keywords; turn
    them on for self-hosted engines (vLLM) that enforce them while decoding.
    """
    item: dict[str, Any] = {"type": "string"}
    array: dict[str, Any] = {"type": "array", "items": item}
    if bounded:
        item["maxLength"] = max_chars
        array.update(minItems=1, maxItems=max_steps)
    return {
        "type": "object",
        "properties": {"sub_requests": array},
        "required": ["sub_requests"],
        "additionalProperties": False,
    }


def parse_sub_requests(text: str, *, max_steps: int = 8, max_chars: int = 300) -> list[str]:
    """The validated list from a model answer: a JSON array, or an object with ``sub_requests``.

    Tolerates a code fence and prose around the JSON; raises ``InvalidSubRequests`` saying what is wrong.
    """
    blocks = fenced_blocks(text)
    body = blocks[0] if blocks else text.strip()
    value: Any
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: brackets nested past the stack
        # Prose around the JSON: take the first array written in it, else the first object.
        values = list(embedded_json(body))
        value = next((v for v in values if isinstance(v, list)), None)
        if value is None:
            value = next((v for v in values if isinstance(v, dict)), None)
        if value is None:
            raise InvalidSubRequests("the answer holds no JSON array of strings") from None
    if isinstance(value, dict):
        for key in ("sub_requests", "steps", "subrequests"):
            if key in value:
                value = value[key]
                break
        else:
            raise InvalidSubRequests(f"the JSON object has no 'sub_requests' key (keys: {sorted(value)})")
    if not isinstance(value, list):
        raise InvalidSubRequests(f"expected a JSON array of strings, got {type(value).__name__}")
    if not value:
        raise InvalidSubRequests("the list of sub-requests is empty")
    if not all(isinstance(item, str) for item in value):
        raise InvalidSubRequests("every sub-request must be a string")
    items = [" ".join(item.split()) for item in value]
    if any(not item for item in items):
        raise InvalidSubRequests("a sub-request is empty")
    if len(items) > max_steps:
        raise InvalidSubRequests(f"{len(items)} sub-requests, more than the limit of {max_steps}")
    too_long = [item for item in items if len(item) > max_chars]
    if too_long:
        raise InvalidSubRequests(f"a sub-request is longer than {max_chars} characters")
    return items


def fallback_sub_requests(decomposition: Decomposition, *, max_steps: int = 8) -> list[str]:
    """Deterministic "<Action> <subject> to <goal>" sub-requests from the decomposition alone.

    One per subject, per action or per goal, whichever list is longest, so no operation is
    dropped; the i-th action, subject and goal are paired, a shorter list repeating its last item.
    Without goals: "<Action> <subject>"; without subjects: "<Action> to <goal>", or the goal alone
    when it is itself an instruction (it opens with an edit verb of the taxonomy: "Remove the
    lamp"). Steps beyond ``max_steps`` are joined onto the last step rather than dropped.
    """
    actions = [a for a in decomposition.actions if a.strip()] or ["Edit"]
    subjects = [s for s in decomposition.subjects if s.strip()]
    goals = [g for g in decomposition.goals if g.strip()]
    count = max(len(actions), len(subjects), len(goals), 1)
    steps: list[str] = []
    for i in range(count):
        action = actions[min(i, len(actions) - 1)]
        subject = subjects[min(i, len(subjects) - 1)] if subjects else ""
        goal = goals[min(i, len(goals) - 1)] if goals else ""
        text = " ".join(part for part in (action, subject) if part)
        if goal and not subject and canonical_action(goal) in ACTIONS:
            text = goal  # the goal is already an instruction ("Remove the lamp", "make the sky a sunset")
        elif goal:
            text += f" to {goal}"
        if text not in steps:
            steps.append(text)
    if len(steps) > max_steps:
        steps = [*steps[: max_steps - 1], "; then ".join(steps[max_steps - 1:])]
    return steps


def dropped_operations(decomposition: Decomposition, sub_requests: list[str]) -> list[str]:
    """The decomposition's goals (or, without goals, subjects) that no sub-request mentions."""
    text = " ".join(" ".join(s.lower().split()) for s in sub_requests)
    wanted = [g for g in decomposition.goals if g.strip()] or [s for s in decomposition.subjects if s.strip()]
    return [item for item in wanted if " ".join(item.lower().split()) not in text]


class Sequencer:
    def __init__(
        self,
        backend: ChatBackend,
        *,
        max_steps: int = 8,
        max_chars: int = 300,
        fallback: bool = False,
        use_json_schema: bool = True,
        schema_bounds: bool = False,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = None,
        reasks: int = 1,
    ) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if reasks < 0:
            raise ValueError(f"reasks must be >= 0, got {reasks}")
        self.reasks = reasks
        self.backend = backend
        self.max_steps = max_steps
        self.max_chars = max_chars
        self.fallback = fallback
        self.use_json_schema = use_json_schema
        self.schema_bounds = schema_bounds
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed

    def sequence(self, image, decomposition: Decomposition, request: str) -> list[str]:
        """The ordered sub-requests (see ``run`` for repairs, raw outputs and the fallback flag)."""
        return self.run(image, decomposition, request).sub_requests

    def run(self, image, decomposition: Decomposition, request: str) -> SequencerResult:
        """The sub-requests of one plan; raises what ``run_batch`` gives as its error."""
        (result,) = self.run_batch([image], [decomposition], [request])
        if isinstance(result, BaseException):
            raise result
        return result

    def run_batch(self, images: Sequence[Any], decompositions: Sequence[Decomposition],
                  requests: Sequence[str]) -> list[SequencerResult | Exception]:
        """One result per plan, in order: a ``SequencerResult`` (the fallback's when configured), or
        that plan's error (``SequencingError``, ``ImageLoadError``, a backend error)."""
        from imageedit_r1.images import load_image

        if not len(images) == len(decompositions) == len(requests):
            raise ValueError(f"{len(images)} images, {len(decompositions)} decompositions and {len(requests)} requests")
        constrained = self.use_json_schema and getattr(self.backend, "supports_json_schema", False)
        schema = (
            sub_requests_json_schema(self.max_steps, bounded=self.schema_bounds, max_chars=self.max_chars)
            if constrained
            else None
        )
        answer_shape = 'a JSON object {"sub_requests": [...]}' if constrained else "a JSON array of strings"

        def read(text: str) -> list[str]:
            return parse_sub_requests(text, max_steps=self.max_steps, max_chars=self.max_chars)

        def reask(previous: Ask, reply, error) -> Ask:
            return Ask([*previous.messages, ChatMessage("assistant", reply.text), ChatMessage(
                "user", f"That answer is not valid ({error}). Answer again with only {answer_shape}, "
                f"1 to {self.max_steps} non-empty sub-requests.")], read, schema)

        results: list[Any] = [None] * len(requests)
        firsts: dict[int, Ask] = {}
        for index, (image, decomposition, request) in enumerate(zip(images, decompositions, requests, strict=True)):
            try:
                prompt = render_prompt(
                    "sequence",
                    request=clean_request(request),
                    actions=json.dumps(decomposition.actions, ensure_ascii=False),
                    subjects=json.dumps(decomposition.subjects, ensure_ascii=False),
                    goals=json.dumps(decomposition.goals, ensure_ascii=False),
                    max_steps=self.max_steps,
                    as_object=constrained,
                )
                firsts[index] = Ask([ChatMessage("user", [load_image(image), prompt])], read, schema)
            except Exception as exc:  # noqa: BLE001 - this plan's error alone
                results[index] = exc
        started = time.perf_counter()
        answers = ask_batch(self.backend, list(firsts.values()), reasks=self.reasks, unreadable=InvalidSubRequests,
                            reask=reask, schema_name="sub_requests", temperature=self.temperature,
                            max_tokens=self.max_tokens, seed=self.seed)
        for index, answer in zip(firsts, answers, strict=True):
            results[index] = self._read(answer, decompositions[index], started)
        return results

    def _read(self, answer, decomposition: Decomposition, started: float) -> SequencerResult | Exception:
        if not isinstance(answer, InvalidSubRequests):
            if isinstance(answer, BaseException):
                return answer
            repairs = ["re-asked with the validation error"] if answer.reasked else []
            return self._result(answer.value, repairs, answer.log, started, fallback_used=False)
        log = ask_log_of(answer)
        if self.fallback:
            steps = fallback_sub_requests(decomposition, max_steps=self.max_steps)
            repairs = ["re-asked with the validation error"] if self.reasks else []
            return self._result(steps, [*repairs, "used the deterministic fallback"], log, started, fallback_used=True)
        error = SequencingError(f"the sequencing agent ({self.backend.model}) gave no valid sub-requests after "
                                f"{'one repair' if self.reasks == 1 else f'{self.reasks} repairs'}", log)
        error.__cause__ = answer
        return error

    @staticmethod
    def _result(steps, repairs, log: AskLog, started, *, fallback_used: bool) -> SequencerResult:
        return SequencerResult(
            sub_requests=steps,
            repairs=repairs,
            raw_outputs=log.raw_outputs,
            fallback_used=fallback_used,
            model=log.replies[-1].model,
            seconds=time.perf_counter() - started,
            prompt_tokens=log.prompt_tokens,
            completion_tokens=log.completion_tokens,
        )
