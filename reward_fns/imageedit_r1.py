# EasyR1 reward file for ImageEdit-R1's decomposition agent.
#
#   worker.reward.reward_function=./reward_fns/imageedit_r1.py:compute_score
#   worker.reward.reward_function_kwargs='{"format": 0.25, "action": 0.25, "subject": 0.25, "goal": 0.25}'
#
# EasyR1 loads this file by path, so it imports the installed package instead of relative modules.
from imageedit_r1.integrations.easyr1 import compute_score

REWARD_NAME = "imageedit_r1"
REWARD_TYPE = "batch"

__all__ = ["REWARD_NAME", "REWARD_TYPE", "compute_score"]
