"""Fixtures for the evaluation tests: tiny benchmarks on disk, a tinting editor, scripted judges.

Importable as ``tests.eval_fixtures`` from the repository root (pytest and subprocess runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from PIL import Image

from imageedit_r1.agents.judge import Judgment, parse_judgment
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import BenchmarkConfig, EvalConfig, MethodConfig

COLOURS = [(200, 40, 40), (40, 160, 60), (50, 70, 210), (220, 200, 40), (120, 50, 160), (30, 170, 170)]


def make_benchmark(root: Path, name: str, n: int, size: int = 24) -> BenchmarkConfig:
    """``n`` solid-colour images with unique requests, as a manifest benchmark."""
    folder = root / f"bench_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n):
        path = folder / f"{index}.png"
        Image.new("RGB", (size, size), COLOURS[index % len(COLOURS)]).save(path)
        lines.append(json.dumps({"id": f"{name}-{index}", "image": path.name,
                                 "request": f"[{name}-{index}] make it brighter and add a hat"}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return BenchmarkConfig(name=name, source="manifest", manifest=str(folder / "manifest.jsonl"))


def tint(image, request, *, seed=0, sample=None):
    """A deterministic 'editor': blends the image towards white by an amount set by the seed."""
    amount = 0.2 + 0.1 * (seed % 5)
    edited = Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), amount)
    return edited, {"request": request, "sub_requests": [part.strip() for part in request.split(" and ")]}


def seed_of(original, edited) -> int:
    """Recover the tint seed from the blend amount between an original and its edit."""
    o, e = original.getpixel((0, 0)), edited.getpixel((0, 0))
    channel = min(range(3), key=lambda i: o[i])
    amount = (e[channel] - o[channel]) / (255 - o[channel])
    return round((amount - 0.2) / 0.1)


def failing_tint(image, request, *, seed=0, sample=None):
    if sample is not None and str(sample.id).endswith("-1"):
        raise RuntimeError("editor crashed on this sample")
    return tint(image, request, seed=seed, sample=sample)


def served_key_in_error(image, request, *, seed=0, sample=None):
    """An editor behind a server that quotes its key back in an error, as some servers do."""
    raise RuntimeError(f"401 from the server: invalid API key {os.environ['VLLM_API_KEY']}")


def expected_scores(request: str, method_seed: int = 0) -> tuple[int, int, int]:
    """The scripted judge's scores for a request: spread over the ranges, deterministic."""
    digest = hashlib.sha256(f"{request}|{method_seed}".encode()).digest()
    return digest[0] % 5, digest[1] % 4, digest[2] % 4


def judge_reply_json(request: str, method_seed: int = 0) -> str:
    f, q, p = expected_scores(request, method_seed)
    return json.dumps({"reasoning": "scripted", "fulfillment": f, "quality": q, "preservation": p})


def config_for(root: Path, benchmarks, methods=None, judges=None, **kwargs) -> EvalConfig:
    methods = methods or [
        MethodConfig(name="base", label="Original", group="Tint", kind="callable", baseline=True,
                     target="tests.eval_fixtures:tint", seed=0),
        MethodConfig(name="r1", label="ImageEdit-R1", group="Tint", kind="callable",
                     target="tests.eval_fixtures:tint", seed=1),
    ]
    judges = judges or [JudgeConfig(name="J1", backend="openai", model="judge-model-1")]
    return EvalConfig(out_dir=str(root / "run"), benchmarks=list(benchmarks), methods=methods, judges=judges,
                      **kwargs)


class ScriptedJudge:
    """Stands in for ``Judge``: replies from ``reply(request, call_index, original, edited)`` (text or an exception)."""

    def __init__(self, name: str, model: str, reply=None) -> None:
        self.name, self.model = name, model
        self.reply = reply or (lambda request, index, original, edited: judge_reply_json(request, seed_of(original, edited)))
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, original, edited, edit_request):
        with self._lock:
            self.calls.append(edit_request)
            index = len(self.calls)
        result = self.reply(edit_request, index, original, edited)
        if isinstance(result, BaseException):
            raise result
        return Judgment(parse_judgment(result), self.model, self.model + "-served", "sha", result, 100, 20, 1)
