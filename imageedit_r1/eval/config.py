"""Evaluation configuration: benchmarks × methods × judges, with the paper's defaults.

Loaded with ``imageedit_r1.config.load_config(EvalConfig, yaml, overrides)``; the shipped
``configs/eval.yaml`` reproduces Table 1's setup. Only the fields listed in
``MethodConfig.identity`` decide whether an edited image can be reused, so relabelling a method
never re-runs it, while changing its editor, decomposer, mode or seed always does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.jsonl import content_key

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "eval.yaml"

METHOD_KINDS = ("original", "pipeline", "pipeline-verify", "precomputed", "identity", "callable")
PIPELINE_KINDS = ("pipeline", "pipeline-verify")  # ImageEdit-R1 through imageedit_r1.pipeline
JUDGE_BACKENDS = ("openai", "gemini", "openai-compatible")


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
class MethodConfig:
    name: str = ""
    label: str = ""  # the row name in tables ("Original", "ImageEdit-R1 (w/o RL)", "ImageEdit-R1")
    group: str = ""  # the edit model the row belongs to ("FLUX.1-Kontext-dev")
    kind: str = "original"  # one of METHOD_KINDS
    baseline: bool = False  # deltas in the table are taken against the baseline row of the group
    editor: str = "flux-kontext"
    editor_options: dict[str, Any] = field(default_factory=dict)
    # Chat backend settings of the decomposition / sequencing agents (kinds "pipeline", "pipeline-verify").
    decomposer: dict[str, Any] = field(default_factory=dict)
    sequencer: dict[str, Any] = field(default_factory=dict)
    # Kind "pipeline-verify": the pipeline's verify stage (imageedit_r1.pipeline.VerifyConfig fields).
    verify: dict[str, Any] = field(default_factory=dict)
    mode: str = "single-turn"  # or "multi-turn"
    seed: int = 0
    images_dir: str | None = None  # kind "precomputed": <images_dir>/<sample id>.png
    target: str | None = None  # kind "callable": "package.module:function"

    def identity(self) -> dict[str, Any]:
        """The settings that determine the edited pixels."""
        ident: dict[str, Any] = {"kind": self.kind, "seed": self.seed}
        if self.kind in ("original", *PIPELINE_KINDS):
            ident.update(editor=self.editor, editor_options=dict(self.editor_options))
        if self.kind in PIPELINE_KINDS:  # decomposer / sequencer settings are dicts of AgentConfig fields
            ident.update(decomposer=dict(self.decomposer), sequencer=dict(self.sequencer), mode=self.mode)
        if self.kind == "pipeline-verify":
            ident["verify"] = dict(self.verify)
        if self.kind == "precomputed":
            ident["images_dir"] = str(Path(self.images_dir or "").resolve())
        if self.kind == "callable":
            ident["target"] = self.target
        return ident

    def config_hash(self) -> str:
        return content_key("method", self.identity())[:16]


@dataclass
class JudgeConfig:
    name: str = ""  # the column name in tables ("GPT-4o")
    backend: str = "openai"  # one of JUDGE_BACKENDS
    model: str = ""  # pin a dated snapshot: an alias can change under a running study
    base_url: str | None = None
    api_key_env: str | None = None  # the variable holding the key; the key itself is never stored
    timeout: float = 120.0
    max_tokens: int = 1024
    structured: bool = True  # request JSON-schema output; off for servers that lack it
    max_image_side: int = 1024  # both images are scaled down to this before sending
    requests_per_minute: float | None = None
    attempts: int = 4  # transport attempts per call (429 / 5xx / timeouts)
    retry_base_delay: float = 1.0  # seconds before the first retry; doubles each time
    retry_max_delay: float = 30.0
    invalid_reply_attempts: int = 2  # asks per judgment when a reply cannot be read


@dataclass
class PriceConfig:
    input_per_mtok: float = 0.0  # USD per million prompt tokens
    output_per_mtok: float = 0.0  # USD per million completion tokens
    per_image: float = 0.0  # USD per generated image (API editors)


@dataclass
class EstimateConfig:
    image_side: int = 1024  # assumed image size when originals are not on disk yet
    completion_tokens: int = 250  # expected reply length of a judgment


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
    prices: dict[str, PriceConfig] = field(default_factory=dict)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)

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
            if method.kind == "pipeline-verify":
                try:
                    verify_settings(method)
                except Exception as exc:  # noqa: BLE001 - every bad setting becomes one line
                    problems.append(f"method {method.name!r}: verify: {exc}".splitlines()[0])
            elif method.verify:
                problems.append(f"method {method.name!r}: 'verify' settings need kind 'pipeline-verify'")
            if method.mode not in ("single-turn", "multi-turn"):
                problems.append(f"method {method.name!r}: mode must be 'single-turn' or 'multi-turn'")
        for judge in self.judges:
            if judge.backend not in JUDGE_BACKENDS:
                problems.append(f"judge {judge.name!r}: backend {judge.backend!r} is not one of {JUDGE_BACKENDS}")
            if not judge.model:
                problems.append(f"judge {judge.name!r}: set 'model' (a pinned model id)")
            if judge.backend == "openai-compatible" and not judge.base_url:
                problems.append(f"judge {judge.name!r}: an openai-compatible judge needs base_url")
        if self.concurrency < 1 or self.edit_concurrency < 1:
            problems.append("concurrency and edit_concurrency must be >= 1")
        if problems:
            raise ValueError("invalid evaluation config:\n  - " + "\n  - ".join(problems))

    def method(self, name: str) -> MethodConfig:
        for method in self.methods:
            if method.name == name:
                return method
        raise KeyError(f"no method named {name!r}; have {[m.name for m in self.methods]}")


def verify_settings(method: MethodConfig):
    """The method's ``imageedit_r1.pipeline.VerifyConfig`` (defaults filled in, validated)."""
    from omegaconf import OmegaConf

    from imageedit_r1.pipeline.config import VerifyConfig

    merged = OmegaConf.merge(OmegaConf.structured(VerifyConfig), OmegaConf.create(dict(method.verify)))
    return OmegaConf.to_object(merged).validate()


def _same_model(a: str, b: str) -> bool:
    """One model under two names: equal, or an alias and its dated snapshot (gpt-4o, gpt-4o-2024-08-06)."""
    a, b = (name.strip().lower().removeprefix("models/") for name in (a, b))
    return bool(a and b) and (a == b or a.startswith(b + "-2") or b.startswith(a + "-2"))


def verifier_judge_overlaps(config: EvalConfig) -> list[str]:
    """Warnings for methods whose verifier is also an evaluation judge: a judge prefers the edits it
    picked itself, so that judge's column overstates the method."""
    warnings = []
    for method in config.methods:
        if method.kind != "pipeline-verify":
            continue
        try:
            model = verify_settings(method).judge.model
        except Exception:  # noqa: BLE001 - validate() reports bad settings
            continue
        for judge in config.judges:
            if _same_model(model, judge.model):
                warnings.append(
                    f"method {method.name!r} verifies with {model}, which is also the judge {judge.name!r} "
                    f"({judge.model}): a judge prefers the edits it picked itself, so {judge.name!r} scores "
                    f"for {method.name!r} are biased upward; use another verifier, or read the other judges")
    return warnings


def load_eval_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> EvalConfig:
    from imageedit_r1.config import load_config

    config = load_config(EvalConfig, path or DEFAULT_CONFIG, list(overrides))
    config.validate()
    return config
