#!/usr/bin/env bash
# The same GRPO run on TRL's GRPOTrainer (PyPI `trl`), launched through `accelerate`: for one GPU
# with LoRA, a quick start, or a Hugging Face stack. Sampling with transformers `generate`, or
# with vLLM (USE_VLLM=1).
#
#   bash recipes/run_grpo_qwen25vl_trl.sh [--dry-run] [key=value ...]
#
# Environment (defaults in brackets; the same names as recipes/run_grpo_qwen25vl.sh):
#   MODEL_PATH          [Qwen/Qwen2.5-VL-7B-Instruct]
#   TRAIN_FILES         [data/rl/trl/train.parquet]  from `python -m imageedit_r1.data export --format trl`
#   VAL_FILES           []      held-out TRL parquet; evaluated every EVAL_STEPS [5] steps when set
#   N_GPUS_PER_NODE     [8]     NNODES [1]   (0 GPUs: one CPU process, for smoke tests; see below)
#   ROLLOUT_BATCH_SIZE  [32]    prompts per policy update (x ROLLOUT_N completions)
#   MICRO_BATCH_SIZE    [8]     completions per GPU per forward/backward (per_device_train_batch_size)
#   ROLLOUT_N           [8]     TEMPERATURE [1.0]   LR [1e-6]   KL_COEF [1e-2]   TOTAL_EPOCHS [3]
#   MAX_RESPONSE_LENGTH [512]   max_completion_length (tokens per answer)
#   MAX_STEPS           []      stop after this many updates (overrides TOTAL_EPOCHS)
#   REWARD_FORMAT / REWARD_ACTION / REWARD_SUBJECT / REWARD_GOAL   [0.25 each] component weights
#   USE_LORA            [0]     1: train a LoRA adapter (peft; rank LORA_R [64]) instead of all weights
#   USE_VLLM            [0]     1: sample with vLLM, VLLM_MODE [colocate] (or server: run `trl vllm-serve` first)
#   ACCELERATE_CONFIG   []      accelerate config file; default on several GPUs: TRL's fsdp2.yaml
#                               (multi_gpu.yaml with LoRA)
#   PROJECT_NAME [imageedit_r1]   EXPERIMENT_NAME [qwen2_5_vl_7b_decompose_grpo_trl]
#   CHECKPOINT_DIR      [checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME]  checkpoint-N/, metrics.jsonl
#   CONFIG              [recipes/configs/grpo_qwen25vl_trl.yaml]
#   PYTHON              [python3]   SKIP_GPU_CHECK=1 skips the visible-GPU count check
# Extra key=value arguments become TRL flags (--key value), passed last, so they override everything
# above: any GRPOConfig or ModelConfig field (python -m imageedit_r1.train.trl_grpo --help).
#
# N_GPUS_PER_NODE=0 smoke-tests the recipe on a CPU, never to train: float32, one process, and
# unless set otherwise the sizes of a few-row export of a tiny model (ROLLOUT_BATCH_SIZE=2,
# ROLLOUT_N=4, MICRO_BATCH_SIZE=4, MAX_RESPONSE_LENGTH=64). docs/training.md has the whole run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

RECIPE="${BASH_SOURCE[0]}"
# shellcheck source=recipes/common.sh
source "$ROOT/recipes/common.sh"
parse_recipe_args "$@"

PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-$ROOT/recipes/configs/grpo_qwen25vl_trl.yaml}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-data/rl/trl/train.parquet}
VAL_FILES=${VAL_FILES:-}
EVAL_STEPS=${EVAL_STEPS:-5}
N_GPUS_PER_NODE=${N_GPUS_PER_NODE-8}
NNODES=${NNODES:-1}
if [ "$N_GPUS_PER_NODE" = 0 ]; then  # a CPU smoke test: one step must fit a few rows and a few seconds
  ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-2} ROLLOUT_N=${ROLLOUT_N:-4} MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-4}
  MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-64}
fi
ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-32}
MICRO_BATCH_SIZE=${MICRO_BATCH_SIZE:-8}
ROLLOUT_N=${ROLLOUT_N:-8}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-512}
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-1e-6}
KL_COEF=${KL_COEF:-1e-2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-3}
MAX_STEPS=${MAX_STEPS:-}
USE_LORA=${USE_LORA:-0}
LORA_R=${LORA_R:-64}
USE_VLLM=${USE_VLLM:-0}
VLLM_MODE=${VLLM_MODE:-colocate}
PROJECT_NAME=${PROJECT_NAME:-imageedit_r1}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-qwen2_5_vl_7b_decompose_grpo_trl}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}

