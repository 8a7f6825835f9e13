"""Is a model there? A local folder, a Hugging Face cache entry, or a hub that answers. Can the
hub be reached at all (a dataset read from it streams every row from there)?

Without this check an offline run that names a hub id (``Qwen/Qwen2.5-VL-7B-Instruct``, the
default decomposer) spends minutes in the hub client's retries before it fails. ``model_problem``
answers in well under a second on a machine with no network (a refused connection) and in at
most ``timeout`` seconds where packets are dropped, and says how to fix it.
"""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from urllib.parse import urlparse

# ``owner/name``: what the hub client would try to download.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Files a hub snapshot of a model has at its root: transformers (config.json), diffusers (model_index.json).
_ROOT_FILES = ("config.json", "model_index.json")


def is_hub_id(model: str) -> bool:
    """``owner/name`` that is not a path on this machine."""
    return bool(_HUB_ID.match(model)) and not os.path.exists(model)


def is_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache (HF_HOME / HF_HUB_CACHE) holds a snapshot of ``repo_id``."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in _ROOT_FILES)


@lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (HF_ENDPOINT) opens within ``timeout`` seconds.

    False at once when HF_HUB_OFFLINE is set. Cached per process: asked once per run.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(endpoint or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def offline_reason() -> str | None:
    """Why the hub cannot be reached from this process, or None when it can. Asked once per run
    (``hub_reachable`` is cached): every later check answers at once."""
    from huggingface_hub import constants

    if hub_reachable():
        return None
    return "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} cannot be reached"


def model_problem(model: str, *, setting: str, what: str = "model") -> str | None:
    """None when ``model`` can be loaded here; else one line saying why and how to fix it.

    ``model`` is a local folder or a hub id; ``setting`` is the config key that names it (the
    message tells the user to point it at a folder).
    """
    model = str(model or "").strip()
    if not model:
        return f"{setting} is empty: set it to a hub id or a local model folder"
    if os.path.isdir(model):
        return None
    if os.path.exists(model):
        return f"{setting}: {model} is a file, not a model folder"
    if not is_hub_id(model):
        return f"{setting}: model folder not found: {model}"
    if is_cached(model):
        return None
    why = offline_reason()
    if why is None:
        return None
    from huggingface_hub import constants

    return (
        f"the {what} {model!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}: "
        f"download it first (`hf download {model}` where the hub is reachable, then copy the cache here) "
        f"or set {setting}=/path/to/a/local/folder"
    )
