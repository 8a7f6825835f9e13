"""TRL ``GRPOTrainer`` rewards: one function per component, in TRL's calling convention.

TRL calls each reward function as ``f(prompts=…, completions=…, completion_ids=…, **columns)``,
where ``columns`` are the dataset's other columns, one value per completion (our TRL export has
``ground_truth``), plus ``trainer_state``, ``log_extra`` and ``log_metric``. It expects one float
per completion, logs each function under ``rewards/<name>/mean`` and ``…/std``, and sums them
with ``GRPOConfig.reward_weights`` into ``reward``, the scalar whose group-relative advantage
drives the update.

So the four components are four functions named ``format``, ``action``, ``subject`` and ``goal``
(``REWARD_FUNCS``, in ``rewards.COMPONENTS`` order). Each returns its component of
``imageedit_r1.rewards.score`` (the same rules as the EasyR1 and verl paths, not a copy), and
``reward_weights()`` turns the project's weights into TRL's list, normalised to sum to 1 so that
TRL's logged ``reward`` equals the project's ``overall``.

Completions come in TRL's two shapes: plain strings (standard prompts), or conversations, a list
of messages whose last assistant message holds the text, as a string or as content blocks
(conversational prompts, which vision-language data always is).

This module imports no torch and no TRL: TRL only needs the callables. With TRL's own
``trl grpo`` script they load by dotted path, e.g.
``--reward_funcs imageedit_r1.integrations.trl.format_reward imageedit_r1.integrations.trl.action_reward …``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from imageedit_r1.rewards import COMPONENTS, resolve_weights, score

GROUND_TRUTH_COLUMN = "ground_truth"


def completion_text(completion: Any) -> str:
    """The response text of one TRL completion (a string, or a list of chat messages).

    Raises ``TypeError`` for any other shape (a wiring bug, not a model output).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        replies = [m for m in completion if m.get("role", "assistant") == "assistant"]
        if not replies:
            return ""
        return _content_text(replies[-1].get("content"))
    raise TypeError(
        "a TRL completion is a string or a list of chat messages ({'role': 'assistant', 'content': …}); "
        f"got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # content blocks: keep the text ones, in order
        return "".join(
            str(block.get("text") or "")
            for block in content
            if isinstance(block, Mapping) and block.get("type", "text") == "text"
        )
    raise TypeError(f"message content must be a string or a list of content blocks, got {type(content).__name__}")


def _truth_key(ground_truth: Any) -> str:
    if isinstance(ground_truth, Mapping):
        return json.dumps(dict(ground_truth), sort_keys=True, ensure_ascii=False)
    if isinstance(ground_truth, (bytes, bytearray)):
        return ground_truth.decode("utf-8")
    if isinstance(ground_truth, str):
        return ground_truth
    raise ValueError(f"ground truth must be a JSON string or a dict, got {type(ground_truth).__name__}")


@lru_cache(maxsize=8192)
def _components(response: str, truth: str) -> dict[str, float]:
    # TRL calls the four functions on the same completions one after another: score each once.
    return score(response, truth)


class ComponentReward:
    """One reward component as a TRL reward function; ``__name__`` is what TRL logs it as."""

    def __init__(self, component: str) -> None:
        if component not in COMPONENTS:
            raise ValueError(f"unknown reward component {component!r}; expected one of {list(COMPONENTS)}")
        self.component = component
        self.__name__ = component
        self.__qualname__ = component

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float]:
        """One score in [0, 1] per completion.

        Raises ``KeyError`` when the dataset has no ``ground_truth`` column, ``ValueError`` for a
        malformed ground truth or a column of the wrong length; never for a completion's text.
        """
        if GROUND_TRUTH_COLUMN not in columns:
            present = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))
            raise KeyError(
                f"the '{self.component}' reward needs the dataset column {GROUND_TRUTH_COLUMN!r} (TRL passes "
                f"dataset columns as keyword arguments); columns present: {present}. Export the data with "
                "`python -m imageedit_r1.data export --format trl`."
            )
        truths = columns[GROUND_TRUTH_COLUMN]
        if len(truths) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(truths)} ground truths")
        results = []
        for index, (completion, truth) in enumerate(zip(completions, truths, strict=True)):
            try:
                results.append(_components(completion_text(completion), _truth_key(truth))[self.component])
            except ValueError as exc:
                raise ValueError(f"completion #{index}: {exc}") from exc
        return results

    def __repr__(self) -> str:
        return f"ComponentReward({self.component!r})"

    def __reduce__(self):  # pickled by component name (multi-process launchers copy the trainer's args)
        return (ComponentReward, (self.component,))


format_reward = ComponentReward("format")
action_reward = ComponentReward("action")
subject_reward = ComponentReward("subject")
goal_reward = ComponentReward("goal")
REWARD_FUNCS: tuple[ComponentReward, ...] = (format_reward, action_reward, subject_reward, goal_reward)


def reward_funcs() -> list[ComponentReward]:
    """The four component rewards in ``rewards.COMPONENTS`` order, for ``GRPOTrainer(reward_funcs=…)``."""
    return list(REWARD_FUNCS)


def reward_weights(weights: Mapping[str, float] | Sequence[float] | None = None) -> list[float]:
    """``GRPOConfig.reward_weights`` for ``reward_funcs()``: the project's weights, normalised to sum to 1.

    ``weights`` names components (missing ones keep their default, 0.25), or lists one weight per
    component in ``rewards.COMPONENTS`` order (format, action, subject, goal). Validated by
    ``rewards.resolve_weights``: unknown names and negative or all-zero weights raise ``ValueError``.
    """
    if weights is not None and not isinstance(weights, Mapping):
        values = list(weights)
        if len(values) != len(COMPONENTS):
            raise ValueError(
                f"reward weights: expected {len(COMPONENTS)} values in the order {list(COMPONENTS)}, got {values}"
            )
        weights = dict(zip(COMPONENTS, values, strict=True))
    resolved = resolve_weights(weights)
    total = sum(resolved.values())
    return [resolved[name] / total for name in COMPONENTS]
