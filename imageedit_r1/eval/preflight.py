"""Check an evaluation before its first edit: each pending method's pipeline, each judge's key.

``eval run`` calls this after the estimate: only methods with edits still to do and judges with
judgments still to do are checked, so a finished part of a study never blocks the rest.
"""

from __future__ import annotations

import os
from typing import Any

from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.config import EvalConfig, MethodConfig

# The variables each judge backend reads when ``api_key_env`` is not set (the backends' defaults).
_DEFAULT_KEYS = {"openai": ("OPENAI_API_KEY",), "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY")}


def method_problems(method: MethodConfig) -> list[str]:
    """What would stop ``method`` from editing (pipeline and original kinds): see ``pipeline.preflight``."""
    if method.kind not in ("original", "pipeline", "pipeline-verify"):
        return []
    from imageedit_r1.eval.methods import pipeline_config
    from imageedit_r1.pipeline.preflight import pipeline_problems

    return [f"method {method.name!r}: {problem}" for problem in pipeline_problems(pipeline_config(method))]


def judge_problems(judge: JudgeConfig) -> list[str]:
    if judge.backend == "openai" and judge.base_url:
        return []  # a local server: a key is optional
    names = (judge.api_key_env,) if judge.api_key_env else _DEFAULT_KEYS.get(judge.backend, ())
    if not names or any(os.environ.get(name, "").strip() for name in names):
        return []
    return [f"judge {judge.name!r}: no API key: set the environment variable {' or '.join(names)} "
            f"(or judges' api_key_env to the variable that holds it)"]


def eval_problems(config: EvalConfig, pending: dict[str, int], stage: str = "all") -> list[str]:
    """Problems of the methods and judges with work pending (``pending``: name -> calls)."""
    problems: list[str] = []
    if stage in ("all", "plan", "edit"):
        for method in config.methods:
            if pending.get(f"method:{method.name}", 0):
                problems += method_problems(method)
    if stage in ("all", "judge"):
        for judge in config.judges:
            if pending.get(f"judge:{judge.name}", 0):
                problems += judge_problems(judge)
    return list(dict.fromkeys(problems))


def pending_from_estimate(config: EvalConfig, rows: list[Any]) -> dict[str, int]:
    """``EvalRunner.estimate`` rows keyed by ``method:``/``judge:`` name: one row per method first,
    one per judge last, and between them one verifier row per ``pipeline-verify`` method (its
    checks are the method's: ``method_problems``)."""
    methods, judges = config.methods, config.judges
    if len(rows) < len(methods) + len(judges):
        raise ValueError(f"an estimate of {len(rows)} rows for {len(methods)} methods and {len(judges)} judges")
    pending = {f"method:{m.name}": row.calls for m, row in zip(methods, rows[:len(methods)], strict=True)}
    judge_rows = rows[len(rows) - len(judges):]
    pending.update({f"judge:{j.name}": row.calls for j, row in zip(judges, judge_rows, strict=True)})
    return pending
