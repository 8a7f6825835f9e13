"""Many conversations at once: what every backend's ``chat_batch`` shares.

``backend.chat_batch(conversations, ...)`` answers a list of conversations with one result per
conversation, in order: a ``ChatResponse``, or the exception that conversation raised. One bad
conversation never fails the others.

- A model in this process (transformers, offline vLLM) decodes the conversations together;
  ``run_isolated`` splits a batch the model refused into halves until the item that fails is
  alone, so a malformed item (or one too long for memory) fails by itself.
- A hosted API or a server (OpenAI, any OpenAI-compatible server such as ``vllm serve``, Gemini)
  gets them as concurrent requests, at most ``max_concurrency`` in flight
  (``chat_concurrently``): the server batches what arrives together.

``chat_batch(backend, conversations, ...)`` is what callers use: the backend's own
``chat_batch``, or one ``chat`` after another for a backend that has none (a stand-in, a plug-in).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def answer_each(chat: Callable[..., Any], conversations: Sequence[Any], **settings: Any) -> list[Any]:
    """``chat(messages, **settings)`` for each conversation in turn; an error is that item's result."""
    results: list[Any] = []
    for messages in conversations:
        try:
            results.append(chat(messages, **settings))
        except Exception as exc:  # noqa: BLE001 - the item's result, not the batch's
            results.append(exc)
    return results


def chat_concurrently(chat: Callable[..., Any], conversations: Sequence[Any], max_concurrency: int,
                      **settings: Any) -> list[Any]:
    """``chat`` on every conversation, at most ``max_concurrency`` at a time, results in order."""
    if len(conversations) <= 1 or max_concurrency <= 1:
        return answer_each(chat, conversations, **settings)
    with ThreadPoolExecutor(max_workers=min(max_concurrency, len(conversations)),
                            thread_name_prefix="chat-batch") as pool:
        futures = [pool.submit(chat, messages, **settings) for messages in conversations]
        results: list[Any] = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the item's result, not the batch's
                results.append(exc)
    return results


class InProcessBatches:
    """``chat`` for a backend whose model runs in this process: ``chat_batch`` of one conversation, so a
    single ask and a batch take the same path."""

    def chat(self, messages: list[Any], **settings: Any) -> Any:
        """The answer to one conversation (``chat_batch``'s settings); its error is raised."""
        return first_or_raise(self.chat_batch([messages], **settings))  # type: ignore[attr-defined]


def encode_each(encode: Callable[[Any], Any], conversations: Sequence[Any]) -> tuple[list[Any], list[tuple[int, Any]]]:
    """``encode`` every conversation: (one result slot per conversation, holding its encoding error or
    None; the (position, encoding) of each conversation that encoded)."""
    results: list[Any] = [None] * len(conversations)
    encoded: list[tuple[int, Any]] = []
    for index, messages in enumerate(conversations):
        try:
            encoded.append((index, encode(messages)))
        except Exception as exc:  # noqa: BLE001 - this conversation's error alone
            results[index] = exc
    return results, encoded


class ConcurrentBatches:
    """``chat_batch`` for a backend whose model runs elsewhere (an API, a server): ``chat`` on each
    conversation, ``max_concurrency`` requests in flight at once."""

    max_concurrency: int = 8

    def chat_batch(self, conversations: list[Any], **settings: Any) -> list[Any]:
        """One answer or error per conversation, in order (``chat``'s settings apply to each)."""
        return chat_concurrently(self.chat, conversations, self.max_concurrency, **settings)  # type: ignore[attr-defined]


def run_isolated(run: Callable[[list[T]], Sequence[Any]], items: list[T],
                 on_split: Callable[[BaseException, int], None] | None = None) -> list[Any]:
    """``run(items)``: one result per item, in order. When it raises for several items, each half is
    run again (``on_split(error, size)`` is told first), down to single items: the error is then
    that item's alone, and every other item still gets its answer."""
    if not items:
        return []
    try:
        results = list(run(items))
    except Exception as exc:  # noqa: BLE001 - narrowed below to the item that causes it
        if len(items) == 1:
            return [exc]
        if on_split is not None:
            on_split(exc, len(items))
        middle = len(items) // 2
        return run_isolated(run, items[:middle], on_split) + run_isolated(run, items[middle:], on_split)
    if len(results) != len(items):
        raise RuntimeError(f"a batch of {len(items)} came back with {len(results)} results")
    return results


def chat_batch(backend: Any, conversations: Sequence[Any], **settings: Any) -> list[Any]:
    """One result per conversation from ``backend``: its ``chat_batch``, else ``chat`` item by item.

    Every exception in the list is the item's own object (an error shared by several items is
    copied), so what a caller attaches to one item's error stays with that item.
    """
    conversations = list(conversations)
    method = getattr(backend, "chat_batch", None)
    if method is None:
        return answer_each(backend.chat, conversations, **settings)
    try:
        results = list(method(conversations, **settings))
    except Exception as exc:  # noqa: BLE001 - a backend that failed the whole batch: every item's error
        results = [exc] * len(conversations)
    if len(results) != len(conversations):
        raise RuntimeError(f"{type(backend).__name__}.chat_batch answered {len(results)} of "
                           f"{len(conversations)} conversations")
    seen: set[int] = set()
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            if id(result) in seen:
                results[index] = copy.copy(result)
            seen.add(id(result))
    return results


def first_or_raise(results: Sequence[Any]) -> Any:
    """The single result of a batch of one; its error is raised."""
    (result,) = results
    if isinstance(result, BaseException):
        raise result
    return result
