"""YAML configs with dotlist overrides (the EasyR1 / verl convention), over dataclass defaults."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def load_config(schema: type[T] | None, path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Any:
    """Merge ``schema`` defaults ← YAML file ← ``key=value`` overrides; unknown keys are errors.

    Returns an instance of ``schema`` (a dataclass) or, with no schema, a plain dict.
    """
    from omegaconf import OmegaConf  # light, but keep `import imageedit_r1` minimal

    base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create({})
    layers = [base]
    if path is not None:
        if not os.path.exists(path):
            raise FileNotFoundError(f"config file not found: {path}")
        layers.append(OmegaConf.load(path))
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise ValueError(f"overrides must look like key=value, got: {bad}")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    merged = OmegaConf.merge(*layers)
    if schema is not None:
        return OmegaConf.to_object(merged)
    return OmegaConf.to_container(merged, resolve=True)
