"""Ask a chat model, read its reply, ask again when the reply cannot be read: the one loop.

Every role that reads a model's answer (decomposer, sequencer, judge, verifier, teacher) asks
through ``ask``: the reply goes to ``parse``; an error of the kinds in ``unreadable`` means "ask
again", at most ``reasks`` more times, either with the same messages or with the ``Ask`` that
``reask(ask, reply, error)`` builds from the failed reply and the reason (a repair turn, a stricter
schema, another parser). Any other error stops at once (a refusal, a transport failure, an answer
cut off before any text). An unreadable answer cut off at ``max_tokens`` says so in its error (raise
``max_tokens``), and is asked again only by a repair that changes the ask: the same ask with the
same room would be cut off again.

``ask_batch`` asks many questions at once: each round sends every question still open to the
backend's ``chat_batch`` (one batched call per JSON schema asked under, usually one), so the
re-asks of a batch are a batch too. Each question ends on its own: an answer, or its own error.
``ask`` is ``ask_batch`` of one question.

What the asks cost is counted in one ``AskLog`` per question, the replies and the reasons
included. It comes back with the answer, and it rides on any error that leaves ``ask`` as
``error.ask_log``, so a caller records the tokens of a failed attempt too (``ask_log_of``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class Ask:
    """One request: its messages, the reader of its reply and the JSON schema it asks under."""

    messages: list[Any]  # imageedit_r1.backends.ChatMessage
    parse: Callable[[str], Any]
    json_schema: dict[str, Any] | None = None


@dataclass
class AskLog:
    """Every ask of one question: replies in order, why each unread one was not read, and usage."""

    asks: int = 0  # requests sent, one that raised included
    # imageedit_r1.backends.ChatResponse; a reply the backend raised on (cut off) when it was billed
    replies: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # why each unreadable reply was not read

    @property
    def prompt_tokens(self) -> int:
        return sum(int(reply.prompt_tokens or 0) for reply in self.replies)

    @property
    def completion_tokens(self) -> int:
        return sum(int(reply.completion_tokens or 0) for reply in self.replies)

    @property
    def unreported(self) -> int:
        """Replies whose server reported no token counts."""
        return sum(1 for reply in self.replies if reply.prompt_tokens is None and reply.completion_tokens is None)

    @property
    def raw_outputs(self) -> list[str]:
        return [reply.text for reply in self.replies]


@dataclass
class Answer(Generic[T]):
    """What ``parse`` read from the last reply, that reply, the ``Ask`` that got it, and the log."""

    value: T
    reply: Any  # imageedit_r1.backends.ChatResponse
    ask: Ask
    log: AskLog

    @property
    def reasked(self) -> bool:
        return self.log.asks > 1


class NoReadableAnswer(RuntimeError):
    """Every ask got an answer that could not be read. Carries every answer (``raw_outputs``), why
    each was not read (``errors``) and the tokens spent all the same, for the trace."""

    def __init__(self, message: str, log: AskLog) -> None:
        preview = log.replies[-1].text[:200] if log.replies else ""
        super().__init__(f"{message}: {'; '.join(log.errors)}. Last answer starts: {preview!r}")
        self.ask_log = log
        self.raw_outputs = log.raw_outputs
        self.errors = list(log.errors)
        self.prompt_tokens = log.prompt_tokens
        self.completion_tokens = log.completion_tokens


def ask_log_of(exc: BaseException) -> AskLog | None:
    """The ``AskLog`` an error carries out of ``ask``, or None."""
    return getattr(exc, "ask_log", None)


def ask(backend, first: Ask, *, reasks: int = 1, unreadable: type[BaseException] | tuple[type[BaseException], ...],
        reask: Callable[[Ask, Any, BaseException], Ask] | None = None, schema_name: str = "response",
        temperature: float = 0.0, max_tokens: int = 1024, seed: int | None = None) -> Answer:
    """Ask ``backend`` with ``first``; re-ask (``reask`` builds the next ``Ask``; default: the same)
    at most ``reasks`` times while ``parse`` raises one of ``unreadable``.

    Returns the ``Answer``; raises the last ``unreadable`` error when every ask failed, any other
    error at once, each with ``ask_log`` attached.
    """
    (result,) = ask_batch(backend, [first], reasks=reasks, unreadable=unreadable, reask=reask,
                          schema_name=schema_name, temperature=temperature, max_tokens=max_tokens, seed=seed)
    if isinstance(result, BaseException):
        raise result
    return result


def ask_batch(backend, firsts: Sequence[Ask], *, reasks: int = 1,
              unreadable: type[BaseException] | tuple[type[BaseException], ...],
              reask: Callable[[Ask, Any, BaseException], Ask] | None = None, schema_name: str = "response",
              temperature: float = 0.0, max_tokens: int = 1024, seed: int | None = None) -> list[Answer | Exception]:
    """``ask`` for every question of ``firsts`` at once: one result per question, in order, an
    ``Answer`` or the error that question ended with (``ask_log`` attached). Each round is one
    ``chat_batch`` of the questions still open (per JSON schema), at most ``reasks + 1`` rounds."""
    from imageedit_r1.backends.batching import chat_batch

    results: list[Any] = [None] * len(firsts)
    logs = [AskLog() for _ in firsts]
    open_asks: dict[int, Ask] = dict(enumerate(firsts))
    settings = {"schema_name": schema_name, "temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    for number in range(reasks + 1):
        next_asks: dict[int, Ask] = {}
        for schema, group in _by_schema(open_asks):
            replies = chat_batch(backend, [open_asks[i].messages for i in group], json_schema=schema, **settings)
            for index, reply in zip(group, replies, strict=True):
                log, current = logs[index], open_asks[index]
                log.asks += 1
                if isinstance(reply, BaseException):
                    billed = getattr(reply, "reply", None)  # an answer cut off before any text is billed all the same
                    if hasattr(billed, "completion_tokens"):
                        log.replies.append(billed)
                    results[index] = _with_log(reply, log)
                    continue
                log.replies.append(reply)
                try:
                    results[index] = Answer(current.parse(reply.text), reply, current, log)
                except unreadable as exc:
                    cut_off = getattr(reply, "finish_reason", None) == "length"
                    if cut_off:
                        exc.args = (f"the answer was cut off at max_tokens={max_tokens} before it could be read: "
                                    f"raise max_tokens ({exc})", *exc.args[1:])
                    log.errors.append(str(exc))
                    if number == reasks:
                        results[index] = _with_log(exc, log)
                        continue
                    try:
                        following = reask(current, reply, exc) if reask is not None else current
                    except Exception as error:  # noqa: BLE001 - this question's error alone
                        results[index] = _with_log(error, log)
                        continue
                    if cut_off and following is current:
                        # The same ask with the same room would be cut off again; a repair (a schema,
                        # a shorter form) is a different ask and may fit.
                        results[index] = _with_log(exc, log)
                        continue
                    next_asks[index] = following
                except Exception as exc:  # noqa: BLE001 - this question's error alone
                    results[index] = _with_log(exc, log)
        open_asks = next_asks
        if not open_asks:
            break
    return results


def _by_schema(asks: dict[int, Ask]) -> list[tuple[dict[str, Any] | None, list[int]]]:
    """The open questions grouped by the JSON schema they are asked under, in first-seen order."""
    groups: dict[str, tuple[dict[str, Any] | None, list[int]]] = {}
    for index, item in asks.items():
        key = json.dumps(item.json_schema, sort_keys=True, default=str)
        groups.setdefault(key, (item.json_schema, []))[1].append(index)
    return list(groups.values())


def _with_log(exc: BaseException, log: AskLog) -> BaseException:
    exc.ask_log = log
    return exc
