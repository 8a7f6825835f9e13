"""Pipeline batches (``python -m imageedit_r1.pipeline --manifest``) on Ray replicas (``executor: ray``).

``RemotePipeline(config)`` looks like ``ImageEditR1`` to the batch loop: calling it edits one
item, on a replica that built the pipeline once (editor and local agents loaded on its GPU). The
driver reads each input file and sends its bytes, so replicas on other nodes need no access to the
inputs; it writes every output itself. ``concurrency`` tells the loop how many items to keep in
flight (replicas × ``ray.max_in_flight``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

from imageedit_r1.pipeline.config import PipelineConfig
from imageedit_r1.pipeline.trace import EditResult
from imageedit_r1.scale.placement import is_hosted_editor

log = logging.getLogger("imageedit_r1.scale")


def build_replica_pipeline(config: PipelineConfig):
    """The replica's pipeline, its editor's model loaded now (once, before the first item)."""
    from imageedit_r1.pipeline.core import ImageEditR1

    pipeline = ImageEditR1(config=dataclasses.replace(config, executor="local"))
    editor = pipeline.editor
    if hasattr(editor, "load"):
        editor.load()
    return pipeline


def needs_gpu(config: PipelineConfig) -> bool:
    """A local editor, or agents that run their model in-process, need the replica's GPU."""
    if not is_hosted_editor(config.editor.name):
        return True
    if config.mode == "original":
        return False
    agents = [config.decomposer, config.sequencer or config.decomposer]
    return any(agent.backend in ("transformers", "vllm") for agent in agents)


class RemotePipeline:
    """Calls ``ImageEditR1`` on Ray replicas; returns its ``EditResult`` with ``trace["worker"]``."""

    def __init__(self, config: PipelineConfig) -> None:
        from imageedit_r1.scale.cluster import connect, replica_count
        from imageedit_r1.scale.replicas import ReplicaPool

        self.config = config
        cfg = config.ray
        connect(cfg)
        gpus = cfg.gpus_per_replica if needs_gpu(config) else 0.0
        replicas = replica_count(cfg, gpus)
        log.info("pipeline batch: %d replicas x %s GPU, %d in flight each", replicas, gpus, cfg.max_in_flight)
        self.pool = ReplicaPool.for_config(functools.partial(build_replica_pipeline, config), cfg, replicas=replicas,
                                           num_gpus=gpus, name="pipeline")
        self.concurrency = self.pool.concurrency + self.pool.size  # + one thread per replica reading ahead

    def __call__(self, image: Any, request: str, *, mode: str | None = None, seed: int | None = None) -> EditResult:
        if isinstance(image, (str, Path)):
            try:
                image = Path(image).read_bytes()
            except OSError:
                pass  # the replica raises the same error the local pipeline would
        result, worker = self.pool.call(image, request, mode=mode, seed=seed)
        result.trace["worker"] = worker
        return result

    def notes(self) -> list[str]:
        """Retired replicas (node, GPU, why) and quarantined items, for the batch's summary."""
        return self.pool.notes()

    def close(self) -> None:
        self.pool.close()
