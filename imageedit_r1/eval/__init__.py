"""Evaluation: LLM-as-judge scoring, the resumable benchmark runner, tables, alignment, report.

``python -m imageedit_r1.eval --help`` lists the commands. The judge itself is an agent
(``imageedit_r1.agents.judge``, configured by ``imageedit_r1.endpoints.JudgeConfig``). Importing
this package is light: plotting, numpy and the API clients load inside the commands that need them.
"""

from imageedit_r1.eval.config import EvalConfig, MethodConfig, load_eval_config
from imageedit_r1.eval.estimate import EstimateRow, format_estimate
from imageedit_r1.eval.records import Item, Summary, classify_failure
from imageedit_r1.eval.runner import EvalRunner

__all__ = [
    "EvalConfig", "MethodConfig", "load_eval_config",
    "EvalRunner", "EstimateRow", "format_estimate", "Item", "Summary", "classify_failure",
]
