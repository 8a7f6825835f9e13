"""Upstream verl reward: ``reward.custom_reward_function.path=pkg://imageedit_r1.integrations.verl``.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)``
per response; a dict return must contain ``score`` (the scalar used for the advantage) and may carry
more metrics, logged under their own names. Component weights come from
``reward.custom_reward_function.reward_kwargs`` as keyword arguments (format, action, subject, goal).
This module imports no torch and no verl: verl only needs the function.
"""

from __future__ import annotations

from collections.abc import Mapping

from imageedit_r1.rewards import resolve_weights, score

# Keyword arguments verl itself adds to a reward call (when a reward model serves beside the
# rollout); every other keyword argument is a weight from reward_kwargs and is validated.
VERL_RUNTIME_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


def reward_weights(kwargs: Mapping) -> dict[str, float]:
    """The validated weights among a verl reward call's keyword arguments (``resolve_weights``:
    ``goals=0`` is an error naming ``goal``, never silently ignored)."""
    return resolve_weights({name: value for name, value in kwargs.items() if name not in VERL_RUNTIME_KWARGS})


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: str | Mapping,
    extra_info: Mapping | None = None,
    **kwargs,
) -> dict[str, float]:
    weights = {name: value for name, value in kwargs.items() if name not in VERL_RUNTIME_KWARGS}
    result = score(solution_str, ground_truth, weights or None)  # validated once per distinct weights
    return {"score": result["overall"], **result}
