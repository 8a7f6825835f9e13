"""Evaluation: LLM-as-judge scoring, the resumable benchmark runner, tables, alignment, report.

``python -m imageedit_r1.eval --help`` lists the commands. Importing this package is light:
plotting, numpy and the API clients load inside the commands that need them.
"""

from imageedit_r1.eval.config import EvalConfig, JudgeConfig, MethodConfig, load_eval_config
from imageedit_r1.eval.estimate import EstimateRow, format_estimate
from imageedit_r1.eval.judge import (
    JUDGE_SCHEMA,
    Judge,
    JudgeError,
    JudgeRefusal,
    JudgmentParseError,
    parse_judgment,
)
from imageedit_r1.eval.records import Item, Summary, classify_failure
from imageedit_r1.eval.runner import EvalRunner

__all__ = [
    "EvalConfig", "JudgeConfig", "MethodConfig", "load_eval_config",
    "JUDGE_SCHEMA", "Judge", "JudgeError", "JudgeRefusal", "JudgmentParseError", "parse_judgment",
    "EvalRunner", "EstimateRow", "format_estimate", "Item", "Summary", "classify_failure",
]
