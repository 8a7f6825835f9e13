"""EasyR1 batch reward: ``compute_score(reward_inputs, **weights) -> list[dict]``.

EasyR1 loads ``reward_fns/imageedit_r1.py`` by file path and binds
``worker.reward.reward_function_kwargs`` as keyword arguments; each input dict carries only
``response``, ``response_length`` and ``ground_truth`` (the dataset's ``answer`` column).
Every returned dict has the same keys, with ``overall`` first, so EasyR1 logs
``reward/overall``, ``reward/format``, ``reward/action``, ``reward/subject``, ``reward/goal``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from imageedit_r1.rewards import resolve_weights, score


def compute_score(reward_inputs: Sequence[Mapping], **weights: float) -> list[dict[str, float]]:
    if not isinstance(reward_inputs, Sequence) or isinstance(reward_inputs, (str, bytes)):
        raise TypeError("EasyR1 batch reward expects a list of dicts with 'response' and 'ground_truth'")
    resolved = resolve_weights(weights)
    results = []
    for index, item in enumerate(reward_inputs):
        try:
            response, ground_truth = item["response"], item["ground_truth"]
        except (KeyError, TypeError) as exc:
            raise KeyError(f"reward input #{index} lacks {exc}; it has {sorted(item) if isinstance(item, Mapping) else type(item).__name__}") from exc
        try:
            results.append(score(response, ground_truth, resolved))
        except ValueError as exc:
            raise ValueError(f"reward input #{index}: {exc}") from exc
    return results
