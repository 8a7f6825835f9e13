"""The plan stage of an evaluation: each plan made once, in batches, and shared by every method.

A plan depends on the agents and the sample, not on the editor or the mode. So before the edit
stage, every sample that some pipeline method still has to edit is planned once per agent
identity (``pipeline.planning.agents_key``: models, decoding settings, prompts, image budget,
fallbacks), in batches of the agents' ``plan_batch`` (``ImageEditR1.plan_batch``: one batched
call per agent stage). Each plan is appended to ``plans.jsonl`` in the run folder (the run
store, under the run lock) as soon as its batch is back, keyed by (agents, benchmark, sample):
a run stopped in this stage (Ctrl-C, a kill) plans only what is missing when it resumes.

The edit stage reads the plan and executes it with the method's editor and mode; it never plans.
The edit's trace says so: ``planning`` holds the plan's ``key`` and the methods it is
``shared_by``. A sample whose plan failed is recorded as a failed edit with the plan's error (and
its kind: retried by the next run when transient), without calling the editor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imageedit_r1.eval.config import PIPELINE_KINDS, MethodConfig
from imageedit_r1.eval.records import Item, failure_fields, now
from imageedit_r1.masking import mask
from imageedit_r1.pipeline.planning import agents_key
from imageedit_r1.store import content_key
from imageedit_r1.unavailable import is_unavailable

if TYPE_CHECKING:
    from imageedit_r1.eval.records import Summary
    from imageedit_r1.pipeline import PipelineConfig, Plan

log = logging.getLogger("imageedit_r1.eval")

PLANS_FILE = "plans.jsonl"

# Builds what plans for a method's agents: ``ImageEditR1`` here, or an agent actor on Ray.
PlannerFactory = Callable[["PipelineConfig"], Any]


def build_planner(config: PipelineConfig):
    """The local planner: the pipeline itself (its agents load on the first batch)."""
    from imageedit_r1.pipeline import ImageEditR1

    return ImageEditR1(config=config)


def uses_plans(method: MethodConfig) -> bool:
    return method.kind in PIPELINE_KINDS


def method_agents_key(method: MethodConfig) -> str:
    return agents_key(method.pipeline_config())


def plan_key(agents: str, item: Item) -> str:
    return content_key("plan", agents, item.benchmark, item.sample_id)


@dataclass
class PlanGroup:
    """The methods that share one agent identity, and the samples they still need plans for."""

    agents: str
    methods: list[MethodConfig]
    todo: list[Item] = field(default_factory=list)  # one item per sample to plan (its first method's)

    @property
    def names(self) -> list[str]:
        return [method.name for method in self.methods]


def plan_groups(runner: Any) -> list[PlanGroup]:
    """One group per agent identity of the config's pipeline methods, with the samples whose plan is
    needed (some method of the group still has to edit it) and not in the plan store yet."""
    groups: dict[str, PlanGroup] = {}
    for method in runner.config.methods:
        if uses_plans(method):
            key = method_agents_key(method)
            groups.setdefault(key, PlanGroup(key, [])).methods.append(method)
    items = runner.items()
    for group in groups.values():
        seen: set[str] = set()
        for item in items:
            if all(item.method is not method for method in group.methods) or not runner.edit_needed(item):
                continue
            key = plan_key(group.agents, item)
            if key not in seen and runner.plan_needed(key):
                seen.add(key)
                group.todo.append(item)
    return list(groups.values())


def run_plans(runner: Any, summary: Summary, factory: PlannerFactory) -> None:
    """Plan every pending sample of every group, in batches, storing each plan as its batch returns."""
    for group in plan_groups(runner):
        if not group.todo:
            continue
        first = group.methods[0]
        try:
            planner = factory(first.pipeline_config())
        except Exception as exc:  # noqa: BLE001 - the group's samples stay unplanned (and unedited)
            _setup_error(summary, group, exc)
            continue
        size = max(1, first.plan_batch)
        bar = runner._progress(range(0, len(group.todo), size), -(-len(group.todo) // size),
                               f"plan {'+'.join(group.names)}")
        try:
            for start in bar:
                _plan_chunk(runner, planner, group, group.todo[start:start + size], summary)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            _setup_error(summary, group, exc)  # the agents cannot run here: the rest stays pending
        finally:
            if hasattr(planner, "close"):  # an agent actor hands its GPU back before the editors start
                planner.close()


def _setup_error(summary: Summary, group: PlanGroup, exc: BaseException) -> None:
    which = f"method{'s' if len(group.names) > 1 else ''} {', '.join(group.names)}"
    message = mask(f"{which} (their plans): {type(exc).__name__}: {exc}")
    summary.setup_errors.append(message)
    log.error("cannot plan: %s", message)


def _plan_chunk(runner: Any, planner: Any, group: PlanGroup, items: list[Item], summary: Summary) -> None:
    from imageedit_r1.images import load_image

    started = time.monotonic()
    images: list[Any] = []
    for item in items:
        try:
            images.append(load_image(item.sample.image))
        except Exception as exc:  # noqa: BLE001 - the plan_batch below reports it for this sample alone
            images.append(exc)
    loadable = [index for index, image in enumerate(images) if not isinstance(image, BaseException)]
    results: list[Any] = list(images)
    plans = planner.plan_batch([images[i] for i in loadable], [items[i].sample.request for i in loadable],
                               mode=group.methods[0].mode)
    for index, plan in zip(loadable, plans, strict=True):
        results[index] = plan
    seconds = round(time.monotonic() - started, 3)
    for item, result in zip(items, results, strict=True):
        record = {"agents": group.agents, "benchmark": item.benchmark, "sample_id": item.sample_id,
                  "request": item.sample.request, "methods": group.names, "batch": len(items), "seconds": seconds}
        if isinstance(result, BaseException):
            record.update(failure_fields(result))
            if isinstance(getattr(result, "trace", None), dict):
                record["trace"] = result.trace
            outcome = "failed"
            log.warning("plan failed: %s %s (%s): %s", item.benchmark, item.sample_id, "+".join(group.names), result)
        else:
            record.update(status="ok", plan=result.to_dict())
            outcome = "made"
        record["finished_at"] = now()
        runner.plans.put(plan_key(group.agents, item), mask(record))
        summary.plans[outcome] += 1


def plan_to_execute(record: dict[str, Any], method: MethodConfig, key: str, shared_by: list[str]) -> Plan:
    """The stored plan as ``method`` executes it: in the method's mode, its trace saying it is shared."""
    from imageedit_r1.pipeline import Plan

    stored = Plan.from_dict(record["plan"])
    planning = {**(stored.record.get("planning") or {}), "key": key, "shared_by": list(shared_by)}
    return Plan(request=stored.request, mode=method.mode, decomposition=stored.decomposition,
                sub_requests=stored.sub_requests, record={**stored.record, "planning": planning})


class PlanFailed(RuntimeError):
    """The sample's shared plan failed: its edit fails with the plan's kind, trace and retry rule."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(f"planning failed: {record.get('error', 'unknown error')}")
        self.failure_kind = record.get("error_kind", "error")
        self.retryable = bool(record.get("retryable", True))
        self.trace = record.get("trace")
        self.refusal = record.get("refusal")
