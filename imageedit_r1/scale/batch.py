"""Pipeline batches (``python -m imageedit_r1.pipeline --manifest``) on Ray (``executor: ray``).

``RemotePipeline(config)`` looks like ``ImageEditR1`` to the batch loop: ``plan_batch`` plans a
batch of requests, ``execute`` edits one item with its plan. Local agents (transformers, vLLM)
plan in one agents' actor on its own GPU (``scale.planner``), hosted agents from the driver; the
editor replicas, one per remaining GPU, each load the editor once and only execute plans, so no
replica loads the agents. The driver reads each input file and sends its bytes, so actors on other
nodes need no access to the inputs; it writes every output itself. ``concurrency`` tells the loop
how many items to keep in flight (replicas × ``ray.max_in_flight``, plus one reading ahead each).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

from imageedit_r1.pipeline.config import PipelineConfig
from imageedit_r1.pipeline.trace import EditResult
from imageedit_r1.scale.placement import agents_are_local, is_hosted_editor

log = logging.getLogger("imageedit_r1.scale")


def build_replica_pipeline(config: PipelineConfig):
    """The replica's work function: ``execute`` of a pipeline whose editor's model is loaded now (once,
    before the first item). Its agents are never built: plans arrive made."""
    from imageedit_r1.pipeline.core import ImageEditR1

    pipeline = ImageEditR1(config=dataclasses.replace(config, executor="local"))
    editor = pipeline.editor
    if hasattr(editor, "load"):
        editor.load()
    return pipeline.execute


def needs_gpu(config: PipelineConfig) -> bool:
    """An editor replica needs a GPU for a local editor, or for a verifier that runs its model in-process."""
    if not is_hosted_editor(config.editor.name):
        return True
    return config.verify is not None and agents_are_local(config.verify.judge, None)


class RemotePipeline:
    """``plan_batch`` on the agents' actor (or the driver), ``execute`` on Ray replicas; the result's
    ``trace["worker"]`` says where it was edited."""

    def __init__(self, config: PipelineConfig) -> None:
        from imageedit_r1.scale.cluster import connect, replica_count
        from imageedit_r1.scale.planner import RemotePlanner, planner_for
        from imageedit_r1.scale.replicas import ReplicaPool

        self.config = config
        cfg = config.ray
        connect(cfg)
        self.planner = planner_for(config)
        reserved = cfg.agent_gpus if isinstance(self.planner, RemotePlanner) else 0.0
        gpus = cfg.gpus_per_replica if needs_gpu(config) else 0.0
        replicas = replica_count(cfg, gpus, reserved)
        log.info("pipeline batch: %d editor replicas x %s GPU, %d in flight each", replicas, gpus, cfg.max_in_flight)
        self.pool = ReplicaPool.for_config(functools.partial(build_replica_pipeline, config), cfg, replicas=replicas,
                                           num_gpus=gpus, name="pipeline")
        self.concurrency = self.pool.concurrency + self.pool.size  # + one thread per replica reading ahead

    def plan_batch(self, images: list[Any], requests: list[str], *, mode: Any = None) -> list[Any]:
        return self.planner.plan_batch(images, requests, mode=mode)

    def execute(self, image: Any, plan: Any, *, seed: int | None = None) -> EditResult:
        from imageedit_r1.scale.planner import portable_image

        result, worker = self.pool.call(portable_image(image), plan, seed=seed)
        result.trace["worker"] = worker
        return result

    def notes(self) -> list[str]:
        """Retired replicas (node, GPU, why) and quarantined items, for the batch's summary."""
        return self.pool.notes()

    def close(self) -> None:
        self.pool.close()
        if hasattr(self.planner, "close"):
            self.planner.close()
