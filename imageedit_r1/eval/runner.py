"""The benchmark runner: methods × benchmarks × judges, in two resumable stages.

Stage 1 (edit) writes each original and edited image to disk once and appends one record per
(benchmark, sample, method config hash) to ``edits.jsonl``. Stage 2 (judge) asks every judge about
every successful edit and appends one record per (benchmark, sample, method config hash, judge
model, prompt hash, judge settings) to ``results.jsonl``. A record is appended (flushed and
fsynced) as soon as its item finishes, so a run killed at any point restarts where it stopped
and never pays twice for a finished item. Failures are recorded with their kind and are never
scored; transient ones (retries exhausted) are tried again by the next run, permanent ones
(refusals, unreadable replies) only with ``retry_failed``. A refusal, by an editor or a judge, is
recorded as ``error_kind: "refusal"`` with ``refusal: {"reason", "message"}``, the provider's code.

Layout of ``out_dir``::

    run.json            methods / benchmarks / judges of the latest run (tables read this)
    edits.jsonl         edit records        results.jsonl     judgment records
    originals/<benchmark>/<sample>.png      edits/<method>-<hash>/<benchmark>/<sample>.png
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imageedit_r1.agents.asking import ask_log_of
from imageedit_r1.agents.judge import Judge, JudgeError, build_judge, judge_prompt, judge_prompt_sha256
from imageedit_r1.costs import cost_usd, image_tokens, price_for, text_tokens
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.benchmark_samples import load_benchmark, safe_name
from imageedit_r1.eval.config import PIPELINE_KINDS, EvalConfig, MethodConfig, verifier_judge_overlaps
from imageedit_r1.eval.methods import EditFn, build_edit_fn
from imageedit_r1.eval.ratelimit import RateLimiter
from imageedit_r1.executors import executor_entry
from imageedit_r1.images import ImageLoadError, image_sha256, load_image
from imageedit_r1.jsonl import JsonlStore, content_key, read_jsonl
from imageedit_r1.refusals import find_refusal, refusal_record
from imageedit_r1.unavailable import is_unavailable

log = logging.getLogger("imageedit_r1.eval")

EDITS_FILE, RESULTS_FILE, RUN_FILE = "edits.jsonl", "results.jsonl", "run.json"
KNOWN_KEY_VARIABLES = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
RAW_REPLY_LIMIT = 4000


# ----------------------------------------------------------------------------- secrets


class Redactor:
    """Replaces the values of API-key variables in anything written to disk or logged."""

    def __init__(self, variables: list[str]) -> None:
        values = {os.environ.get(name, "") for name in [*variables, *KNOWN_KEY_VARIABLES] if name}
        self.secrets = sorted((value for value in values if len(value) >= 6), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, "[REDACTED]")
        return value

    def record(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.record(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.record(item) for item in value]
        return value


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.text(record.getMessage())
        record.args = ()
        return True


# ----------------------------------------------------------------------------- failures


def classify_failure(exc: BaseException) -> tuple[str, bool]:
    """(kind, retry on the next run?) for an exception raised while editing or judging.

    A refusal (a safety block or a declining model, however deeply wrapped: a pipeline failure
    carries the editor's refusal as its cause) is ``refusal`` and permanent: the same input gets
    the same answer, so only ``retry_failed`` pays for it again.
    """
    from imageedit_r1.retry import RetriesExhausted

    if getattr(exc, "failure_kind", None):  # errors that know their kind (a lost Ray replica)
        return exc.failure_kind, bool(getattr(exc, "retryable", True))
    if find_refusal(exc) is not None:
        return "refusal", False
    if isinstance(exc, JudgeError):
        return exc.kind, False
    if isinstance(exc, RetriesExhausted):
        return "api_unavailable", True
    if isinstance(exc, (ImageLoadError, FileNotFoundError)):
        return "input_error", False
    try:
        from imageedit_r1.backends import BackendError
    except ImportError:  # backends not installed: only the generic kinds apply
        BackendError = ()  # noqa: N806
    if BackendError and isinstance(exc, BackendError):
        return "api_error", False
    return "error", True


# ----------------------------------------------------------------------------- records


@dataclass
class Item:
    benchmark: str
    sample: Any
    method: MethodConfig

    @property
    def sample_id(self) -> str:
        return str(self.sample.id)


@dataclass
class Summary:
    edits: Counter = field(default_factory=Counter)
    judgments: Counter = field(default_factory=Counter)
    failure_kinds: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    setup_errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            "edits:      " + ", ".join(f"{k} {v}" for k, v in sorted(self.edits.items())) if self.edits else "edits: none",
            "judgments:  " + ", ".join(f"{k} {v}" for k, v in sorted(self.judgments.items()))
            if self.judgments else "judgments: none",
        ]
        if self.failure_kinds:
            out.append("failures:   " + ", ".join(f"{k} {v}" for k, v in sorted(self.failure_kinds.items())))
        out.append(f"tokens:     {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion")
        cost = f"cost:       ${self.cost_usd:,.4f}"
        if self.unpriced_calls:
            cost += f" (+ {self.unpriced_calls} calls with no price in the config)"
        out.append(cost)
        out.extend(f"not run:    {error}" for error in self.setup_errors)
        return out


@dataclass
class EstimateRow:
    what: str
    calls: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _save_png_atomically(image: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    image.save(tmp, format="PNG")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def compact_jsonl(path: Path, key_field: str = "key") -> int:
    """Rewrite a JSONL store with one line per key (the last written), atomically; returns lines dropped."""
    records: dict[str, dict[str, Any]] = {}
    lines = 0
    for record in read_jsonl(path):
        lines += 1
        records[record.get(key_field)] = record
    if lines == len(records):
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records.values():
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return lines - len(records)


@contextlib.contextmanager
def exclusive_run_dir(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another evaluation run is using {out_dir}; wait for it or pick another out_dir") \
                from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- the runner


class EvalRunner:
    """Runs an ``EvalConfig``. Inject ``edit_fn_factory`` / ``judge_factory`` / ``sample_loader``
    to evaluate custom editors or to test without models."""

    def __init__(self, config: EvalConfig, *, edit_fn_factory: Callable[[MethodConfig], EditFn] = build_edit_fn,
                 judge_factory: Callable[[JudgeConfig], Judge] = build_judge,
                 sample_loader: Callable[[Any], list[Any]] = load_benchmark, retry_failed: bool = False,
                 progress: bool = True) -> None:
        config.validate()
        self.config = config
        self.out = Path(config.out_dir)
        self.edit_fn_factory = edit_fn_factory
        remote = executor_entry(config.executor, "eval_edits")
        if remote is not None:  # GPU methods run on Ray replicas; this runner stays the only writer
            self.edit_fn_factory = remote(config, edit_fn_factory)
        self.judge_factory = judge_factory
        self.sample_loader = sample_loader
        self.retry_failed = retry_failed
        self.progress = progress
        self.redactor = Redactor([judge.api_key_env for judge in config.judges if judge.api_key_env])
        # Shown by the caller (``eval run`` prints them before the estimate), logged by ``run``
        # and kept in run.json: logging them here, before any handler is set, printed them twice.
        self.warnings = verifier_judge_overlaps(config)
        self.prompt_sha256 = judge_prompt_sha256()
        self._samples: dict[str, list[Any]] | None = None
        self._lock = threading.Lock()
        self.edits = JsonlStore(self.out / EDITS_FILE)
        self.results = JsonlStore(self.out / RESULTS_FILE)

    # -- planning

    def samples(self) -> dict[str, list[Any]]:
        if self._samples is None:
            self._samples = {bench.name: self.sample_loader(bench) for bench in self.config.benchmarks}
        return self._samples

    def items(self) -> list[Item]:
        return [Item(bench, sample, method) for method in self.config.methods
                for bench, samples in self.samples().items() for sample in samples]

    @staticmethod
    def edit_key(item: Item) -> str:
        return content_key("edit", item.benchmark, item.sample_id, item.method.config_hash())

    def judgment_key(self, item: Item, judge: JudgeConfig) -> str:
        return content_key("judgment", item.benchmark, item.sample_id, item.method.config_hash(), judge.model,
                           self.prompt_sha256, judge.settings())

    def original_path(self, item: Item) -> Path:
        return self.out / "originals" / safe_name(item.benchmark) / f"{safe_name(item.sample_id)}.png"

    def edited_path(self, item: Item) -> Path:
        folder = f"{safe_name(item.method.name)}-{item.method.config_hash()}"
        return self.out / "edits" / folder / safe_name(item.benchmark) / f"{safe_name(item.sample_id)}.png"

    def _finished(self, record: dict[str, Any] | None, ok_status: str) -> bool:
        if record is None:
            return False
        if record.get("status") == ok_status:
            return True
        return not (self.retry_failed or record.get("retryable", True))

    def edit_needed(self, item: Item) -> bool:
        record = self.edits.get(self.edit_key(item))
        if record is not None and record.get("status") == "ok":
            return not (self.out / record["edited_path"]).exists()
        return not self._finished(record, "ok")

    def judgment_needed(self, item: Item, judge: JudgeConfig, edited_sha: str | None) -> bool:
        record = self.results.get(self.judgment_key(item, judge))
        if record is not None and record.get("status") == "scored":
            return edited_sha is not None and record.get("edited_sha256") != edited_sha
        return not self._finished(record, "scored")

    def write_manifest(self) -> None:
        manifest = {
            "updated_at": _now(),
            "prompt_sha256": self.prompt_sha256,
            "benchmarks": [bench.name for bench in self.config.benchmarks],
            "samples": {name: len(samples) for name, samples in self.samples().items()},
            # The benchmarks' sizes before --limit: tables show n of these.
            "subset_sizes": {name: getattr(samples, "total", len(samples)) or len(samples)
                             for name, samples in self.samples().items()},
            "methods": [{"name": m.name, "label": m.label or m.name, "group": m.group, "baseline": m.baseline,
                         "kind": m.kind, "mode": m.mode, "hash": m.config_hash(), "identity": m.identity()}
                        for m in self.config.methods],
            "judges": [{"name": j.name, "backend": j.backend, "model": j.model, "settings": j.settings()}
                       for j in self.config.judges],
            "warnings": self.warnings,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(self.redactor.record(manifest), indent=2), encoding="utf-8")
        os.replace(tmp, self.out / RUN_FILE)

    # -- estimate

    def estimate(self) -> list[EstimateRow]:
        items = self.items()
        rows: list[EstimateRow] = []
        pending_edits: list[Item] = []
        verify_rows: list[EstimateRow] = []
        for method in self.config.methods:
            todo = [item for item in items if item.method is method and self.edit_needed(item)]
            pending_edits += todo
            steps = 2 if method.mode == "multi-turn" and method.kind in PIPELINE_KINDS else 1
            calls = len(todo) * steps
            what = f"edit   {method.name}"
            if method.kind == "pipeline-verify":
                verify = method.verify
                calls *= verify.attempts * verify.candidates  # at most: every attempt runs
                what += f" (<= {verify.attempts}x{verify.candidates} each)"
                verify_rows.append(self._verify_estimate(method, verify, todo))
            cost: float | None = 0.0
            if method.kind == "original" or method.kind in PIPELINE_KINDS:
                price = price_for(self.config.prices, method.editor.options.get("model"), method.editor.name)
                cost = cost_usd(price, images=calls) if price else 0.0
            rows.append(EstimateRow(what, calls if method.kind == "original" or method.kind in PIPELINE_KINDS
                                    else 0, cost_usd=cost))
        rows += verify_rows
        pending_set = {id(item) for item in pending_edits}
        for judge in self.config.judges:
            calls = prompt = 0
            for item in items:
                record = self.edits.get(self.edit_key(item))
                will_have_edit = id(item) in pending_set or (record or {}).get("status") == "ok"
                if not will_have_edit or not self.judgment_needed(item, judge, None):
                    continue
                calls += 1
                prompt += self._judge_prompt_tokens(item, judge, judge_prompt(item.sample.request))
            completion = calls * self.config.estimate.completion_tokens
            price = price_for(self.config.prices, judge.model)
            rows.append(EstimateRow(f"judge  {judge.name} ({judge.model})", calls, prompt, completion,
                                    cost_usd(price, prompt, completion) if price else None))
        return rows

    def _verify_estimate(self, method: MethodConfig, verify, todo: list[Item]) -> EstimateRow:
        """The verifier's calls for a method's pending edits, at most: one per candidate of every
        attempt (capped by ``max_calls``, which also counts the first edit), plus their tokens."""
        from imageedit_r1.agents.verifier import verification_prompt

        per_item = verify.attempts * verify.candidates
        if verify.max_calls is not None:
            per_item = max(1, min(per_item, verify.max_calls - 1))
        calls = prompt = 0
        for item in todo:
            # The sub-requests are not known before planning: the request stands in for them.
            text = verification_prompt(verify.rubric, item.sample.request, [item.sample.request])
            calls += per_item
            prompt += per_item * self._judge_prompt_tokens(item, verify.judge, text)
        completion = calls * self.config.estimate.completion_tokens
        price = price_for(self.config.prices, verify.judge.model)
        if price is None and (verify.prices.input_per_mtok or verify.prices.output_per_mtok):
            price = verify.prices
        return EstimateRow(f"verify {method.name} ({verify.judge.model}, at most)", calls, prompt, completion,
                           cost_usd(price, prompt, completion) if price else None)

    def _judge_prompt_tokens(self, item: Item, judge: JudgeConfig, text: str) -> int:
        """Prompt tokens of one judge ask about ``item``: ``text`` and both images at the judge's side."""
        width, height = self._original_size(item, self.config.estimate.image_side)
        scale = min(1.0, judge.max_image_side / max(width, height))
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        return text_tokens(text) + 2 * image_tokens(judge.provider, width, height)

    def _original_size(self, item: Item, default: int) -> tuple[int, int]:
        """The original's size when it is on disk already (header only), else ``default`` square."""
        path = self.original_path(item)
        if path.exists():
            from PIL import Image

            with contextlib.suppress(OSError), Image.open(path) as image:
                return image.size
        return default, default

    @staticmethod
    def format_estimate(rows: list[EstimateRow]) -> str:
        lines = [f"{'what':<48} {'calls':>8} {'prompt tok':>12} {'compl. tok':>11} {'est. USD':>10}"]
        total = 0.0
        unpriced = False
        for row in rows:
            usd = "no price" if row.cost_usd is None else f"{row.cost_usd:,.2f}"
            unpriced |= row.cost_usd is None and row.calls > 0
            total += row.cost_usd or 0.0
            lines.append(f"{row.what:<48} {row.calls:>8,} {row.prompt_tokens:>12,} {row.completion_tokens:>11,} {usd:>10}")
        lines.append(f"{'total':<48} {sum(r.calls for r in rows):>8,} {'':>12} {'':>11} {total:>10,.2f}"
                     + ("  (+ unpriced models)" if unpriced else ""))
        return "\n".join(lines)

    # -- stage 1: edits

    def _edit_one(self, item: Item, edit_fn: EditFn, summary: Summary) -> None:
        started = time.monotonic()
        record: dict[str, Any] = {
            "benchmark": item.benchmark, "sample_id": item.sample_id, "method": item.method.name,
            "method_label": item.method.label or item.method.name, "method_group": item.method.group,
            "method_hash": item.method.config_hash(), "request": item.sample.request,
        }
        try:
            original = load_image(item.sample.image)
            original_path = self.original_path(item)
            if not original_path.exists():
                _save_png_atomically(original, original_path)
            output = edit_fn(item.sample, original)
            edited = load_image(output.image)  # validates and normalises whatever the editor returned
            edited_path = self.edited_path(item)
            _save_png_atomically(edited, edited_path)
            record.update(status="ok", original_path=str(original_path.relative_to(self.out)),
                          edited_path=str(edited_path.relative_to(self.out)), edited_sha256=image_sha256(edited),
                          trace=output.trace)
            if output.worker:
                record["worker"] = output.worker
            outcome, kind = "done", None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            if is_unavailable(exc):  # every item would hit it: run_edits stops the method
                raise
            kind, retryable = classify_failure(exc)
            record.update(status="failed", error_kind=kind, error=f"{type(exc).__name__}: {exc}", retryable=retryable)
            if kind == "refusal":
                record["refusal"] = refusal_record(exc)
            if isinstance(getattr(exc, "trace", None), dict):  # the pipeline's trace up to the failure
                record["trace"] = exc.trace
            if isinstance(getattr(exc, "worker", None), dict):  # the Ray replica it failed on
                record["worker"] = exc.worker
            outcome = "failed"
            log.warning("edit failed: %s %s %s: %s", item.method.name, item.benchmark, item.sample_id, exc)
        record.update(seconds=round(time.monotonic() - started, 3), finished_at=_now())
        self.edits.put(self.edit_key(item), self.redactor.record(record))
        with self._lock:
            summary.edits[outcome] += 1
            if kind is not None:
                summary.failure_kinds[f"edit/{kind}"] += 1

    def run_edits(self, summary: Summary) -> None:
        items = self.items()
        for method in self.config.methods:
            todo = [item for item in items if item.method is method and self.edit_needed(item)]
            cached = sum(1 for item in items if item.method is method) - len(todo)
            if cached:
                summary.edits["cached"] += cached
            if not todo:
                continue
            try:
                edit_fn = self.edit_fn_factory(method)
            except Exception as exc:  # noqa: BLE001 - the method is skipped, its items stay pending
                message = self.redactor.text(f"method {method.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("cannot set up %s", message)
                continue
            # An edit function spread over replicas says how many items it takes at once.
            pool = ThreadPoolExecutor(max_workers=getattr(edit_fn, "concurrency", None) or self.config.edit_concurrency)
            wait = True
            try:
                futures = [pool.submit(self._edit_one, item, edit_fn, summary) for item in todo]
                bar = self._progress(as_completed(futures), len(futures), f"edit {method.name}")
                for future in bar:
                    future.result()
                    if hasattr(bar, "set_postfix"):  # tqdm: done, rate and ETA, plus failures
                        bar.set_postfix(failed=summary.edits["failed"], refresh=False)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                # Stop this method: its remaining items stay pending.
                message = self.redactor.text(f"method {method.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("stopping %s", message)
            except KeyboardInterrupt:
                wait = False  # Ctrl-C: don't wait for edits in flight; finished ones are on disk
                raise
            finally:
                pool.shutdown(wait=wait, cancel_futures=True)
                if hasattr(edit_fn, "close"):  # Ray replicas hand their GPUs back now
                    edit_fn.close()
            del edit_fn  # free the method's models before loading the next

    # -- stage 2: judgments

    def _judge_one(self, item: Item, cfg: JudgeConfig, judge: Judge, limiter: RateLimiter,
                   edit_record: dict[str, Any], summary: Summary) -> None:
        started = time.monotonic()
        record: dict[str, Any] = {
            "benchmark": item.benchmark, "sample_id": item.sample_id, "method": item.method.name,
            "method_label": item.method.label or item.method.name, "method_group": item.method.group,
            "method_hash": item.method.config_hash(), "judge": cfg.name, "judge_backend": cfg.backend,
            "judge_model": cfg.model, "prompt_sha256": self.prompt_sha256, "judge_settings": cfg.settings(),
            "request": item.sample.request, "edited_sha256": edit_record.get("edited_sha256"),
        }
        prompt_tokens = completion_tokens = 0
        try:
            original = load_image(self.out / edit_record["original_path"])
            edited = load_image(self.out / edit_record["edited_path"])
            limiter.acquire()
            judgment = judge(original, edited, item.sample.request)
            prompt_tokens, completion_tokens = judgment.prompt_tokens, judgment.completion_tokens
            scores = judgment.scores
            record.update(status="scored", fulfillment=scores.fulfillment, quality=scores.quality,
                          preservation=scores.preservation, total=scores.total, reasoning=scores.reasoning,
                          parsed_from=scores.parsed_from, notes=scores.notes, served_model=judgment.served_model,
                          calls=judgment.calls, raw=judgment.raw[:RAW_REPLY_LIMIT])
            outcome = "scored"
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record, never a score
            kind, retryable = classify_failure(exc)
            asked = ask_log_of(exc)
            prompt_tokens, completion_tokens = (asked.prompt_tokens, asked.completion_tokens) if asked else (0, 0)
            record.update(status="failed", error_kind=kind, error=f"{type(exc).__name__}: {exc}", retryable=retryable,
                          raw=(getattr(exc, "raw", None) or "")[:RAW_REPLY_LIMIT] or None)
            if kind == "refusal":
                record["refusal"] = refusal_record(exc)
            outcome = "failed"
            log.warning("judgment failed: %s %s %s by %s: %s", item.method.name, item.benchmark, item.sample_id,
                        cfg.name, exc)
        cost = cost_usd(price_for(self.config.prices, cfg.model, record.get("served_model")),
                        prompt_tokens, completion_tokens)
        record.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                      seconds=round(time.monotonic() - started, 3), finished_at=_now())
        self.results.put(self.judgment_key(item, cfg), self.redactor.record(record))
        with self._lock:
            summary.judgments[outcome] += 1
            if outcome == "failed":
                summary.failure_kinds[f"judge/{record['error_kind']}"] += 1
            summary.prompt_tokens += prompt_tokens
            summary.completion_tokens += completion_tokens
            if cost is None:
                summary.unpriced_calls += 1 if prompt_tokens or completion_tokens else 0
            else:
                summary.cost_usd += cost

    def run_judgments(self, summary: Summary) -> None:
        tasks: list[tuple[Item, JudgeConfig, dict[str, Any]]] = []
        for item in self.items():
            edit_record = self.edits.get(self.edit_key(item))
            if not edit_record or edit_record.get("status") != "ok":
                continue
            for judge in self.config.judges:
                if self.judgment_needed(item, judge, edit_record.get("edited_sha256")):
                    tasks.append((item, judge, edit_record))
                else:
                    summary.judgments["cached"] += 1
        if not tasks:
            return
        judges: dict[str, tuple[Judge, RateLimiter]] = {}
        for cfg in {task[1].name: task[1] for task in tasks}.values():
            try:
                judges[cfg.name] = (self.judge_factory(cfg), RateLimiter(cfg.requests_per_minute))
            except Exception as exc:  # noqa: BLE001 - that judge's items stay pending
                message = self.redactor.text(f"judge {cfg.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("cannot set up %s", message)
        tasks = [task for task in tasks if task[1].name in judges]
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency)
        wait = True
        try:
            futures = [pool.submit(self._judge_one, item, cfg, *judges[cfg.name], edit_record, summary)
                       for item, cfg, edit_record in tasks]
            for future in self._progress(as_completed(futures), len(futures), "judge"):
                future.result()
        except KeyboardInterrupt:
            wait = False  # Ctrl-C: don't wait for calls in flight; finished judgments are on disk
            raise
        finally:
            pool.shutdown(wait=wait, cancel_futures=True)

    # -- both

    def run(self, stage: str = "all") -> Summary:
        if stage not in ("all", "edit", "judge"):
            raise ValueError("stage must be 'all', 'edit' or 'judge'")
        summary = Summary()
        for warning in self.warnings:
            log.info("warning: %s", warning)
        with exclusive_run_dir(self.out):
            self.write_manifest()
            if stage in ("all", "edit"):
                self.run_edits(summary)
            if stage in ("all", "judge"):
                self.run_judgments(summary)
            for name in (EDITS_FILE, RESULTS_FILE):
                if (self.out / name).exists():
                    compact_jsonl(self.out / name)
        return summary

    def _progress(self, iterable, total: int, desc: str):
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="item", dynamic_ncols=True)


def summary_dict(summary: Summary) -> dict[str, Any]:
    return asdict(summary)
