# Shared by the GRPO recipes (sourced, not run): argument parsing, path and environment checks.
# Expects ROOT (the repository root) and RECIPE (the recipe's own path, for --help) to be set.

# --dry-run, --help, and key=value overrides passed to the trainer last (into EXTRA).
DRY_RUN=0
EXTRA=()
parse_recipe_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) sed -n '2,/^set -euo/p' "$RECIPE" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      -*) echo "error: unknown option $arg (options: --dry-run, --help; everything else is key=value)" >&2; exit 2 ;;
      *=*) EXTRA+=("$arg") ;;
      *) echo "error: expected key=value, got '$arg'" >&2; exit 2 ;;
    esac
  done
}

# Ray actors may not share this shell's working directory: hand them absolute local paths.
absolute() { if [ -e "$1" ]; then echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; else echo "$1"; fi; }

# The checks and the trainer run in $PYTHON: it needs this package and its dependencies
# (plus any module named as an argument, e.g. `require_package trl accelerate`).
require_package() {
  if ! "$PYTHON" -c "import imageedit_r1.train.preflight, omegaconf" 2>/dev/null; then
    echo "error: $PYTHON cannot import imageedit_r1 and its dependencies: run 'pip install -e $ROOT' in the" \
      "training environment, or set PYTHON to that environment's interpreter" >&2
    exit 2
  fi
  local module
  for module in "$@"; do
    if ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" 2>/dev/null; then
      echo "error: $PYTHON cannot import $module: install it (e.g. pip install -e '$ROOT[trl]')," \
        "or set PYTHON to the training environment's interpreter" >&2
      exit 2
    fi
  done
}

# The image budget (imageedit_r1/image_budget.py; IMAGE_MIN_PIXELS / IMAGE_MAX_PIXELS override it) and
# the max_prompt_length derived from it: sets MIN_PIXELS, MAX_PIXELS, MAX_IMAGE_TOKENS, MAX_PROMPT_LENGTH.
load_image_budget() {
  local args=() values
  if [ -n "${IMAGE_MIN_PIXELS:-}" ]; then args+=(--min-pixels "$IMAGE_MIN_PIXELS"); fi
  if [ -n "${IMAGE_MAX_PIXELS:-}" ]; then args+=(--max-pixels "$IMAGE_MAX_PIXELS"); fi
  values=$("$PYTHON" -m imageedit_r1.train budget --shell ${args[@]+"${args[@]}"}) || exit 2
  eval "$values"
}
