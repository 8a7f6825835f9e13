"""verl plugin (entry point group ``verl.plugins``): registers the ``imageedit_r1`` reward manager.

verl imports every ``verl.plugins`` entry point when it is itself imported, so with this package
installed ``reward.reward_manager.name=imageedit_r1`` is enough to train on ImageEdit-R1 rewards;
no ``custom_reward_function`` is needed. A configured custom reward function still wins.
This module imports verl, so it is kept apart from ``integrations/verl.py`` (the torch-free
``pkg://`` reward path).
"""

from __future__ import annotations

from functools import partial

from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
from verl.utils.reward_score import default_compute_score

from imageedit_r1.integrations.verl import compute_score as imageedit_compute_score

REWARD_MANAGER_NAME = "imageedit_r1"


@register(REWARD_MANAGER_NAME)
class ImageEditR1RewardManager(NaiveRewardManager):
    """verl's naive per-sample manager with ImageEdit-R1's reward as its default scorer."""

    def __init__(self, config, tokenizer, compute_score=None, **kwargs):
        # verl hands every manager its generic default scorer when none is configured.
        if compute_score is None or compute_score is default_compute_score:
            compute_score = imageedit_compute_score
        _check_weights_now(compute_score)
        super().__init__(config, tokenizer, compute_score, **kwargs)


# A perfect answer to itself: scoring it once validates the configured weights.
_PROBE = '<think>probe</think><action>["Removal"]</action><subjects>["car"]</subjects><goals>["empty road"]</goals>'


def _check_weights_now(compute_score) -> None:
    """Fail at start-up, not at the first reward step, when our scorer is configured with bad
    weights. verl binds ``reward_kwargs`` with ``functools.partial(call, fn, kwargs)``."""
    target = compute_score.args[0] if isinstance(compute_score, partial) and compute_score.args else compute_score
    if target is imageedit_compute_score:
        compute_score(data_source="imageedit_r1", solution_str=_PROBE, ground_truth=_PROBE)
