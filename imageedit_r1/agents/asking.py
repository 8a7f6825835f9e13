"""Ask a chat model, read its reply, ask again when the reply cannot be read: the one loop.

Every role that reads a model's answer (decomposer, sequencer, judge, verifier, teacher) asks
through ``ask``: the reply goes to ``parse``; an error of the kinds in ``unreadable`` means "ask
again", at most ``reasks`` more times, either with the same messages or with the ``Ask`` that
``reask(ask, reply, error)`` builds from the failed reply and the reason (a repair turn, a stricter
schema, another parser). Any other error stops at once (a refusal, a transport failure, an answer
cut off before any text).

What the asks cost is counted in one ``AskLog``, the replies and the reasons included. It comes
back with the answer, and it rides on any error that leaves ``ask`` as ``error.ask_log``, so a
caller records the tokens of a failed attempt too (``ask_log_of``).
"""

from __future__ import annotations

from collections.abc import Callable
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
    log = AskLog()
    current = first
    for number in range(reasks + 1):
        log.asks += 1
        try:
            reply = backend.chat(current.messages, json_schema=current.json_schema, schema_name=schema_name,
                                 temperature=temperature, max_tokens=max_tokens, seed=seed)
        except Exception as exc:
            billed = getattr(exc, "reply", None)  # an answer cut off before any text is billed all the same
            if hasattr(billed, "completion_tokens"):
                log.replies.append(billed)
            exc.ask_log = log
            raise
        log.replies.append(reply)
        try:
            return Answer(current.parse(reply.text), reply, current, log)
        except unreadable as exc:
            log.errors.append(str(exc))
            if number == reasks:
                exc.ask_log = log
                raise
            current = reask(current, reply, exc) if reask is not None else current
        except Exception as exc:
            exc.ask_log = log
            raise
    raise AssertionError("unreachable")
