"""``make setup-easyr1`` (scripts/setup_easyr1.sh): what can be checked without the network it needs.

It installs EasyR1 at the Dockerfile's pinned commit from its public repository; CI does not run it.
These tests run its argument handling, its dry run (every step, from the Dockerfile's pins) and its
refusals, each before anything is created or downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup_easyr1.sh"


def dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)


def setup(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_dry_run_lists_every_step_from_the_dockerfiles_pins_and_creates_nothing(tmp_path):
    venv = tmp_path / "venv-easyr1"
    result = setup("--dry-run", EASYR1_VENV=str(venv))
    assert result.returncode == 0, result.stderr
    steps = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    commit, repo, flash = (dockerfile_arg(n) for n in ("EASYR1_COMMIT", "EASYR1_REPO", "FLASH_ATTN_VERSION"))
    source = f"{venv}/src/EasyR1"
    assert steps[0].endswith(f"-m venv {venv}")
    assert f"{venv}/bin/python -m pip install -r recipes/easyr1-requirements.txt" in steps
    assert any(f"flash-attention/releases/download/v{flash}/flash_attn-{flash}+cu12torch" in s for s in steps)
    assert steps.index(f"git clone {repo} {source}") < steps.index(f"git -C {source} checkout --quiet {commit}")
    assert f"{venv}/bin/python -m pip install --no-deps -e {source}" in steps
    assert f"{venv}/bin/python -m pip install --no-deps -e ." in steps  # this package, over the trainer's stack
    assert result.stdout.rstrip().endswith("setup_easyr1: dry run, nothing changed")
    assert not venv.exists()


def test_the_docker_image_and_the_venv_install_the_same_list():
    stage = (ROOT / "Dockerfile").read_text().split(" AS trainer-easyr1\n", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY recipes/easyr1-requirements.txt /tmp/easyr1-requirements.txt" in stage
    assert "pip install -r /tmp/easyr1-requirements.txt" in stage
    assert '"vllm==' not in stage  # no second list to drift
    requirements = (ROOT / "recipes" / "easyr1-requirements.txt").read_text().split()
    assert "torch==2.8.0" in requirements and "vllm==0.11.0" in requirements
    assert "transformers>=4.54.0,<5.0.0" in requirements  # EasyR1 at the pin needs transformers 4


def test_without_the_network_it_stops_at_once_saying_where_to_run_it(tmp_path):
    venv = tmp_path / "venv-easyr1"
    started = time.monotonic()
    result = setup(EASYR1_VENV=str(venv), EASYR1_REPO="https://127.0.0.1:9/hiyouga/EasyR1.git")
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: cannot reach 127.0.0.1:9: EasyR1 and flash-attn are installed from their public repositories. "
        "Run `make setup-easyr1` where the network is reachable, or build the Docker image there")
    assert not venv.exists()


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--bogus"], {}, "error: unknown argument --bogus (options: --dry-run, --help)"),
    ([], {"PYTHON": "/bin/false"}, "needs 3.10, 3.11 or 3.12; set PYTHON to such an interpreter"),
])
def test_bad_arguments_and_interpreters_are_one_line(tmp_path, args, env, message):
    result = setup(*args, EASYR1_VENV=str(tmp_path / "venv"), **env)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "venv").exists()


def test_help_says_what_it_installs():
    result = setup("--help")
    assert result.returncode == 0
    for words in ("EASYR1_COMMIT", "recipes/easyr1-requirements.txt", "network access", "--dry-run"):
        assert words in result.stdout
