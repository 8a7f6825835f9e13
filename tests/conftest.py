import ast
import itertools
import os
import re
from pathlib import Path

import pytest

from tests.processes import Processes, end_listeners, leaked_listeners, listening_sockets

# Tests never reach a hub or a remote API.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _module_marks(path: Path) -> set[str]:
    """The markers a test module puts on all its tests (``pytestmark = ...``), read without importing it."""
    marks = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            for value in values:
                value = value.func if isinstance(value, ast.Call) else value
                if isinstance(value, ast.Attribute):
                    marks.add(value.attr)
    return marks


def pytest_ignore_collect(collection_path, config):
    """A module whose own marks deselect every test it could hold under ``-m`` is not imported at all.

    ``make test-fast`` (``-m "not slow ..."``) then never pays for importing torch, Ray, TRL or Gradio
    at collection for modules that are slow as a whole. The test is exact: the expression is false
    for the module's marks with every combination of the other markers it names that a test may add.
    """
    expression = config.getoption("markexpr")
    if not expression or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    try:
        from _pytest.mark.expression import Expression  # pytest's own -m evaluator

        compiled = Expression.compile(expression)
        marks = _module_marks(collection_path)
    except Exception:  # noqa: BLE001 - anything unexpected: collect the module as usual
        return None
    if not marks:
        return None
    # Only the names the expression reads can change its value: every combination of those.
    others = sorted(set(re.findall(r"[\w.-]+", expression)) - {"and", "or", "not"} - marks)
    for extra in itertools.product((False, True), repeat=len(others)):
        present = marks | {name for name, on in zip(others, extra, strict=True) if on}
        if compiled.evaluate(_has_mark(present)):
            return None
    return True


def _has_mark(present: set[str]):
    def matcher(name: str, /, **kwargs) -> bool:
        return name in present

    return matcher


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return  # torch is imported (seconds) only to decide about a test that needs CUDA
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch means no CUDA
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in gpu_items:
        item.add_marker(skip_gpu)


@pytest.fixture
def processes():
    """Start a test's child processes with their own signal handling (``tests/processes.py``); every
    one still running is ended when the test ends, whatever happened."""
    started = Processes()
    yield started
    started.stop_all()


_LISTENING_BEFORE = pytest.StashKey[set]()


def pytest_sessionstart(session):
    session.config.stash[_LISTENING_BEFORE] = listening_sockets()


def pytest_sessionfinish(session, exitstatus):
    """No server a test started may outlive the run: one still listening is named, ended, and fails it."""
    before = session.config.stash.get(_LISTENING_BEFORE, None)
    if before is None:
        return
    leaked = leaked_listeners(before)
    if not leaked:
        return
    end_listeners(leaked)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["a test left a server listening (ended now):"] + [
        f"  {s.address} held by pid {s.pid}: {s.command}" for s in sorted(leaked, key=lambda s: s.address)]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def easyr1_layout(tmp_path_factory) -> str:
    """A package laid out as EasyR1 installs (``verl.trainer.main``, no ``main_ppo``), first on the path.

    The trainer detection reads module names only; this environment holds upstream verl.
    """
    root = tmp_path_factory.mktemp("easyr1-layout")
    (root / "verl" / "trainer").mkdir(parents=True)
    for name in ("verl/__init__.py", "verl/trainer/__init__.py", "verl/trainer/main.py"):
        (root / name).write_text("")
    return str(root)


@pytest.fixture(scope="session")
def tiny_qwen25vl():
    """The tiny random-weight Qwen2.5-VL folder, built once per test process.

    Tests read it (load it, serve it, train from it, copy it); a test that changes a model copies it first.
    """
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    return build_tiny_qwen25vl()


@pytest.fixture(scope="session")
def tiny_flux_kontext():
    """The tiny random-weight FLUX.1-Kontext pipeline folder, built once per test process (read only)."""
    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext

    return build_tiny_flux_kontext()


@pytest.fixture(scope="session")
def tiny_qwen_image_edit():
    """The tiny random-weight Qwen-Image-Edit pipeline folder, built once per test process (read only)."""
    from imageedit_r1.testing.tiny_diffusion import build_tiny_qwen_image_edit

    return build_tiny_qwen_image_edit()
