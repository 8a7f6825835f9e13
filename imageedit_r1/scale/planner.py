"""The agents on Ray: one actor holds the agents' models on its own GPU and plans for every editor replica.

With ``executor: ray``, agents that run their model in-process (transformers, vLLM) are loaded
once, in an ``AgentWorker`` actor that asks ``ray.agent_gpus`` GPUs, instead of in every editor
replica. The driver sends it batches (``RemotePlanner.plan_batch``: images, requests, modes) and
gets one plan or error per request back; the editor replicas only execute plans. Agents behind an
API (openai, gemini) need no actor: the driver plans through the pipeline itself, whose batched
calls go out concurrently.

``AgentWorker.plan_batch`` depends on its arguments alone (the loaded agents are its only state),
so a caller that batches concurrent requests together can share one worker.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, WorkerCrashedError

from imageedit_r1.pipeline.config import PipelineConfig
from imageedit_r1.scale.placement import agents_are_local
from imageedit_r1.scale.replicas import portable_chain, rebuild_chain, where

log = logging.getLogger("imageedit_r1.scale")

OK, FAILED = "ok", "failed"


class AgentsLostError(RuntimeError):
    """The agents' actor died while it planned the request's batch; a re-run plans it again."""

    failure_kind = "replica_lost"
    retryable = True


class AgentWorker:
    """The agents' actor: builds the pipeline's decomposer and sequencer once (their models load on this
    actor's GPU), then plans batches with ``ImageEditR1.plan_batch``."""

    def __init__(self, config: PipelineConfig) -> None:
        from imageedit_r1.pipeline.core import ImageEditR1

        self.pipeline = ImageEditR1(config=dataclasses.replace(config, executor="local"))
        self.setup_error: list[BaseException] | None = None
        try:
            self.pipeline.decomposer  # noqa: B018 - loaded now, once, before the first batch
            self.pipeline.sequencer  # noqa: B018
        except Exception as exc:  # noqa: BLE001 - reported with the first batch, raised by the driver
            self.setup_error = portable_chain(exc)

    def info(self) -> dict[str, Any]:
        return where(0, role="agents")

    def plan_batch(self, images: list[Any], requests: list[str], modes: Any) -> tuple[str, Any, dict[str, Any]]:
        """(``ok``, one plan or portable error chain per request, where) or (``failed``, the error chain
        of a failure of the whole batch, where): the agents could not start, or planning broke."""
        info = where(0, role="agents")
        if self.setup_error is not None:
            return FAILED, self.setup_error, info
        try:
            plans = self.pipeline.plan_batch(images, requests, mode=modes)
        except Exception as exc:  # noqa: BLE001 - raised again by the driver
            return FAILED, portable_chain(exc), info
        return OK, [plan if not isinstance(plan, BaseException) else portable_chain(plan) for plan in plans], info


def portable_image(image: Any) -> Any:
    """A path becomes its bytes (the actor or replica may run on a node without the file); anything
    else travels as it is. A path that cannot be read is left for the pipeline to report."""
    if isinstance(image, (str, Path)):
        try:
            return Path(image).read_bytes()
        except OSError:
            return image
    return image


class RemotePlanner:
    """``plan_batch`` like ``ImageEditR1``'s, answered by one ``AgentWorker`` actor (see the module docs)."""

    def __init__(self, config: PipelineConfig) -> None:
        cfg = config.ray
        actor = ray.remote(AgentWorker).options(num_gpus=cfg.agent_gpus, num_cpus=cfg.cpus_per_replica,
                                                max_restarts=cfg.max_restarts, max_task_retries=0, max_concurrency=1)
        self.handle = actor.remote(config)
        self.gpus = cfg.agent_gpus
        log.info("agents: one actor x %s GPU plans for the editor replicas", cfg.agent_gpus)

    def plan_batch(self, images: list[Any], requests: list[str], *, mode: Any = None) -> list[Any]:
        """One ``Plan`` (its ``record["planning"]["worker"]`` says where it was made) or error per request.
        Raises what stops the whole batch: the agents cannot start here, or planning itself broke."""
        requests = list(requests)
        try:
            status, value, info = ray.get(self.handle.plan_batch.remote(
                [portable_image(image) for image in images], requests, mode))
        except (RayActorError, WorkerCrashedError) as exc:
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return [AgentsLostError(f"the agents' actor died while planning this batch ({line})") for _ in requests]
        if status != OK:
            raise rebuild_chain(value)
        plans = []
        for plan in value:
            if isinstance(plan, list):
                plans.append(rebuild_chain(plan))
                continue
            plan.record["planning"] = {**(plan.record.get("planning") or {}), "worker": info}
            plans.append(plan)
        return plans

    def close(self) -> None:
        """Stop the actor now (its GPU goes back to the cluster)."""
        try:
            ray.kill(self.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def planner_for(config: PipelineConfig):
    """A ``RemotePlanner`` when the agents run their model in-process, else the pipeline itself (its agents
    call an API from the driver); ``config.ray`` places the actor. Ray must be connected."""
    if config.mode != "original" and agents_are_local(config.decomposer, config.sequencer):
        return RemotePlanner(config)
    from imageedit_r1.pipeline.core import ImageEditR1

    return ImageEditR1(config=dataclasses.replace(config, executor="local"))


def ray_planner_factory(config, base: Callable[[PipelineConfig], Any]) -> Callable[[PipelineConfig], Any]:
    """The evaluation's planner factory on Ray (``EvalConfig`` ``config``): an agents' actor for local
    agents, placed by the evaluation's ``ray`` settings; ``base`` (the local planner) otherwise."""

    def factory(pipeline_config: PipelineConfig):
        if not agents_are_local(pipeline_config.decomposer, pipeline_config.sequencer):
            return base(pipeline_config)
        from imageedit_r1.scale.cluster import connect

        connect(config.ray)
        return RemotePlanner(dataclasses.replace(pipeline_config, ray=config.ray))

    return factory
