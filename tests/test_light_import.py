import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "diffusers", "vllm", "openai", "google.genai", "datasets", "verl", "numpy", "gradio",
         "trl", "ray", "fastapi")


@pytest.mark.parametrize(
    "statement",
    [
        "import imageedit_r1",
        "import imageedit_r1.rewards",
        "import imageedit_r1.pipeline",
        "import imageedit_r1.app",
        "import imageedit_r1.serve",
        "import imageedit_r1.serve.config",
        "import imageedit_r1.serve.__main__",
        "import imageedit_r1.integrations.verl",
        "import imageedit_r1.integrations.easyr1",
        "import imageedit_r1.integrations.trl",
        "import imageedit_r1.train.trl_grpo",
        "import runpy; runpy.run_path('reward_fns/imageedit_r1.py')",
    ],
)
def test_the_package_and_the_reward_path_import_nothing_heavy(statement):
    code = f"{statement}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_root())
    assert out.stdout.strip() == "", f"{statement} imported: {out.stdout.strip()}"


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]
