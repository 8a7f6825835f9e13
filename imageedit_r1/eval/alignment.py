"""Human vs judge agreement (the paper's Table 4 / Fig. 4): per-criterion means and correlations.

The human CSV has one row per item and annotator: ``sample_id``, the three criteria
(``fulfillment``, ``quality``, ``preservation``) and optionally ``benchmark``, ``method`` and
``annotator``. Annotators are averaged per item (as the paper averages three); the item is then
joined with each judge's score for the same (benchmark, sample, method), on whichever of those
columns the CSV has. Correlations are over items scored by both.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imageedit_r1.agents.judge import CRITERIA as JUDGE_CRITERIA
from imageedit_r1.eval.results import CRITERIA, CRITERION_TITLES, RunData
from imageedit_r1.eval.stats import pearson, spearman

JOIN_COLUMNS = ("benchmark", "sample_id", "method")
SCORE_COLUMNS = ("fulfillment", "quality", "preservation")


@dataclass
class Alignment:
    judge: str
    n: int
    human_means: dict[str, float]
    judge_means: dict[str, float]
    pearson: dict[str, float]
    spearman: dict[str, float]


def read_human_scores(path: str | Path) -> tuple[tuple[str, ...], dict[tuple[str, ...], dict[str, float]]]:
    """(join columns, item key -> mean score per criterion incl. total) from a human-score CSV."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"human score file {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("sample_id", *SCORE_COLUMNS) if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; have {columns}")
        join = tuple(c for c in JOIN_COLUMNS if c in columns)
        collected: dict[tuple[str, ...], list[dict[str, float]]] = defaultdict(list)
        for line_no, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            scores: dict[str, float] = {}
            for criterion in SCORE_COLUMNS:
                maximum = JUDGE_CRITERIA[criterion][0]
                try:
                    value = float(row[criterion])
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: {criterion} {row[criterion]!r} is not a number") from None
                if not 0 <= value <= maximum:
                    raise ValueError(f"{path}:{line_no}: {criterion} {value:g} is outside 0-{maximum}")
                scores[criterion] = value
            collected[tuple(row[c] for c in join)].append(scores)
    items = {}
    for key, rows in collected.items():
        means = {c: float(np.mean([r[c] for r in rows])) for c in SCORE_COLUMNS}
        means["total"] = sum(means[c] for c in SCORE_COLUMNS)
        items[key] = means
    return join, items


def align(run: RunData, human_csv: str | Path, judges: list[str] | None = None) -> tuple[list[Alignment], int]:
    """Agreement per judge (and for the mean of all judges when there are several).

    Returns the alignments and the number of human items with no judge score to compare.
    """
    join, human = read_human_scores(human_csv)
    judge_names = judges or [j["name"] for j in run.judges]
    by_judge: dict[str, dict[tuple[str, ...], dict[str, Any]]] = defaultdict(dict)
    for record in run.scored():
        key = tuple(str(record[c]) for c in join)
        if record["judge"] not in judge_names:
            continue
        if key in by_judge[record["judge"]] and "method" not in join:
            raise ValueError("the human CSV has no 'method' column, but the run has several methods for "
                             f"{dict(zip(join, key, strict=True))}: add a 'method' column")
        by_judge[record["judge"]][key] = record
    series = {name: by_judge[name] for name in judge_names}
    if len(judge_names) > 1:
        common = set.intersection(*(set(series[name]) for name in judge_names))
        series["all judges (mean)"] = {
            key: {c: float(np.mean([series[name][key][c] for name in judge_names])) for c in CRITERIA}
            for key in common}
    out: list[Alignment] = []
    unmatched = len([key for key in human if not any(key in s for s in series.values())])
    for name, scores in series.items():
        keys = [key for key in human if key in scores]
        result = Alignment(name, len(keys), {}, {}, {}, {})
        for criterion in CRITERIA:
            h = [human[key][criterion] for key in keys]
            j = [float(scores[key][criterion]) for key in keys]
            result.human_means[criterion] = float(np.mean(h)) if h else math.nan
            result.judge_means[criterion] = float(np.mean(j)) if j else math.nan
            result.pearson[criterion] = pearson(h, j)
            result.spearman[criterion] = spearman(h, j)
        out.append(result)
    return out, unmatched


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def to_markdown(alignments: list[Alignment]) -> str:
    header = ["Judge", "Row", *(CRITERION_TITLES[c] for c in CRITERIA), "n"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for a in alignments:
        for row_name, values in (("Human", a.human_means), ("VLM-based", a.judge_means),
                                 ("Pearson r", a.pearson), ("Spearman ρ", a.spearman)):
            lines.append("| " + " | ".join([a.judge, row_name, *(_fmt(values[c]) for c in CRITERIA), str(a.n)]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(alignments: list[Alignment]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["judge", "row", *CRITERIA, "n"])
    for a in alignments:
        for row_name, values in (("human_mean", a.human_means), ("judge_mean", a.judge_means),
                                 ("pearson", a.pearson), ("spearman", a.spearman)):
            writer.writerow([a.judge, row_name, *("" if math.isnan(values[c]) else f"{values[c]:.4f}"
                                                  for c in CRITERIA), a.n])
    return buffer.getvalue()
