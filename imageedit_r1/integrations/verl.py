"""Upstream verl reward: ``reward.custom_reward_function.path=pkg://imageedit_r1.integrations.verl``.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)``
per response; a dict return must contain ``score`` (the scalar used for the advantage) and may carry
more metrics, logged under their own names. Component weights come from
``reward.custom_reward_function.reward_kwargs`` as keyword arguments (format, action, subject, goal).
This module imports no torch and no verl: verl only needs the function.
"""

from __future__ import annotations

from collections.abc import Mapping

from imageedit_r1.rewards import COMPONENTS, score


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str | Mapping,
    extra_info: Mapping | None = None,
    **kwargs,
) -> dict[str, float]:
    weights = {name: kwargs[name] for name in COMPONENTS if name in kwargs}
    result = score(solution_str, ground_truth, weights or None)
    return {"score": result["overall"], **result}
