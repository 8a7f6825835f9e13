"""Check a training launch before it starts: config keys, batch arithmetic, files, GPUs.

A bad launch on a GPU cluster costs minutes of Ray start-up and model loading before the trainer
notices a typo or an indivisible batch. These checks mirror the trainers' own constraints and run
in about a second (EasyR1) or the time of one hydra composition (verl). One module per trainer
(``easyr1``, ``verl``, ``trl``) over the checks they share (``common``); ``python -m
imageedit_r1.train preflight {easyr1,verl,trl}`` runs them.
"""

from imageedit_r1.train.preflight.common import PreflightError, Report, check_reward_weights, visible_gpus
from imageedit_r1.train.preflight.easyr1 import (
    EASYR1_KEYS_FILE,
    KeySet,
    check_easyr1,
    easyr1_keys,
    load_easyr1_config,
    unknown_easyr1_keys,
)
from imageedit_r1.train.preflight.trl import check_trl
from imageedit_r1.train.preflight.verl import check_verl, compose_verl_config

__all__ = [
    "EASYR1_KEYS_FILE",
    "KeySet",
    "PreflightError",
    "Report",
    "check_easyr1",
    "check_reward_weights",
    "check_trl",
    "check_verl",
    "compose_verl_config",
    "easyr1_keys",
    "load_easyr1_config",
    "unknown_easyr1_keys",
    "visible_gpus",
]
