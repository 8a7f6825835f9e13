"""Evaluation configuration: benchmarks × methods × judges, with the paper's defaults.

Loaded with ``imageedit_r1.config.load_config(EvalConfig, yaml, overrides)``; the shipped
``configs/eval.yaml`` reproduces Table 1's setup. Only the fields listed in
``MethodConfig.identity`` decide whether an edited image can be reused, so relabelling a method
never re-runs it, while changing its editor, decomposer, mode or seed always does.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.costs import Price, is_snapshot
from imageedit_r1.endpoints import AgentConfig, JudgeConfig, answer_settings
from imageedit_r1.executors import RayConfig, executor_problems
from imageedit_r1.pipeline.config import EditorConfig, PipelineConfig, VerifyConfig
from imageedit_r1.store import content_key

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "eval.yaml"

METHOD_KINDS = ("original", "pipeline", "pipeline-verify", "precomputed", "identity", "callable")
PIPELINE_KINDS = ("pipeline", "pipeline-verify")  # ImageEdit-R1; "pipeline-verify" with the verify stage
JUDGE_BACKENDS = ("openai", "gemini")  # openai: also any OpenAI-compatible server, via base_url


@dataclass
class BenchmarkConfig:
    name: str = ""
    # A source spec of imageedit_r1.data ("psr@test", "realedit@test", "ultraedit@FreeForm_0") or
    # "manifest"; empty: the source recorded in the subset file.
    source: str = ""
    # JSON list of sample ids (a seeded subset drawn by `python -m imageedit_r1.data subsets`).
    subset: str | None = None
    # For source "manifest": a JSONL file of {"id", "image" (path, relative to the file), "request"}.
    manifest: str | None = None
    # Keyword options of the data loader (columns, max_pixels, ...).
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None


@dataclass
class MethodConfig(PipelineConfig):
    """A row of Table 1. Kinds "original", "pipeline" and "pipeline-verify" (the pipeline with its
    ``verify`` stage, which that kind requires) run ``imageedit_r1.pipeline.ImageEditR1``
    and take every key of ``PipelineConfig`` (the one definition: mode, seed, decomposer, sequencer,
    editor, on_decompose_failure, on_sequence_failure, max_image_pixels, ...).

    Shorthand kept from the shipped configs: ``editor: NAME`` with ``editor_options: {...}``
    means ``editor: {name: NAME, options: {...}}``.
    """

    seed: int | None = 0  # a study is reproducible by default
    name: str = ""
    label: str = ""  # the row name in tables ("Original", "ImageEdit-R1 (w/o RL)", "ImageEdit-R1")
    group: str = ""  # the edit model the row belongs to ("FLUX.1-Kontext-dev")
    kind: str = "original"  # one of METHOD_KINDS
    baseline: bool = False  # deltas in the table are taken against the baseline row of the group
    images_dir: str | None = None  # kind "precomputed": <images_dir>/<sample id>.png
    target: str | None = None  # kind "callable": "package.module:function"

    def __post_init__(self) -> None:
        # Python callers may pass the shorthand forms too (``editor="flux-kontext"``, agent dicts).
        if isinstance(self.editor, str):
            self.editor = EditorConfig(name=self.editor)
        elif isinstance(self.editor, dict):
            self.editor = EditorConfig(**self.editor)
        if isinstance(self.decomposer, dict):
            self.decomposer = AgentConfig(**self.decomposer)
        if isinstance(self.sequencer, dict):
            self.sequencer = AgentConfig(**self.sequencer) if self.sequencer else None
        if isinstance(self.verify, dict):
            self.verify = _verify_config(self.verify)

    def pipeline_config(self) -> PipelineConfig:
        """This method's ``PipelineConfig`` (mode "original" for kind "original")."""
        settings = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(PipelineConfig)}
        if self.kind == "original":
            settings["mode"] = "original"
        return PipelineConfig(**settings)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the edited pixels (pipeline settings: those off their defaults)."""
        ident: dict[str, Any] = {"kind": self.kind, "seed": self.seed}
        if self.kind in ("original", *PIPELINE_KINDS):
            defaults = dataclasses.asdict(PipelineConfig())
            defaults["sequencer"] = dataclasses.asdict(AgentConfig())  # a sequencer set to the defaults
            defaults["verify"] = dataclasses.asdict(VerifyConfig())  # likewise a verify stage
            ident["pipeline"] = _non_default(dataclasses.asdict(self.pipeline_config()), defaults)
            ident["pipeline"].pop("seed", None)
            for key in ("executor", "ray", "plan_batch"):  # where and in what batches never changes the pixels
                ident["pipeline"].pop(key, None)
            _drop_how_reached(ident["pipeline"])
            if self.kind == "original":  # the agents do not run: their settings change nothing
                for key in ("decomposer", "sequencer", "on_decompose_failure", "on_sequence_failure"):
                    ident["pipeline"].pop(key, None)
        if self.kind == "precomputed":
            ident["images_dir"] = str(Path(self.images_dir or "").resolve())
        if self.kind == "callable":
            ident["target"] = self.target
        return ident

    def config_hash(self) -> str:
        return content_key("method", self.identity())[:16]


def _drop_how_reached(pipeline: dict[str, Any]) -> None:
    """Timeouts, retries, keys and concurrency of the agents, the verify judge and the editor never
    change the pixels: a method keeps its results when only they change."""
    def keep(holder: dict[str, Any], name: str) -> None:
        if isinstance(holder.get(name), dict):
            kept = answer_settings(holder[name])
            if isinstance(kept.get("options"), dict) and not kept["options"]:
                del kept["options"]
            holder[name] = kept
            if not kept:  # only how it is reached was off its defaults
                del holder[name]

    for name in ("decomposer", "sequencer", "editor"):
        keep(pipeline, name)
    if isinstance(pipeline.get("verify"), dict):
        keep(pipeline["verify"], "judge")
        if not pipeline["verify"]:
            del pipeline["verify"]


def _verify_config(values: dict[str, Any]) -> VerifyConfig:
    """A ``VerifyConfig`` from a dict (nested judge and prices too); unknown keys are errors."""
    from imageedit_r1.config import load_config

    return load_config(VerifyConfig, data=values, where="verify")


def _same_model(a: str, b: str) -> bool:
    """One model under two names: equal, or an alias and its dated snapshot (gpt-4o, gpt-4o-2024-08-06)."""
    a, b = (name.strip().lower().removeprefix("models/") for name in (a, b))
    return bool(a and b) and (a == b or is_snapshot(a, b) or is_snapshot(b, a))


def verifier_judge_overlaps(config: EvalConfig) -> list[str]:
    """Warnings for methods whose verifier is also an evaluation judge: a judge prefers the edits it
    picked itself, so that judge's column overstates the method."""
    warnings = []
    for method in config.methods:
        if method.kind != "pipeline-verify" or method.verify is None:
            continue
        model = method.verify.judge.model
        for judge in config.judges:
            if _same_model(model, judge.model):
                warnings.append(
                    f"method {method.name!r} verifies with {model}, which is also the judge {judge.name!r} "
                    f"({judge.model}): a judge prefers the edits it picked itself, so {judge.name!r} scores "
                    f"for {method.name!r} are biased upward; use another verifier, or read the other judges")
    return warnings


