#!/usr/bin/env bash
# .venv-easyr1: EasyR1, the paper's GRPO trainer, outside Docker, for recipes/run_grpo_qwen25vl.sh.
#
#   bash scripts/setup_easyr1.sh [--dry-run]      (make setup-easyr1)
#
# The same stack as the Dockerfile's EasyR1 stage, read from the same places: the packages of
# recipes/easyr1-requirements.txt (torch 2.8.0, vLLM 0.11.0, transformers 4.x), flash-attn's release
# wheel at the Dockerfile's FLASH_ATTN_VERSION, and EasyR1 cloned from its public repository
# (EASYR1_REPO) at the Dockerfile's EASYR1_COMMIT, installed without dependencies. Then this package
# (editable, base dependencies only: the trainer stack owns torch and transformers).
#
# It needs network access to PyPI and GitHub, Linux on x86_64, Python 3.10-3.12, and, to train, NVIDIA
# GPUs with a CUDA 12 driver (EasyR1 cannot run on a CPU). EasyR1 installs a package named `verl`,
# as upstream verl does: it gets an environment of its own, never the project's .venv.
# About 15 GB; re-running only checks.
#
# Environment: PYTHON [python3] the interpreter that makes the venv
#              EASYR1_VENV [.venv-easyr1]   EASYR1_DIR [$EASYR1_VENV/src/EasyR1] where EasyR1 is cloned
#              EASYR1_REPO [the Dockerfile's] a mirror of EasyR1's repository (the commit stays the Dockerfile's)
# --dry-run prints what it would run, changing nothing.
set -euo pipefail
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SCRIPT")/.."

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (options: --dry-run, --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
VENV=${EASYR1_VENV:-.venv-easyr1}
EASYR1_DIR=${EASYR1_DIR:-$VENV/src/EasyR1}
REQUIREMENTS=recipes/easyr1-requirements.txt
# The pins live in the Dockerfile: one image and one venv, the same EasyR1.
dockerfile_arg() { sed -n "s/^ARG $1=//p" Dockerfile | head -n 1; }
EASYR1_REPO=${EASYR1_REPO:-$(dockerfile_arg EASYR1_REPO)}  # a mirror of it may stand in
EASYR1_COMMIT=$(dockerfile_arg EASYR1_COMMIT)
FLASH_ATTN_VERSION=$(dockerfile_arg FLASH_ATTN_VERSION)
if [ -z "$EASYR1_REPO" ] || [ -z "$EASYR1_COMMIT" ] || [ -z "$FLASH_ATTN_VERSION" ]; then
  echo "error: the Dockerfile names no EASYR1_REPO, EASYR1_COMMIT or FLASH_ATTN_VERSION (ARG lines)" >&2
  exit 2
fi

run() {  # a step: printed, and run unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

STAMP="$VENV/imageedit-r1-setup.txt"
WANT="EasyR1 $EASYR1_COMMIT, flash-attn $FLASH_ATTN_VERSION, $(cat "$SCRIPT" "$REQUIREMENTS" pyproject.toml | sha256sum | cut -c1-16), $PWD"
if [ "$DRY_RUN" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "
import importlib.util, sys
sys.exit(importlib.util.find_spec('verl.trainer.main') is None or importlib.util.find_spec('imageedit_r1') is None)
" >/dev/null 2>&1; then
  echo "setup_easyr1: $VENV is up to date (EasyR1 $EASYR1_COMMIT)"
  exit 0
fi

# What cannot work here is said before anything is downloaded.
if ! "$PY" -c "import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))" 2>/dev/null; then
  echo "error: $PY is Python $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo '?'):" \
    "EasyR1's stack (torch 2.8, vLLM 0.11, flash-attn $FLASH_ATTN_VERSION wheels) needs 3.10, 3.11 or 3.12;" \
    "set PYTHON to such an interpreter" >&2
  exit 2
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "error: EasyR1's stack ships for Linux on x86_64 (this is $(uname -s) $(uname -m)); use the Docker" \
    "image on a training machine (docker build -t imageedit-r1:easyr1 .)" >&2
  exit 2
fi
if ! command -v git >/dev/null 2>&1; then
  echo "error: git is needed to clone EasyR1 from $EASYR1_REPO" >&2
  exit 2
fi
if [ "$DRY_RUN" = 0 ]; then
  # EasyR1's repository and flash-attn's wheel (a package index may be a mirror: pip says so itself).
  for host in "$(echo "$EASYR1_REPO" | sed -E 's#^[a-z]+://([^/]+)/.*#\1#')" github.com; do
    if ! "$PY" -c "import socket, sys; socket.create_connection((sys.argv[1], 443), timeout=5).close()" "$host" \
        2>/dev/null; then
      echo "error: cannot reach $host: EasyR1 and flash-attn are installed from their public repositories. Run" \
        "\`make setup-easyr1\` where the network is reachable, or build the Docker image there" >&2
      exit 2
    fi
  done
fi

if [ ! -x "$VENV/bin/python" ]; then
  run "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install)
run "${PIP[@]}" --upgrade pip
run "${PIP[@]}" -r "$REQUIREMENTS"
# flash-attn's wheel for this torch, C++ ABI and Python, as the Dockerfile picks it.
if [ "$DRY_RUN" = 0 ]; then
  TAGS=$("$VENV/bin/python" -c "
import sys, torch
abi = 'TRUE' if torch._C._GLIBCXX_USE_CXX11_ABI else 'FALSE'
print('.'.join(torch.__version__.split('.')[:2]), abi, f'cp{sys.version_info.major}{sys.version_info.minor}')")
  read -r TORCH_MINOR ABI PYTAG <<< "$TAGS"
else
  TORCH_MINOR="<torch major.minor>" ABI="<TRUE|FALSE>" PYTAG="<cpXY>"
fi
WHEEL="flash_attn-${FLASH_ATTN_VERSION}+cu12torch${TORCH_MINOR}cxx11abi${ABI}-${PYTAG}-${PYTAG}-linux_x86_64.whl"
run "${PIP[@]}" "https://github.com/Dao-AILab/flash-attention/releases/download/v${FLASH_ATTN_VERSION}/${WHEEL}"

if [ ! -d "$EASYR1_DIR/.git" ]; then
  run git clone "$EASYR1_REPO" "$EASYR1_DIR"
fi
run git -C "$EASYR1_DIR" fetch --quiet origin
run git -C "$EASYR1_DIR" checkout --quiet "$EASYR1_COMMIT"
run "${PIP[@]}" --no-deps -e "$EASYR1_DIR"
# This package for the recipe's checks and the reward: the base dependencies only, as in the image.
run "${PIP[@]}" --no-deps -e .
run "${PIP[@]}" "jinja2>=3.1" "omegaconf>=2.3" "pillow>=10.0" "tqdm>=4.66" "matplotlib>=3.8"

if [ "$DRY_RUN" = 1 ]; then
  echo "setup_easyr1: dry run, nothing changed"
  exit 0
fi
"$VENV/bin/python" - <<'PY'
import importlib.util

import torch
import transformers
import vllm

assert importlib.util.find_spec("verl.trainer.main") is not None, "EasyR1's entry point verl.trainer.main is missing"
assert importlib.util.find_spec("verl.trainer.main_ppo") is None, "upstream verl is installed here, not EasyR1"
import imageedit_r1.rewards  # noqa: F401 - the reward file imports it
import imageedit_r1.train.preflight  # noqa: F401 - the recipe's checks

print(f"EasyR1 (verl.trainer.main), torch {torch.__version__}, vLLM {vllm.__version__}, "
      f"transformers {transformers.__version__}: ok")
PY
echo "$WANT" > "$STAMP"
echo "setup_easyr1: ready. bash recipes/run_grpo_qwen25vl.sh uses $VENV/bin/python when PYTHON is not set;" \
  "export with --python $VENV/bin/python --easyr1-dir $EASYR1_DIR"
