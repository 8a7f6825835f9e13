import os

import pytest

# Tests never reach a hub or a remote API.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch means no CUDA
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


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