def _non_default(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``values`` minus what equals ``defaults`` (nested dicts compared key by key), so that a new
    pipeline setting with a default never changes the hash of a method that does not use it."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            nested = _non_default(value, default)
            if nested:
                out[key] = nested
        elif value != default:
            out[key] = value
    return out


@dataclass
class EstimateConfig:
    image_side: int = 1024  # assumed image size when originals are not on disk yet
    completion_tokens: int = 250  # expected reply length of a judgment
    plan_tokens: int = 400  # expected answer tokens of one plan (decomposition + sub-requests)


@dataclass
class EvalConfig:
    out_dir: str = "runs/eval"
    benchmarks: list[BenchmarkConfig] = field(default_factory=list)
    methods: list[MethodConfig] = field(default_factory=list)
    judges: list[JudgeConfig] = field(default_factory=list)
    concurrency: int = 8  # judge calls in flight
    edit_concurrency: int = 1  # edits in flight (1 for a local GPU editor)
    max_cost_usd: float | None = None  # refuse to start when the estimate is above this
    # Referenced from methods as ${base_decomposer} / ${trained_decomposer} in YAML.
    base_decomposer: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    trained_decomposer: str = ""
    prices: dict[str, Price] = field(default_factory=dict)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    # "local": edits in this process; "ray": one editor replica per GPU of a Ray cluster (docs/evaluation.md).
    executor: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> None:
        problems: list[str] = []
        for kind, items in (("benchmark", self.benchmarks), ("method", self.methods), ("judge", self.judges)):
            names = [item.name for item in items]
            if any(not name for name in names):
                problems.append(f"every {kind} needs a name")
            dupes = sorted({name for name in names if names.count(name) > 1})
            if dupes:
                problems.append(f"duplicate {kind} names: {dupes}")
        for bench in self.benchmarks:
            if bench.source == "manifest" and not bench.manifest:
                problems.append(f"benchmark {bench.name!r}: source 'manifest' needs 'manifest: PATH'")
            if not bench.source and not bench.subset:
                problems.append(f"benchmark {bench.name!r}: set 'subset' (a subset file) or 'source'")
        for method in self.methods:
            if method.kind not in METHOD_KINDS:
                problems.append(f"method {method.name!r}: kind {method.kind!r} is not one of {METHOD_KINDS}")
            if method.kind == "precomputed" and not method.images_dir:
                problems.append(f"method {method.name!r}: kind 'precomputed' needs images_dir")
            if method.kind == "callable" and (not method.target or ":" not in method.target):
                problems.append(f"method {method.name!r}: kind 'callable' needs target 'module:function'")
            if method.kind == "pipeline-verify" and method.verify is None:
                problems.append(f"method {method.name!r}: kind 'pipeline-verify' needs a 'verify' section "
                                "(imageedit_r1.pipeline.VerifyConfig keys; {} for the defaults)")
            elif method.kind != "pipeline-verify" and method.verify is not None:
                problems.append(f"method {method.name!r}: 'verify' settings need kind 'pipeline-verify'")
            if method.mode not in ("single-turn", "multi-turn"):
                problems.append(f"method {method.name!r}: mode must be 'single-turn' or 'multi-turn'")
            elif method.kind in ("original", *PIPELINE_KINDS):
                try:
                    method.pipeline_config().validate()
                except ValueError as exc:
                    problems.append(f"method {method.name!r}: {exc}")
        for index, judge in enumerate(self.judges):
            if judge.backend not in JUDGE_BACKENDS:
                problems.append(f"judge {judge.name!r}: backend {judge.backend!r} is not one of {JUDGE_BACKENDS} "
                                "(an OpenAI-compatible server is backend 'openai' with its base_url)")
            if not judge.model:
                problems.append(f"judge {judge.name!r}: set 'model' (a pinned model id)")
            problems += [f"judge {judge.name!r}: {problem}" for problem in judge.problems(f"judges[{index}]")]
        if self.concurrency < 1 or self.edit_concurrency < 1:
            problems.append("concurrency and edit_concurrency must be >= 1")
        problems += executor_problems(self.executor, self.ray)
        if problems:
            raise ValueError("invalid evaluation config:\n  - " + "\n  - ".join(problems))

    def method(self, name: str) -> MethodConfig:
        for method in self.methods:
            if method.name == name:
                return method
        raise KeyError(f"no method named {name!r}; have {[m.name for m in self.methods]}")


def load_eval_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    """The YAML at ``path`` (default: the packaged paper setup) with ``key=value`` overrides.

    A method, judge or benchmark is overridden by name or by position: ``methods.NAME.KEY=VALUE``
    (any ``MethodConfig`` key, pipeline keys included: ``methods.flux-r1.on_decompose_failure=keywords``,
    ``methods.flux-r1.decomposer.model=/ckpt/merged``), ``judges.GPT-4o.reasks=2``,
    ``benchmarks[0].limit=5``. Unknown keys are one-line ``ConfigError``s.
    """
    from imageedit_r1.config import load_config, read_config_file

    path = path or DEFAULT_CONFIG
    raw = read_config_file(path)
    raw["methods"] = [_expand_editor_shorthand(m) for m in raw.get("methods") or []]
    config = load_config(EvalConfig, overrides=list(overrides), data=raw, where=str(path))
    config.validate()
    return config


def _expand_editor_shorthand(method: Any) -> Any:
    if not isinstance(method, dict):
        return method
    method = dict(method)
    options = method.pop("editor_options", None)
    if isinstance(method.get("editor"), str):
        method["editor"] = {"name": method["editor"], "options": options or {}}
    elif options is not None:
        method["editor"] = {**(method.get("editor") or {}), "options": options}
    return method
