#!/usr/bin/env bash
# GRPO training of the ImageEdit-R1 decomposition agent on EasyR1 (the paper's setting by default).
#
#   bash recipes/run_grpo_qwen25vl.sh [--dry-run] [key=value ...]
#
# Environment (defaults in brackets):
#   MODEL_PATH          [Qwen/Qwen2.5-VL-7B-Instruct]  hub id or local directory
#   TRAIN_FILES         [data/rl/easyr1/train.parquet] EasyR1 files from `python -m imageedit_r1.data export`
#   VAL_FILES           [data/rl/easyr1/val.parquet]   held-out split used for validation
#   IMAGE_DIR           []                             prefix for relative image paths in the data
#   N_GPUS_PER_NODE     [8]     NNODES [1]
#   ROLLOUT_BATCH_SIZE  [32]    prompts per rollout step
#   GLOBAL_BATCH_SIZE   [32]    prompts per actor update (EasyR1 multiplies it by ROLLOUT_N)
#   ROLLOUT_N           [8]     TEMPERATURE [1.0]   LR [1e-6]   KL_COEF [1e-2]   TOTAL_EPOCHS [3]
#   REWARD_WEIGHTS      ['{"format":0.25,"action":0.25,"subject":0.25,"goal":0.25}']
#   PROJECT_NAME [imageedit_r1]   EXPERIMENT_NAME [qwen2_5_vl_7b_decompose_grpo]
#   CHECKPOINT_DIR      [checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME]   (experiment_log.jsonl goes here too)
#   CONFIG              [recipes/configs/grpo_qwen25vl.yaml]
#   IMAGE_MIN_PIXELS / IMAGE_MAX_PIXELS  [262144 / 1003520]  the image budget (export with the same one);
#                       data.max_prompt_length is derived from it and the prompt
#   PYTHON              [.venv-easyr1/bin/python when it exists (make setup-easyr1), else python3]
#   SKIP_GPU_CHECK=1 skips the visible-GPU count check
# Extra key=value arguments are passed to EasyR1 last, so they override everything above.
# --dry-run prints the command it would run, then every problem the checks find (exit status 2 if any).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

RECIPE="${BASH_SOURCE[0]}"
# shellcheck source=recipes/common.sh
source "$ROOT/recipes/common.sh"
parse_recipe_args "$@"

# EasyR1 installs as `verl`, like upstream verl: it lives in an environment of its own.
if [ -z "${PYTHON:-}" ] && [ -x "$ROOT/.venv-easyr1/bin/python" ]; then PYTHON=$ROOT/.venv-easyr1/bin/python; fi
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-$ROOT/recipes/configs/grpo_qwen25vl.yaml}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-data/rl/easyr1/train.parquet}
VAL_FILES=${VAL_FILES:-data/rl/easyr1/val.parquet}
IMAGE_DIR=${IMAGE_DIR:-}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE-8}
NNODES=${NNODES:-1}
ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-32}
GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-32}
ROLLOUT_N=${ROLLOUT_N:-8}
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-1e-6}
KL_COEF=${KL_COEF:-1e-2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-3}
REWARD_WEIGHTS=${REWARD_WEIGHTS:-'{"format":0.25,"action":0.25,"subject":0.25,"goal":0.25}'}
PROJECT_NAME=${PROJECT_NAME:-imageedit_r1}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-qwen2_5_vl_7b_decompose_grpo}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}

TRAIN_FILES=$(absolute "$TRAIN_FILES")
VAL_FILES=$(absolute "$VAL_FILES")
MODEL_PATH=$(absolute "$MODEL_PATH")
if [ -n "$IMAGE_DIR" ]; then IMAGE_DIR=$(absolute "$IMAGE_DIR"); fi

if [ -z "$N_GPUS_PER_NODE" ]; then
  echo "error: N_GPUS_PER_NODE is empty: set it to the number of GPUs on each node" >&2
  exit 2
fi

require_package
load_image_budget

CMD=(
  "$PYTHON" -m verl.trainer.main
  config="$CONFIG"
  data.train_files="$TRAIN_FILES"
  data.val_files="$VAL_FILES"
  data.rollout_batch_size="$ROLLOUT_BATCH_SIZE"
  data.format_prompt="$ROOT/imageedit_r1/prompts/decompose.jinja"
  data.min_pixels="$MIN_PIXELS"
  data.max_pixels="$MAX_PIXELS"
  data.max_prompt_length="$MAX_PROMPT_LENGTH"
  worker.actor.model.model_path="$MODEL_PATH"
  worker.actor.global_batch_size="$GLOBAL_BATCH_SIZE"
  worker.actor.optim.lr="$LR"
  worker.rollout.n="$ROLLOUT_N"
  worker.rollout.temperature="$TEMPERATURE"
  algorithm.kl_coef="$KL_COEF"
  worker.reward.reward_function="$ROOT/reward_fns/imageedit_r1.py:compute_score"
  worker.reward.reward_function_kwargs="$REWARD_WEIGHTS"
  trainer.n_gpus_per_node="$N_GPUS_PER_NODE"
  trainer.nnodes="$NNODES"
  trainer.total_epochs="$TOTAL_EPOCHS"
  trainer.project_name="$PROJECT_NAME"
  trainer.experiment_name="$EXPERIMENT_NAME"
  trainer.save_checkpoint_path="$CHECKPOINT_DIR"
)
if [ -n "$IMAGE_DIR" ]; then
  CMD+=(data.image_dir="$IMAGE_DIR")
fi
CMD+=(${EXTRA[@]+"${EXTRA[@]}"})

CHECK=("$PYTHON" -m imageedit_r1.train preflight easyr1)
if [ "$DRY_RUN" = 1 ]; then CHECK+=(--dry-run); fi
if [ "${SKIP_GPU_CHECK:-0}" = 1 ]; then CHECK+=(--no-gpu-check); fi
"${CHECK[@]}" -- "${CMD[@]}"

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi
exec "${CMD[@]}"
