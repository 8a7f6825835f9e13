"""Reward curves over training steps from the trainers' own logs (the paper's Fig. 3 and Fig. 6).

Formats read (detected per file):
- EasyR1 file logger, ``<save_checkpoint_path>/experiment_log.jsonl``: one JSON object per log call,
  ``{"step": N, "reward": {"overall": .., "format": .., ...}, "val": {"overall_reward": ..}, ...}``
  (metric names unflattened on "/").
- verl file logger (``trainer.logger=[..., file]``; path from ``VERL_FILE_LOGGER_PATH``):
  ``{"step": N, "data": {"critic/score/mean": .., "val-aux/<source>/goal/mean@1": ..}}``.
- verl console logger: lines ``step:N - key:value - key:value`` (Ray may prefix them).
- verl rollout dumps (``trainer.rollout_data_dir``): a directory of ``<step>.jsonl`` files with one
  record per response (``output``, ``gts``, ``score``, ``step``). verl 0.9's default trainer does
  not log reward components during training, so the components are recomputed from ``output`` and
  ``gts`` with this project's reward (pure and deterministic, hence the same numbers the trainer saw).
- TRL (``GRPOTrainer``): the trainer state, ``<output_dir>/checkpoint-N/trainer_state.json``, whose
  ``log_history`` holds one dict per logging step (``reward``, ``rewards/<component>/mean``, and
  ``eval_``-prefixed ones at evaluation), or the same metrics as JSONL lines
  (``<output_dir>/metrics.jsonl``, written by ``python -m imageedit_r1.train.trl_grpo``). Given the
  output folder, its ``metrics.jsonl`` is read, else the newest checkpoint's trainer state.

JSONL logs are read with the run store's reader: a line torn by a killed run is skipped, wherever it
is, with one warning that counts such lines; the records around it are kept.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imageedit_r1.store import numbered_jsonl, read_jsonl

COMPONENTS = ("overall", "format", "action", "subject", "goal")
_COLORS = {"overall": "black", "format": "tab:gray", "action": "tab:blue", "subject": "tab:green", "goal": "tab:red"}
_CONSOLE_STEP = re.compile(r"(?:^|\s)step:(\d+) - (.*)$")
_VERL_VAL = re.compile(r"^val-(?:core|aux)/([^/]+)/([^/]+)/mean@(\d+)$")
_TRL_COMPONENT = re.compile(r"^(eval_)?rewards/([^/]+)/mean$")
TRL_STATE = "trainer_state.json"
TRL_METRICS = "metrics.jsonl"


class MetricLogError(ValueError):
    """A log that cannot be read, or one without any reward metric."""


@dataclass
class Series:
    name: str
    points: dict[int, float] = field(default_factory=dict)

    @property
    def steps(self) -> list[int]:
        return sorted(self.points)

    @property
    def values(self) -> list[float]:
        return [self.points[s] for s in self.steps]


class _Collector:
    """Per (series, step) means, so several records for one step (or data source) average out."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, name: str, step: int, value) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return
        if math.isfinite(number):
            self._sums[name][step].append(number)

    def series(self) -> dict[str, Series]:
        return {
            name: Series(name, {step: sum(v) / len(v) for step, v in by_step.items()})
            for name, by_step in self._sums.items()
        }


