"""The action taxonomy: a closed set of canonical edit-action labels (``ACTIONS``), each with synonyms.

``canonical_action`` maps a label, a synonym or a request-like phrase onto a canonical label.
Rule for a verb outside the taxonomy: it is kept as its own label, normalised to Title Case
(``"Levitate"``); it can only match the identical label, and ``is_known_action`` lets the
labeller count such labels so the taxonomy can grow where the data asks for it.

The decomposition schema, the reward, the teacher's prompt, the rule-based agents and the
sequencer read actions through this module. Standard library only: the reward imports it on
every RL worker.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Canonical label -> synonyms (lower case). Synonyms are matched as whole normalised phrases,
# and the keyword list below maps request-like phrases ("get rid of the car") onto labels.
ACTIONS: dict[str, tuple[str, ...]] = {
    "Addition": ("add", "adding", "insert", "insertion", "put", "place", "include", "draw", "object addition"),
    "Removal": (
        "remove", "removing", "erase", "delete", "get rid of", "take out", "eliminate", "cut out",
        "object removal", "clean up", "inpaint", "inpainting",
    ),
    "Replacement": ("replace", "replacing", "swap", "substitute", "exchange", "object replacement", "turn into"),
    "Recoloring": (
        "recolor", "recolour", "recoloring", "recolouring", "change the color", "change the colour",
        "change color", "color change", "tint", "dye", "paint", "color", "colour",
    ),
    "Colorization": (
        "colorize", "colorise", "colorization", "colourization", "add color", "add colour",
        "restore color", "restore colour",
    ),
    "Restoration": (
        "restore", "restoration", "repair", "fix", "fix damage", "remove scratches", "photo restoration",
        "denoise", "remove noise",
    ),
    "Enhancement": (
        "enhance", "enhancement", "improve", "improve quality", "sharpen", "upscale", "upscaling",
        "increase resolution", "clarify", "make clearer", "deblur", "super resolution", "quality enhancement",
    ),
    "Tone Adjustment": (
        "adjust", "brighten", "darken", "increase contrast", "contrast", "saturation", "saturate",
        "desaturate", "exposure", "white balance", "color grading", "colour grading", "filter",
        "black and white", "grayscale", "greyscale", "hdr", "tone adjustment",
    ),
    "Relighting": ("relight", "relighting", "change lighting", "lighting", "add light", "shadow", "illuminate"),
    "Background Change": (
        "change background", "change the background", "replace background", "replace the background",
        "background replacement", "remove background", "remove the background", "background change",
        "background",
    ),
    "Style Transfer": (
        "stylize", "stylise", "style", "style transfer", "make it look like", "cartoonify", "cartoon",
        "anime", "painting", "sketch", "render as", "artistic",
    ),
    "Text Editing": ("add text", "change text", "edit text", "write", "text", "text editing", "caption", "rewrite text"),
    "Blur": ("blur", "blurring", "bokeh", "defocus", "soften", "depth of field"),
    "Crop": ("crop", "cropping", "reframe", "straighten", "rotate", "flip", "zoom in", "recompose"),
    "Extension": ("extend", "outpaint", "outpainting", "expand", "uncrop", "widen the frame"),
    "Pose Change": ("pose", "change pose", "change the pose", "pose change", "reposition limbs", "gesture"),
    "Expression Change": ("smile", "expression", "change expression", "make smile", "open eyes", "close eyes", "expression change"),
    "Material Change": ("material", "texture", "change material", "change texture", "make it wooden", "make it metallic", "material change"),
    "Move": ("move", "moving", "shift", "relocate", "reposition", "position"),
    "Resize": ("resize", "scale", "enlarge", "shrink", "make bigger", "make smaller", "resizing"),
    "Retouching": (
        "retouch", "retouching", "smooth skin", "remove blemishes", "remove wrinkles", "whiten teeth",
        "slim", "beautify", "makeup", "face retouching", "skin smoothing",
    ),
    "Weather Change": ("weather", "season", "time of day", "make it snow", "make it rain", "sunset", "night", "weather change"),
    "Compositing": ("combine", "merge", "composite", "compositing", "blend", "face swap", "swap faces", "photoshop together"),
    "Transformation": ("transform", "transformation", "turn", "make", "convert", "change", "modify", "alter"),
}

# Longest phrases first so "change the background" wins over "change".
def _build_synonym_index() -> tuple[dict[str, str], list[tuple[str, str]]]:
    exact: dict[str, str] = {}
    for label, synonyms in ACTIONS.items():
        exact[_norm_phrase(label)] = label
        for synonym in synonyms:
            exact.setdefault(_norm_phrase(synonym), label)
    phrases = sorted(exact.items(), key=lambda item: -len(item[0]))
    return exact, phrases


def _norm_phrase(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ").replace("_", " ").replace("/", " ")
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


_SYNONYMS, _PHRASES = _build_synonym_index()


@lru_cache(maxsize=65536)
def canonical_action(label: str) -> str:
    """Map an action label, synonym or short phrase onto its canonical taxonomy label.

    1. Exact match of the normalised text to a label or synonym ("recolor" -> "Recoloring").
    2. Otherwise the longest synonym that occurs at the start of the phrase
       ("get rid of the lamp" -> "Removal", "change the background to a beach" -> "Background Change").
    3. Otherwise the text is kept as its own label in Title Case ("levitate" -> "Levitate").
    """
    norm = _norm_phrase(label)
    if not norm:
        return ""
    if norm in _SYNONYMS:
        return _SYNONYMS[norm]
    leading = leading_action(norm)
    return leading[0] if leading else norm.title()


def leading_action(phrase: str) -> tuple[str, str] | None:
    """(canonical label, the rest of the phrase) for the longest synonym that starts ``phrase``
    ("get rid of the lamp" -> ("Removal", "the lamp")); None when no synonym does. The rest is
    normalised as synonyms are (lower case, punctuation dropped)."""
    norm = _norm_phrase(phrase)
    for synonym, canonical in _PHRASES:
        if norm.startswith(synonym + " "):
            return canonical, norm[len(synonym) + 1:]
    return None


def is_known_action(label: str) -> bool:
    return canonical_action(label) in ACTIONS