TRAIN_FILES=$(absolute "$TRAIN_FILES")
if [ -n "$VAL_FILES" ]; then VAL_FILES=$(absolute "$VAL_FILES"); fi
MODEL_PATH=$(absolute "$MODEL_PATH")
case "$CHECKPOINT_DIR" in /*) ;; *) CHECKPOINT_DIR="$PWD/$CHECKPOINT_DIR" ;; esac

for name in N_GPUS_PER_NODE NNODES ROLLOUT_BATCH_SIZE MICRO_BATCH_SIZE ROLLOUT_N MAX_RESPONSE_LENGTH; do
  if ! [[ "${!name}" =~ ^[0-9]+$ ]]; then
    echo "error: $name must be a non-negative integer, got '${!name}'" >&2
    exit 2
  fi
done
# One generation batch (ROLLOUT_BATCH_SIZE prompts x ROLLOUT_N completions) makes one policy update:
# it is split over the processes and accumulated in micro-batches of MICRO_BATCH_SIZE completions.
PROCESSES=$(( N_GPUS_PER_NODE > 0 ? N_GPUS_PER_NODE * NNODES : 1 ))
COMPLETIONS=$(( ROLLOUT_BATCH_SIZE * ROLLOUT_N ))
if [ "$MICRO_BATCH_SIZE" -lt 1 ] || [ $(( COMPLETIONS % (MICRO_BATCH_SIZE * PROCESSES) )) -ne 0 ]; then
  echo "error: ROLLOUT_BATCH_SIZE x ROLLOUT_N ($COMPLETIONS completions) must be divisible by" \
    "MICRO_BATCH_SIZE x processes ($MICRO_BATCH_SIZE x $PROCESSES)" >&2
  exit 2
fi
GRAD_ACCUM=$(( COMPLETIONS / (MICRO_BATCH_SIZE * PROCESSES) ))

LAUNCH=("$PYTHON" -m accelerate.commands.launch --num_processes "$PROCESSES" --num_machines "$NNODES")
TRAINER=()
if [ "$N_GPUS_PER_NODE" = 0 ]; then
  LAUNCH+=(--cpu --mixed_precision no)
  TRAINER+=(--use_cpu true --bf16 false --dtype float32)
else
  if [ -z "${ACCELERATE_CONFIG:-}" ] && [ "$PROCESSES" -gt 1 ]; then
    TRL_DIR=$("$PYTHON" -c "import importlib.util; print(importlib.util.find_spec('trl').submodule_search_locations[0])")
    if [ "$USE_LORA" = 1 ]; then ACCELERATE_CONFIG=$TRL_DIR/accelerate_configs/multi_gpu.yaml
    else ACCELERATE_CONFIG=$TRL_DIR/accelerate_configs/fsdp2.yaml; fi
  fi
  if [ -n "${ACCELERATE_CONFIG:-}" ]; then LAUNCH+=(--config_file "$ACCELERATE_CONFIG"); fi
  LAUNCH+=(--mixed_precision bf16)
  if [ "$NNODES" -gt 1 ]; then
    LAUNCH+=(--machine_rank "${NODE_RANK:-0}" --main_process_ip "${MASTER_ADDR:?set MASTER_ADDR for several nodes}"
      --main_process_port "${MASTER_PORT:-29500}")
  fi
fi

CMD=(
  "${LAUNCH[@]}"
  -m imageedit_r1.train.trl_grpo
  --config "$CONFIG"
  --model_name_or_path "$MODEL_PATH"
  --train_files "$TRAIN_FILES"
  --output_dir "$CHECKPOINT_DIR"
  --run_name "$PROJECT_NAME/$EXPERIMENT_NAME"
  --num_generations "$ROLLOUT_N"
  --per_device_train_batch_size "$MICRO_BATCH_SIZE"
  --gradient_accumulation_steps "$GRAD_ACCUM"
  --temperature "$TEMPERATURE"
  --max_completion_length "$MAX_RESPONSE_LENGTH"
  --learning_rate "$LR"
  --beta "$KL_COEF"
  --num_train_epochs "$TOTAL_EPOCHS"
  --reward_weights "${REWARD_FORMAT:-0.25}" "${REWARD_ACTION:-0.25}" "${REWARD_SUBJECT:-0.25}" "${REWARD_GOAL:-0.25}"
)
if [ -n "$MAX_STEPS" ]; then CMD+=(--max_steps "$MAX_STEPS"); fi
if [ -n "$VAL_FILES" ]; then
  CMD+=(--val_files "$VAL_FILES" --eval_strategy steps --eval_steps "$EVAL_STEPS"
    --per_device_eval_batch_size "$MICRO_BATCH_SIZE")
fi
if [ "$USE_LORA" = 1 ]; then CMD+=(--use_peft true --lora_r "$LORA_R" --lora_alpha $(( 2 * LORA_R ))); fi
if [ "$USE_VLLM" = 1 ]; then CMD+=(--use_vllm true --vllm_mode "$VLLM_MODE"); fi
CMD+=(${TRAINER[@]+"${TRAINER[@]}"})
for kv in ${EXTRA[@]+"${EXTRA[@]}"}; do
  CMD+=("--${kv%%=*}" "${kv#*=}")
done

require_package trl accelerate
CHECK=("$PYTHON" -m imageedit_r1.train preflight trl)
if [ "$DRY_RUN" = 1 ]; then CHECK+=(--dry-run); fi
if [ "${SKIP_GPU_CHECK:-0}" = 1 ]; then CHECK+=(--no-gpu-check); fi
"${CHECK[@]}" -- "${CMD[@]}"

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi
mkdir -p "$CHECKPOINT_DIR"
exec "${CMD[@]}"
