"""The editing agent: one ``Editor`` protocol, several backbones, chosen by name.

    editor = build_editor("flux-kontext", dtype="bfloat16", enable_model_cpu_offload=True)
    edited = editor.edit(image, "Recolor the coat to scarlet", seed=0)   # same size as `image`

Names: ``flux-kontext``, ``qwen-image-edit``, ``qwen-image-edit-plus`` (local diffusers
pipelines), ``nano-banana`` (google-genai) and ``openai-image`` (openai ``images.edit``); any
other editor class by its import path, ``package.module:Class``.
Importing this package loads none of them; each is imported when it is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from imageedit_r1.agents.editors.base import (
    BaseEditor,
    Editor,
    EditorError,
    EditorUnavailableError,
    EditRefusedError,
    restore_size,
    working_size,
)

# name -> "module:Class"; modules import their heavy libraries lazily.
EDITORS: dict[str, str] = {
    "flux-kontext": "imageedit_r1.agents.editors.diffusion:FluxKontextEditor",
    "qwen-image-edit": "imageedit_r1.agents.editors.diffusion:QwenImageEditEditor",
    "qwen-image-edit-plus": "imageedit_r1.agents.editors.diffusion:QwenImageEditPlusEditor",
    "nano-banana": "imageedit_r1.agents.editors.gemini_image:NanoBananaEditor",
    "openai-image": "imageedit_r1.agents.editors.openai_image:OpenAIImageEditor",
}


def editor_class(name: str) -> type:
    """The class registered as ``name``, or the class at the import path ``module:Class``."""
    if name not in EDITORS and ":" not in name:
        raise ValueError(f"unknown editor {name!r}; choose one of: {', '.join(EDITORS)} (or module:Class)")
    module_name, _, class_name = EDITORS.get(name, name).partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        if name in EDITORS:
            raise
        raise ValueError(f"editor {name!r}: no class {class_name!r} in module {module_name!r} ({exc})") from exc


def build_editor(name: str, **options: Any) -> Editor:
    """Build the editor registered as ``name``; ``options`` are its constructor's keyword arguments."""
    cls = editor_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for editor {name!r}: {exc}") from exc


__all__ = [
    "EDITORS",
    "BaseEditor",
    "Editor",
    "EditorError",
    "EditorUnavailableError",
    "EditRefusedError",
    "build_editor",
    "editor_class",
    "restore_size",
    "working_size",
]
