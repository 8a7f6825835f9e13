"""verl plugin (entry point group ``verl.plugins``): registers the ``imageedit_r1`` reward manager.

verl imports every ``verl.plugins`` entry point when it is itself imported, so with this package
installed ``reward.reward_manager.name=imageedit_r1`` is enough to train on ImageEdit-R1 rewards;
no ``custom_reward_function`` is needed. A configured custom reward function still wins.
This module imports verl, so it is kept apart from ``integrations/verl.py`` (the torch-free
``pkg://`` reward path).
"""

from __future__ import annotations

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
        super().__init__(config, tokenizer, compute_score, **kwargs)
