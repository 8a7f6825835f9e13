"""The benchmark runner: methods × benchmarks × judges, in resumable stages.

Stage 0 (plan) makes each pipeline method's plans before any edit: once per (agent identity,
sample), in batches, shared by every method with the same agents (``plans.py``; ``plans.jsonl``).
Stage 1 (edit) executes them (pipeline methods never plan here) and writes each original and edited image to disk once and appends one record per
(benchmark, sample, method config hash) to ``edits.jsonl``. Stage 2 (judge) asks every judge about
every successful edit and appends one record per (benchmark, sample, method config hash, judge
model, prompt hash, judge settings) to ``results.jsonl``. A record is appended (flushed and
fsynced) as soon as its item finishes, so a run killed at any point restarts where it stopped
and never pays twice for a finished item. Failures are recorded with their kind and are never
scored; transient ones (retries exhausted) are tried again by the next run, permanent ones
(refusals, unreadable replies) only with ``retry_failed``. A refusal, by an editor or a judge, is
recorded as ``error_kind: "refusal"`` with ``refusal: {"reason", "message"}``, the provider's code.
What a record holds is ``records.py``; what ``--estimate`` counts is ``estimate.py``.

One run at a time works in ``out_dir``: the folder's run lock is taken before the stores are read
(``EvalRunner.locked``), so a second run waits for the first and then does only what it left (or
stops, with ``if_busy="stop"``). Everything written goes through the secret policy
(``imageedit_r1.masking``).

Layout of ``out_dir``::

    run.json            methods / benchmarks / judges of the latest run (tables read this)
    plans.jsonl         shared plans        edits.jsonl       edit records
    results.jsonl       judgment records
    originals/<benchmark>/<sample>.png      edits/<method>-<hash>/<benchmark>/<sample>.png
    run.log             the run's log          .lock             the run lock (holder's pid)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from imageedit_r1.agents.asking import ask_log_of
from imageedit_r1.agents.judge import Judge, build_judge, judge_prompt_sha256
from imageedit_r1.costs import cost_usd, price_for
from imageedit_r1.endpoints import JudgeConfig
from imageedit_r1.eval.benchmark_samples import load_benchmark, safe_name
from imageedit_r1.eval.config import EvalConfig, MethodConfig, verifier_judge_overlaps
from imageedit_r1.eval.estimate import EstimateRow, estimate_rows, format_estimate
from imageedit_r1.eval.methods import EditFn, build_edit_fn
from imageedit_r1.eval.plans import (
    PLANS_FILE,
    PlanFailed,
    PlannerFactory,
    build_planner,
    method_agents_key,
    plan_key,
    plan_to_execute,
    run_plans,
    uses_plans,
)
from imageedit_r1.eval.ratelimit import RateLimiter
from imageedit_r1.eval.records import (
    RAW_REPLY_LIMIT,
    Item,
    Summary,
    edit_record,
    failure_fields,
    judgment_record,
    now,
    scored_fields,
)
from imageedit_r1.eval.results import run_file
from imageedit_r1.executors import executor_entry
from imageedit_r1.images import image_sha256, load_image
from imageedit_r1.masking import mask, register_config
from imageedit_r1.store import (
    JsonlStore,
    atomic_save_image,
    atomic_write_json,
    compact_jsonl,
    content_key,
    run_lock,
)
from imageedit_r1.unavailable import is_unavailable

log = logging.getLogger("imageedit_r1.eval")

EDITS_FILE, RESULTS_FILE, RUN_FILE = "edits.jsonl", "results.jsonl", "run.json"
STAGES = ("all", "plan", "edit", "judge")


# ----------------------------------------------------------------------------- the runner


class EvalRunner:
    """Runs an ``EvalConfig``. Inject ``edit_fn_factory`` / ``judge_factory`` / ``sample_loader``
    to evaluate custom editors or to test without models."""

    def __init__(self, config: EvalConfig, *, edit_fn_factory: Callable[[MethodConfig], EditFn] = build_edit_fn,
                 judge_factory: Callable[[JudgeConfig], Judge] = build_judge,
                 sample_loader: Callable[[Any], list[Any]] = load_benchmark, retry_failed: bool = False,
                 progress: bool = True, if_busy: str = "wait", planner_factory: PlannerFactory = build_planner) -> None:
        config.validate()
        register_config(config)  # every endpoint's key variable is masked in what the run writes
        self.config = config
        self.out = Path(config.out_dir)
        self.edit_fn_factory = edit_fn_factory
        remote = executor_entry(config.executor, "eval_edits")
        if remote is not None:  # GPU methods run on Ray replicas; this runner stays the only writer
            self.edit_fn_factory = remote(config, edit_fn_factory)
        self.planner_factory = planner_factory
        remote = executor_entry(config.executor, "planner")
        if remote is not None:  # local agents plan in one actor on their own GPU
            self.planner_factory = remote(config, planner_factory)
        self.judge_factory = judge_factory
        self.sample_loader = sample_loader
        self.retry_failed = retry_failed
        self.progress = progress
        # Shown by the caller (``eval run`` prints them before the estimate), logged by ``run``
        # and kept in run.json: logging them here, before any handler is set, printed them twice.
        self.warnings = verifier_judge_overlaps(config)
        self.prompt_sha256 = judge_prompt_sha256()
        self._samples: dict[str, list[Any]] | None = None
        self._lock = threading.Lock()
        # One run at a time on out_dir; the stores are read under it (``locked``).
        self.run_lock = run_lock(self.out, if_busy=if_busy)
        self._lock_depth = 0
        self._stores: tuple[JsonlStore, JsonlStore, JsonlStore] | None = None

    # -- the run folder

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``out_dir`` for this run (waiting for, or refusing, another run on it, per ``if_busy``).

        Take it before ``estimate`` to estimate what is left after a run that holds the folder now;
        ``run`` takes it too. Stores read before it are read again under it.
        """
        if self._lock_depth == 0:
            self.run_lock.acquire()
            self._stores = None
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                self.run_lock.release()

    def _open_stores(self) -> tuple[JsonlStore, JsonlStore, JsonlStore]:
        if self._stores is None:
            self._stores = (JsonlStore(self.out / EDITS_FILE), JsonlStore(self.out / RESULTS_FILE),
                            JsonlStore(self.out / PLANS_FILE))
        return self._stores

    @property
    def edits(self) -> JsonlStore:
        return self._open_stores()[0]

    @property
    def results(self) -> JsonlStore:
        return self._open_stores()[1]

    @property
    def plans(self) -> JsonlStore:
        return self._open_stores()[2]

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

    def plan_needed(self, key: str) -> bool:
        return not self._finished(self.plans.get(key), "ok")

    def edit_needed(self, item: Item) -> bool:
        record = self.edits.get(self.edit_key(item))
        if record is not None and record.get("status") == "ok":
            edited = run_file(self.out, record.get("edited_path"))
            return edited is None or not edited.exists()
        return not self._finished(record, "ok")

    def _run_file(self, record: dict[str, Any], key: str) -> Path:
        """The run's own file a record names: a path leading out of the run folder is never read
        (nor sent to a judge)."""
        path = run_file(self.out, record.get(key))
        if path is None:
            raise ValueError(f"the edit record's {key} {str(record.get(key))[:200]!r} is not a file inside the run "
                             f"folder {self.out}; re-run the edit")
        return path

    def judgment_needed(self, item: Item, judge: JudgeConfig, edited_sha: str | None) -> bool:
        record = self.results.get(self.judgment_key(item, judge))
        if record is not None and record.get("status") == "scored":
            return edited_sha is not None and record.get("edited_sha256") != edited_sha
        return not self._finished(record, "scored")

    def write_manifest(self) -> None:
        manifest = {
            "updated_at": now(),
            "prompt_sha256": self.prompt_sha256,
            "benchmarks": [bench.name for bench in self.config.benchmarks],
            "samples": {name: len(samples) for name, samples in self.samples().items()},
            # The benchmarks' sizes before --limit: tables show n of these.
            "subset_sizes": {name: getattr(samples, "total", len(samples)) or len(samples)
                             for name, samples in self.samples().items()},
            "methods": [{"name": m.name, "label": m.label or m.name, "group": m.group, "baseline": m.baseline,
                         "kind": m.kind, "mode": m.mode, "hash": m.config_hash(), "identity": m.identity(),
                         **({"agents": method_agents_key(m)} if uses_plans(m) else {})}
                        for m in self.config.methods],
            "judges": [{"name": j.name, "backend": j.backend, "model": j.model, "settings": j.settings()}
                       for j in self.config.judges],
            "warnings": self.warnings,
        }
        atomic_write_json(self.out / RUN_FILE, mask(manifest))

    # -- estimate

    def estimate(self) -> list[EstimateRow]:
        """The pending work and its estimated cost (``imageedit_r1.eval.estimate``)."""
        return estimate_rows(self)

    format_estimate = staticmethod(format_estimate)

    # -- stage 1: edits

    def _plan_of(self, item: Item, shared_by: dict[str, list[str]]):
        """The stored plan ``item``'s method executes (``PlanFailed`` when the sample's plan failed)."""
        agents = method_agents_key(item.method)
        key = plan_key(agents, item)
        record = self.plans.get(key)
        if record is None or record.get("status") != "ok":
            raise PlanFailed(record or {"error": "no plan was made", "error_kind": "error", "retryable": True})
        return plan_to_execute(record, item.method, key, shared_by[agents])

    def _edit_one(self, item: Item, edit_fn: EditFn, summary: Summary,
                  shared_by: dict[str, list[str]] | None = None) -> None:
        started = time.monotonic()
        record = edit_record(item)
        try:
            # Pipeline methods execute the shared plan; they never plan here.
            plan = {"plan": self._plan_of(item, shared_by or {})} if uses_plans(item.method) else {}
            original = load_image(item.sample.image)
            original_path = self.original_path(item)
            if not original_path.exists():
                atomic_save_image(original, original_path, "PNG")
            output = edit_fn(item.sample, original, **plan)
            edited = load_image(output.image)  # validates and normalises whatever the editor returned
            edited_path = self.edited_path(item)
            atomic_save_image(edited, edited_path, "PNG")
            record.update(status="ok", original_path=str(original_path.relative_to(self.out)),
                          edited_path=str(edited_path.relative_to(self.out)), edited_sha256=image_sha256(edited),
                          trace=output.trace)
            if output.worker:
                record["worker"] = output.worker
            outcome, kind = "done", None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            if is_unavailable(exc):  # every item would hit it: run_edits stops the method
                raise
            record.update(failure_fields(exc))
            if isinstance(exc, PlanFailed) and exc.refusal:
                record["refusal"] = exc.refusal
            kind = record["error_kind"]
            if isinstance(getattr(exc, "trace", None), dict):  # the pipeline's trace up to the failure
                record["trace"] = exc.trace
            if isinstance(getattr(exc, "worker", None), dict):  # the Ray replica it failed on
                record["worker"] = exc.worker
            outcome = "failed"
            log.warning("edit failed: %s %s %s: %s", item.method.name, item.benchmark, item.sample_id, exc)
        record.update(seconds=round(time.monotonic() - started, 3), finished_at=now())
        self.edits.put(self.edit_key(item), mask(record))
        with self._lock:
            summary.edits[outcome] += 1
            if kind is not None:
                summary.failure_kinds[f"edit/{kind}"] += 1

    def run_plans(self, summary: Summary) -> None:
        """Stage 0: every plan the pending edits need, once per (agents, sample), in batches (``plans.py``)."""
        run_plans(self, summary, self.planner_factory)

    def shared_by(self) -> dict[str, list[str]]:
        """Agent identity -> the names of the methods that share its plans."""
        groups: dict[str, list[str]] = {}
        for method in self.config.methods:
            if uses_plans(method):
                groups.setdefault(method_agents_key(method), []).append(method.name)
        return groups

    def run_edits(self, summary: Summary) -> None:
        items = self.items()
        shared_by = self.shared_by()
        for method in self.config.methods:
            todo = [item for item in items if item.method is method and self.edit_needed(item)]
            if uses_plans(method):  # a sample whose plan could not be made (agents not set up) waits
                unplanned = [item for item in todo if self.plans.get(plan_key(method_agents_key(method), item)) is None]
                todo = [item for item in todo if item not in unplanned]
                if unplanned:
                    summary.edits["unplanned"] += len(unplanned)
            cached = sum(1 for item in items if item.method is method) - len(todo)
            if cached:
                summary.edits["cached"] += cached
            if not todo:
                continue
            try:
                edit_fn = self.edit_fn_factory(method)
            except Exception as exc:  # noqa: BLE001 - the method is skipped, its items stay pending
                message = mask(f"method {method.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("cannot set up %s", message)
                continue
            # An edit function spread over replicas says how many items it takes at once.
            pool = ThreadPoolExecutor(max_workers=getattr(edit_fn, "concurrency", None) or self.config.edit_concurrency)
            wait = True
            try:
                futures = [pool.submit(self._edit_one, item, edit_fn, summary, shared_by) for item in todo]
                bar = self._progress(as_completed(futures), len(futures), f"edit {method.name}")
                for future in bar:
                    future.result()
                    if hasattr(bar, "set_postfix"):  # tqdm: done, rate and ETA, plus failures
                        bar.set_postfix(failed=summary.edits["failed"], refresh=False)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                # Stop this method: its remaining items stay pending.
                message = mask(f"method {method.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("stopping %s", message)
            except KeyboardInterrupt:
                wait = False  # Ctrl-C: don't wait for edits in flight; finished ones are on disk
                raise
            finally:
                pool.shutdown(wait=wait, cancel_futures=True)
                if hasattr(edit_fn, "notes"):  # Ray: replicas retired (where, why) and items quarantined
                    summary.replicas += [mask(f"method {method.name}: {note}") for note in edit_fn.notes()]
                if hasattr(edit_fn, "close"):  # Ray replicas hand their GPUs back now
                    edit_fn.close()
            del edit_fn  # free the method's models before loading the next

    # -- stage 2: judgments

    def _judge_one(self, item: Item, cfg: JudgeConfig, judge: Judge, limiter: RateLimiter,
                   edit: dict[str, Any], summary: Summary) -> None:
        started = time.monotonic()
        record = judgment_record(item, cfg, cfg.settings(), self.prompt_sha256, edit.get("edited_sha256"))
        prompt_tokens = completion_tokens = 0
        try:
            original, edited = (load_image(self._run_file(edit, key)) for key in ("original_path", "edited_path"))
            limiter.acquire()
            judgment = judge(original, edited, item.sample.request)
            prompt_tokens, completion_tokens = judgment.prompt_tokens, judgment.completion_tokens
            record.update(scored_fields(judgment))
            outcome = "scored"
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record, never a score
            asked = ask_log_of(exc)
            prompt_tokens, completion_tokens = (asked.prompt_tokens, asked.completion_tokens) if asked else (0, 0)
            record.update(failure_fields(exc), raw=(getattr(exc, "raw", None) or "")[:RAW_REPLY_LIMIT] or None)
            outcome = "failed"
            log.warning("judgment failed: %s %s %s by %s: %s", item.method.name, item.benchmark, item.sample_id,
                        cfg.name, exc)
        cost = cost_usd(price_for(self.config.prices, cfg.model, record.get("served_model")),
                        prompt_tokens, completion_tokens)
        record.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                      seconds=round(time.monotonic() - started, 3), finished_at=now())
        self.results.put(self.judgment_key(item, cfg), mask(record))
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
            edit = self.edits.get(self.edit_key(item))
            if not edit or edit.get("status") != "ok":
                continue
            for judge in self.config.judges:
                if self.judgment_needed(item, judge, edit.get("edited_sha256")):
                    tasks.append((item, judge, edit))
                else:
                    summary.judgments["cached"] += 1
        if not tasks:
            return
        judges: dict[str, tuple[Judge, RateLimiter]] = {}
        for cfg in {task[1].name: task[1] for task in tasks}.values():
            try:
                judges[cfg.name] = (self.judge_factory(cfg), RateLimiter(cfg.requests_per_minute))
            except Exception as exc:  # noqa: BLE001 - that judge's items stay pending
                message = mask(f"judge {cfg.name}: {type(exc).__name__}: {exc}")
                summary.setup_errors.append(message)
                log.error("cannot set up %s", message)
        tasks = [task for task in tasks if task[1].name in judges]
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency)
        wait = True
        try:
            futures = [pool.submit(self._judge_one, item, cfg, *judges[cfg.name], edit, summary)
                       for item, cfg, edit in tasks]
            for future in self._progress(as_completed(futures), len(futures), "judge"):
                future.result()
        except KeyboardInterrupt:
            wait = False  # Ctrl-C: don't wait for calls in flight; finished judgments are on disk
            raise
        finally:
            pool.shutdown(wait=wait, cancel_futures=True)

    # -- both

    def run(self, stage: str = "all") -> Summary:
        """Run ``stage``: ``plan`` (plans only), ``edit`` (plans, then edits), ``judge``, or ``all``."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        summary = Summary()
        for warning in self.warnings:
            log.info("warning: %s", warning)
        with self.locked():
            self.write_manifest()
            if stage in ("all", "plan", "edit"):
                self.run_plans(summary)
            if stage in ("all", "edit"):
                self.run_edits(summary)
            if stage in ("all", "judge"):
                self.run_judgments(summary)
            for name in (PLANS_FILE, EDITS_FILE, RESULTS_FILE):
                if (self.out / name).exists():
                    compact_jsonl(self.out / name)
        return summary

    def _progress(self, iterable, total: int, desc: str):
        if not self.progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="item", dynamic_ncols=True)