def _flatten(data: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def _metric_name(key: str) -> str | None:
    """Our series name for a trainer metric name, or None for metrics we do not plot."""
    if key.startswith("reward/"):  # EasyR1 training
        name = key.split("/", 1)[1]
        return name if name in COMPONENTS else None
    if key.startswith("val/") and key.endswith("_reward"):  # EasyR1 validation
        name = key[len("val/") : -len("_reward")]
        return f"val/{name}" if name in COMPONENTS else None
    if key == "critic/score/mean":  # verl training: the scalar reward is our `overall`
        return "overall"
    if key.startswith("gdpo/") and key.endswith("/mean"):  # verl GDPO logs components itself
        name = key.split("/")[1]
        return name if name in COMPONENTS else None
    if key in ("reward", "eval_reward"):  # TRL: the weighted sum, normalised by our launcher = overall
        return "val/overall" if key.startswith("eval_") else "overall"
    match = _TRL_COMPONENT.match(key)
    if match:
        name = match.group(2)
        return None if name not in COMPONENTS else (f"val/{name}" if match.group(1) else name)
    match = _VERL_VAL.match(key)
    if match:
        name = match.group(2)
        name = "overall" if name in ("reward", "score") else name
        return f"val/{name}" if name in COMPONENTS else None
    return None


def _add_metrics(collector: _Collector, step: int, metrics: Iterable[tuple[str, object]]) -> None:
    # verl reports validation at several @k; the largest k is its headline number.
    val_k: dict[str, tuple[int, object]] = {}
    for key, value in metrics:
        name = _metric_name(key)
        if name is None:
            continue
        match = _VERL_VAL.match(key)
        if match:
            slot = f"{name}|{match.group(1)}"
            k = int(match.group(3))
            if slot not in val_k or k > val_k[slot][0]:
                val_k[slot] = (k, value)
            continue
        collector.add(name, step, value)
    for slot, (_, value) in val_k.items():
        collector.add(slot.split("|", 1)[0], step, value)


def _read_metric_jsonl(path: Path, collector: _Collector) -> None:
    for number, record in numbered_jsonl(path):
        if "step" not in record:
            raise MetricLogError(f"{path}:{number}: a metric record without 'step'")
        step = int(record["step"])
        payload = record["data"] if isinstance(record.get("data"), dict) else record
        _add_metrics(collector, step, _flatten({k: v for k, v in payload.items() if k != "step"}))


def _read_console(path: Path, collector: _Collector) -> int:
    found = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _CONSOLE_STEP.search(line)
        if not match:
            continue
        found += 1
        pairs = []
        for item in match.group(2).split(" - "):
            key, sep, value = item.rpartition(":")
            if sep:
                pairs.append((key.strip(), value.strip()))
        _add_metrics(collector, int(match.group(1)), pairs)
    return found


def _read_rollout_dir(path: Path, collector: _Collector, *, rescore: bool) -> None:
    files = sorted((p for p in path.glob("*.jsonl") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not files:
        raise MetricLogError(f"{path}: no <step>.jsonl rollout dumps in this directory")
    from imageedit_r1.rewards import score

    for file in files:
        for record in read_jsonl(file):
            step = int(record.get("step", file.stem))
            if "score" in record:
                collector.add("overall", step, record["score"])
            logged = [c for c in COMPONENTS[1:] if c in record]
            for name in logged:
                collector.add(name, step, record[name])
            if rescore and not logged and "output" in record and record.get("gts") is not None:
                result = score(str(record["output"]), record["gts"])
                for name in COMPONENTS[1:]:
                    collector.add(name, step, result[name])
                if "score" not in record:
                    collector.add("overall", step, result["overall"])


def _read_trainer_state(path: Path, collector: _Collector) -> None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MetricLogError(f"{path}: not a readable trainer state ({exc})") from exc
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise MetricLogError(f"{path}: no log_history list (is this a Hugging Face / TRL trainer_state.json?)")
    for record in history:
        if isinstance(record, dict) and "step" in record:
            _add_metrics(collector, int(record["step"]), ((k, v) for k, v in record.items() if k != "step"))


def _log_in_folder(folder: Path) -> Path:
    """The log a folder holds: EasyR1's experiment_log.jsonl, TRL's metrics.jsonl, else the newest
    TRL trainer state; the folder itself when none (verl rollout dumps)."""
    for name in ("experiment_log.jsonl", TRL_METRICS):
        if (folder / name).is_file():
            return folder / name
    if (folder / TRL_STATE).is_file():
        return folder / TRL_STATE
    checkpoints = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for checkpoint in sorted(checkpoints, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (checkpoint / TRL_STATE).is_file():
            return checkpoint / TRL_STATE
    return folder


def load_metrics(paths: Sequence[str | os.PathLike], *, rescore: bool = True) -> dict[str, Series]:
    """Reward series from one or more logs; series from later logs override earlier ones per step."""
    merged: dict[str, Series] = {}
    for raw in paths:
        path = Path(raw)
        collector = _Collector()
        if path.is_dir():
            path = _log_in_folder(path)
        if path.is_dir():
            _read_rollout_dir(path, collector, rescore=rescore)
        elif not path.is_file():
            raise MetricLogError(f"log not found: {path}")
        elif path.suffix == ".json":
            _read_trainer_state(path, collector)
        elif _looks_like_jsonl(path):
            _read_metric_jsonl(path, collector)
        elif not _read_console(path, collector):
            raise MetricLogError(
                f"{path}: neither a JSONL metric log nor console output with `step:N - key:value` lines"
            )
        for name, series in collector.series().items():
            merged.setdefault(name, Series(name)).points.update(series.points)
    if not merged:
        raise MetricLogError(
            "no reward metrics found in "
            + ", ".join(map(str, paths))
            + " (expected reward/<component>, critic/score/mean, val-*/<source>/<component>/mean@k, "
            "rollout dumps, or TRL's reward and rewards/<component>/mean)"
        )
    return dict(sorted(merged.items(), key=lambda kv: _order(kv[0])))


def _looks_like_jsonl(path: Path) -> bool:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def _order(name: str) -> tuple[int, int]:
    base = name.removeprefix("val/")
    return (name.startswith("val/"), COMPONENTS.index(base) if base in COMPONENTS else len(COMPONENTS))


def _smoothed(values: list[float], window: int) -> list[float]:
    if window <= 1:
        return values
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def output_format(out: str | os.PathLike) -> str:
    """The figure format ``out``'s extension asks for (png without one), among those matplotlib
    writes; ``ValueError`` naming them otherwise, before any log is read."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(out).suffix.lower().lstrip(".") or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"cannot write {Path(out).name}: matplotlib writes {', '.join('.' + f for f in sorted(supported))}")
    return fmt


def plot_reward_curves(
    series: dict[str, Series],
    out: str | os.PathLike,
    *,
    title: str = "Decomposition agent: training rewards",
    smooth: int = 1,
) -> Path:
    """One panel for training rewards and, when logged, one for validation, in the format ``out``'s
    extension asks for (``output_format``: png, pdf, svg, tif, jpg, ...), written atomically.

    A PNG carries the plotted series names in its ``Series`` text chunk, so a reader can tell what
    was drawn without looking (other formats hold no such chunk).
    """
    from imageedit_r1.store import AtomicFile

    fmt = output_format(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = {n: s for n, s in series.items() if not n.startswith("val/")}
    val = {n: s for n, s in series.items() if n.startswith("val/")}
    panels = [(p, t) for p, t in ((train, "training (rollouts)"), (val, "validation")) if p]
    if not panels:
        raise MetricLogError("nothing to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    drawn = []
    for ax, (group, label) in zip(axes[0], panels, strict=True):
        for name, s in group.items():
            base = name.removeprefix("val/")
            style = {"linewidth": 2.4 if base == "overall" else 1.6, "color": _COLORS.get(base)}
            ax.plot(s.steps, _smoothed(s.values, smooth), label=base, marker="o" if len(s.steps) < 30 else None,
                    markersize=3, **style)
            drawn.append(name)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.set_ylabel("reward")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    metadata = {"Series": ",".join(drawn), "Software": "imageedit_r1.train.curves"} if fmt == "png" else None
    with AtomicFile(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120, metadata=metadata)
    plt.close(fig)
    return Path(out)
