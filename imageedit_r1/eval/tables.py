"""Table 1 of the paper from a run: methods × (benchmark × judge), Average, delta vs Original.

Each cell is the mean judge score (0–10) over the items the judge scored, with a percentile
bootstrap interval (items resampled with replacement). "Average" is the mean over the
benchmark × judge cells, as in the paper; its interval resamples every cell independently and
averages, and the delta's interval does the same for the method and its group's baseline.
Failures (edit failed, judge reply unreadable, API gave up) are counted per cell and never enter a
mean; refusals (an editor's or judge's safety block, a judge that declines) are counted apart from
them, under "Refused"; "missing" counts items not run yet.

Every judgment records the model the provider says it served (``served_model``: the dated snapshot
behind an alias such as ``gpt-4o``). A column whose scores come from more than one snapshot (methods
judged on different days) is flagged ‡, with a note naming each snapshot and the methods it judged;
the CSV names the snapshots of every cell.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imageedit_r1.costs import is_snapshot
from imageedit_r1.eval.results import CRITERIA, CRITERION_TITLES, RunData
from imageedit_r1.eval.stats import bootstrap_means, percentile_interval


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    failed: int = 0  # failed edits of this benchmark + failed judgments of this judge (refusals apart)
    judge_failed: int = 0
    refused: int = 0  # refused edits of this benchmark + refused judgments of this judge
    judge_refused: int = 0
    missing: int = 0
    of: int = 0  # the benchmark's size (before any --limit)
    served: Counter = field(default_factory=Counter)  # scored judgments per model the provider served
    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    replicates: np.ndarray | None = None


@dataclass
class Row:
    method: str
    label: str
    group: str
    baseline: bool
    cells: dict[tuple[str, str], Cell]
    kind: str = ""
    edit_failed: dict[str, int] = field(default_factory=dict)  # per benchmark, each failed edit once
    edit_refused: dict[str, int] = field(default_factory=dict)
    average: float = math.nan
    average_ci: tuple[float, float] = (math.nan, math.nan)
    complete: bool = True
    delta: float | None = None
    delta_ci: tuple[float, float] = (math.nan, math.nan)
    average_replicates: np.ndarray | None = None

    @property
    def failed(self) -> int:
        """Failed edits (once each, however many judges) plus failed judgments: what the run lost."""
        return sum(self.edit_failed.values()) + sum(cell.judge_failed for cell in self.cells.values())

    @property
    def covers_subset(self) -> bool:
        return all(len(cell.values) + cell.failed + cell.refused >= cell.of for cell in self.cells.values())

    @property
    def refused(self) -> int:
        """Refused edits (once each) plus refused judgments."""
        return sum(self.edit_refused.values()) + sum(cell.judge_refused for cell in self.cells.values())

    @property
    def missing(self) -> int:
        return sum(cell.missing for cell in self.cells.values())


@dataclass
class Table:
    criterion: str
    columns: list[tuple[str, str]]  # (benchmark, judge)
    rows: list[Row]
    confidence: float
    judge_models: dict[str, str] = field(default_factory=dict)  # judge name -> the model it was configured with

    def mixed_snapshots(self) -> dict[tuple[str, str], dict[str, Counter]]:
        """Columns scored by more than one served model: column -> snapshot -> judgments per method label."""
        mixed: dict[tuple[str, str], dict[str, Counter]] = {}
        for column in self.columns:
            by_snapshot: dict[str, Counter] = defaultdict(Counter)
            for row in self.rows:
                for snapshot, count in row.cells[column].served.items():
                    by_snapshot[snapshot][row.label] += count
            if len(by_snapshot) > 1:
                mixed[column] = dict(sorted(by_snapshot.items()))
        return mixed


def build_table(run: RunData, criterion: str = "total", n_boot: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> Table:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}")
    rng = np.random.default_rng(seed)
    columns = [(bench, judge["name"]) for bench in run.benchmarks for judge in run.judges]
    expected = run.manifest.get("samples", {})
    sizes = {**expected, **run.manifest.get("subset_sizes", {})}
    edit_failed: dict[tuple[str, str], int] = defaultdict(int)
    edit_refused: dict[tuple[str, str], int] = defaultdict(int)
    for record in run.edits:
        if record.get("status") == "failed":
            counts = edit_refused if record.get("error_kind") == "refusal" else edit_failed
            counts[(record["method"], record["benchmark"])] += 1
    cells: dict[tuple[str, str, str], Cell] = defaultdict(Cell)
    for record in run.results:
        cell = cells[(record["method"], record["benchmark"], record["judge"])]
        if record.get("status") == "scored":
            cell.values.append(float(record[criterion]))
            if record.get("served_model"):
                cell.served[record["served_model"]] += 1
        elif record.get("error_kind") == "refusal":
            cell.refused += 1
            cell.judge_refused += 1
        else:
            cell.failed += 1
            cell.judge_failed += 1
    rows: list[Row] = []
    for method in run.methods:
        row_cells: dict[tuple[str, str], Cell] = {}
        for bench, judge in columns:
            cell = cells[(method["name"], bench, judge)]
            cell.failed += edit_failed[(method["name"], bench)]
            cell.refused += edit_refused[(method["name"], bench)]
            if bench in expected:
                cell.missing = max(0, expected[bench] - len(cell.values) - cell.failed - cell.refused)
            cell.of = sizes.get(bench, 0)
            if cell.values:
                cell.mean = float(np.mean(cell.values))
                cell.replicates = bootstrap_means(cell.values, n_boot, rng)
                cell.low, cell.high = percentile_interval(cell.replicates, confidence)
            row_cells[(bench, judge)] = cell
        row = Row(method["name"], method.get("label") or method["name"], method.get("group", ""),
                  bool(method.get("baseline")), row_cells, kind=method.get("kind", ""),
                  edit_failed={bench: edit_failed[(method["name"], bench)] for bench in run.benchmarks},
                  edit_refused={bench: edit_refused[(method["name"], bench)] for bench in run.benchmarks})
        present = [cell for cell in row_cells.values() if cell.values]
        row.complete = len(present) == len(columns) and row.missing == 0 and row.covers_subset
        if present:
            row.average = float(np.mean([cell.mean for cell in present]))
            row.average_replicates = np.mean([cell.replicates for cell in present], axis=0)
            row.average_ci = percentile_interval(row.average_replicates, confidence)
        rows.append(row)
    baselines = {row.group: row for row in rows if row.baseline}
    for row in rows:
        base = baselines.get(row.group)
        if base is None or base is row or math.isnan(row.average) or math.isnan(base.average):
            continue
        row.delta = row.average - base.average
        row.delta_ci = percentile_interval(row.average_replicates - base.average_replicates, confidence)
    return Table(criterion, columns, rows, confidence, {judge["name"]: judge.get("model", "") for judge in run.judges})


# ----------------------------------------------------------------------------- rendering


def _num(value: float, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:+.2f}"


# Rows that check the judge rather than compete (the unedited image): never marked best.
SANITY_KINDS = ("identity",)


def _column_best(table: Table) -> dict[Any, float]:
    best: dict[Any, float] = {}
    competing = [row for row in table.rows if row.kind not in SANITY_KINDS]
    for column in [*table.columns, "average"]:
        means = [row.average if column == "average" else row.cells[column].mean for row in competing]
        finite = [m for m in means if not math.isnan(m)]
        if len(finite) > 1:
            best[column] = max(finite)
    return best


MIXED_MARK = "‡"


def snapshot_notes(table: Table) -> list[str]:
    """One line per column whose scores come from more than one served model snapshot, with what to do."""
    lines = []
    for (bench, judge), snapshots in table.mixed_snapshots().items():
        parts = "; ".join(f"{snapshot} judged " + ", ".join(f"{label} ({n})" for label, n in methods.items())
                          for snapshot, methods in snapshots.items())
        lines.append(f"{MIXED_MARK} {bench} · {judge} mixes judge snapshots: {parts}. Its scores come from "
                     f"different models: {_snapshot_advice(judge, table.judge_models.get(judge, ''), snapshots)}")
    return lines


def _snapshot_advice(judge: str, model: str, snapshots: dict[str, Counter]) -> str:
    """What makes the column one model's. An alias (``gpt-4o``) is pinned to one of its snapshots: the
    judgments are keyed by the model asked for, so every method is judged again. A judge already
    asked for one id is keyed by it: running again keeps these judgments."""
    if model and all(is_snapshot(snapshot, model) for snapshot in snapshots):
        key = f"judges[{judge}]" if "." in judge else f"judges.{judge}"  # a name with dots takes brackets
        return (f"pin the judge's model to one of them ({key}.model={max(snapshots)}) and run `eval run` "
                "again: the pinned judge judges every method afresh.")
    return (f"the judge already asks for {model or 'one model'}, and the service answered as more than one, so "
            "running again keeps these judgments: compare methods within one snapshot (the CSV's served_models "
            "names each cell's), or judge every method again in a new run folder (`eval run --out-dir NEW`).")


def to_markdown(table: Table, ci: bool = True) -> str:
    best = _column_best(table)
    mixed = table.mixed_snapshots()

    def fmt(mean: float, low: float, high: float, column: Any, row: Row, cell: Cell | None = None) -> str:
        text = _num(mean)
        if ci and not math.isnan(mean):
            text += f" [{_num(low)}, {_num(high)}]"
        if (row.kind not in SANITY_KINDS and column in best and not math.isnan(mean)
                and abs(mean - best[column]) < 1e-9):
            text = f"**{text}**"
        if cell is not None and len(cell.values) < cell.of:
            text += f" (n {len(cell.values)}/{cell.of})"
        return text

    header = ["Edit model", "Method",
              *(f"{bench} · {judge}" + (f" {MIXED_MARK}" if (bench, judge) in mixed else "")
                for bench, judge in table.columns),
              "Average", "Δ vs Original", "Failed", "Refused", "Missing"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for row in table.rows:
        cells = [fmt(c.mean, c.low, c.high, column, row, c) for column, c in row.cells.items()]
        average = fmt(row.average, *row.average_ci, "average", row) + ("" if row.complete else " †")
        delta = _signed(row.delta)
        if delta and ci:
            delta += f" [{_signed(row.delta_ci[0])}, {_signed(row.delta_ci[1])}]"
        lines.append("| " + " | ".join([row.group, row.label, *cells, average, delta, str(row.failed),
                                        str(row.refused), str(row.missing)]) + " |")
    title = CRITERION_TITLES[table.criterion]
    notes = [f"\nMean judge score, {title}; brackets: {table.confidence:.0%} bootstrap interval. "
             "Average = mean over the benchmark × judge cells. Failed items are excluded from the means "
             "and counted under Failed (each failed edit once, plus each failed judgment); Refused = refused "
             "by an editor's or judge's safety system (or a judge that declined), excluded too and counted "
             "the same way; Missing = not run yet."]
    if any(len(c.values) < c.of for row in table.rows for c in row.cells.values()):
        notes.append("(n k/N): the mean is over k scored items of the benchmark's N (a limited or "
                     "unfinished run, or failures).")
    if any(not row.complete for row in table.rows):
        notes.append("† incomplete: some cells are empty, or items are missing or outside this run.")
    notes += snapshot_notes(table)
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "method", "label", "benchmark", "judge", "criterion", "mean", "ci_low", "ci_high",
                     "n_scored", "n_failed", "n_refused", "n_missing", "delta_vs_baseline", "delta_ci_low", "delta_ci_high",
                     "served_models", "mixed_snapshots"])
    mixed = table.mixed_snapshots()

    def num(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value:.4f}"

    for row in table.rows:
        for (bench, judge), cell in row.cells.items():
            served = ";".join(f"{snapshot}:{n}" for snapshot, n in sorted(cell.served.items()))
            writer.writerow([row.group, row.method, row.label, bench, judge, table.criterion, num(cell.mean),
                             num(cell.low), num(cell.high), len(cell.values), cell.failed, cell.refused, cell.missing,
                             "", "", "", served, str((bench, judge) in mixed).lower()])
        writer.writerow([row.group, row.method, row.label, "Average", "all", table.criterion, num(row.average),
                         num(row.average_ci[0]), num(row.average_ci[1]),
                         sum(len(c.values) for c in row.cells.values()), row.failed, row.refused, row.missing,
                         num(row.delta), num(row.delta_ci[0]), num(row.delta_ci[1]), "",
                         str(any(column in mixed for column in row.cells)).lower()])
    return buffer.getvalue()


def criteria_breakdown(run: RunData) -> list[dict[str, Any]]:
    """Per method and judge: each criterion's mean over benchmarks (mean of per-benchmark means)."""
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for record in run.scored():
        sums[(record["method"], record["judge"], record["benchmark"])].append(record)
    rows = []
    for method in run.methods:
        for judge in run.judges:
            per_bench = [sums[(method["name"], judge["name"], bench)] for bench in run.benchmarks]
            per_bench = [records for records in per_bench if records]
            row: dict[str, Any] = {"group": method.get("group", ""), "method": method.get("label") or method["name"],
                                   "judge": judge["name"], "n": sum(len(r) for r in per_bench)}
            for criterion in CRITERIA:
                means = [float(np.mean([r[criterion] for r in records])) for records in per_bench]
                row[criterion] = float(np.mean(means)) if means else math.nan
            rows.append(row)
    return rows


def breakdown_markdown(rows: list[dict[str, Any]]) -> str:
    header = ["Edit model", "Method", "Judge", *(CRITERION_TITLES[c] for c in CRITERIA), "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join([row["group"], row["method"], row["judge"],
                                        *(_num(row[c]) for c in CRITERIA), str(row["n"])]) + " |")
    return "\n".join(lines) + "\n"


def breakdown_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["group", "method", "judge", *CRITERIA, "n"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else
                             ("" if isinstance(v, float) else v)) for k, v in row.items()})
    return buffer.getvalue()
