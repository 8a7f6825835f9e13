"""Where a run's edits happen: ``executor: local`` (this process) or another executor by name.

The same ``executor`` / ``ray`` pair sits in the pipeline config and in the evaluation config::

    executor: ray
    ray:
      replicas: null          # one editor replica per GPU of the cluster
      gpus_per_replica: 1     # 0.5 puts two replicas on one GPU
      max_in_flight: 2        # items queued on one replica (backpressure)
      agent_gpus: 1           # the agents' actor (local agents plan there, in batches, for every replica)

Executors other than ``local`` are named in ``EXECUTORS`` by ``"module:attribute"`` paths that
are imported only when a run chooses them (as chat backends and editors are), so the pipeline
and the evaluation reach the Ray package without importing it, and Ray loads only for a Ray run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOCAL = "local"


@dataclass(frozen=True)
class Executor:
    """Where an executor's two entry points live, as ``"module:attribute"`` paths.

    ``pipeline(config: PipelineConfig)`` returns an object the batch loop uses like ``ImageEditR1``
    (``plan_batch`` and ``execute``, with ``concurrency`` and ``close()``); ``eval_edits(config:
    EvalConfig, edit_fn_factory)`` returns the edit-function factory the evaluation runner uses
    instead of ``edit_fn_factory``; ``planner(config: EvalConfig, planner_factory)`` the factory of
    what makes the plan stage's plans (``plan_batch``, and ``close()``).
    """

    pipeline: str
    eval_edits: str
    planner: str


EXECUTORS: dict[str, Executor | None] = {
    LOCAL: None,
    "ray": Executor(pipeline="imageedit_r1.scale.batch:RemotePipeline",
                    eval_edits="imageedit_r1.scale.eval_edits:ray_edit_fn_factory",
                    planner="imageedit_r1.scale.planner:ray_planner_factory"),
}


def executor_entry(name: str, role: str) -> Callable[..., Any] | None:
    """The ``role`` entry point (``pipeline``, ``eval_edits`` or ``planner``) of executor ``name``;
    None for ``local``."""
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {tuple(EXECUTORS)}, got {name!r}")
    executor = EXECUTORS[name]
    if executor is None:
        return None
    module_name, _, attribute = getattr(executor, role).partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass
class RayConfig:
    # Cluster to join: "auto", "ray://head:10001" or "head:6379"; None: $RAY_ADDRESS when set,
    # else a new Ray instance on this machine (one 8-GPU node).
    address: str | None = None
    # Resources of a new local instance only (None: detected). Tests fake GPUs with num_gpus.
    num_cpus: int | None = None
    num_gpus: int | None = None
    # Port of a new local instance's Prometheus metrics (Ray's and Ray Serve's); None: Ray picks one.
    metrics_export_port: int | None = None
    # Passed to ray.init (working_dir, pip, env_vars, ...); empty on clusters built from the image.
    runtime_env: dict[str, Any] = field(default_factory=dict)
    replicas: int | None = None  # None: every GPU of the cluster / gpus_per_replica
    gpus_per_replica: float = 1.0  # a fraction packs several replicas on one GPU
    # The agents' actor: agents that run in-process (transformers, vLLM) plan there, once, in batches,
    # for every editor replica; it holds this many GPUs (0: the agents run on its CPU).
    agent_gpus: float = 1.0
    cpus_per_replica: float = 1.0  # 0 on a machine whose CPUs are all taken (tests)
    max_in_flight: int = 2  # items sent to one replica and not yet back: one edited, one waiting
    max_attempts: int = 3  # tries of one item when the replica holding it dies
    max_restarts: int = 2  # deaths a replica's process is restarted after (not counting a poison item's), then retired
    # An item under which replicas died this many times, running alone the last time, killed them:
    # it is quarantined (error_kind "poison") and sent again only when a re-run asks for failed items.
    quarantine_after: int = 2

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.quarantine_after <= self.max_attempts:
            out.append(f"ray.quarantine_after must be between 1 and ray.max_attempts ({self.max_attempts}), "
                       f"got {self.quarantine_after}")
        if self.replicas is not None and self.replicas < 1:
            out.append("ray.replicas must be >= 1 (or null: one per GPU)")
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0 or self.agent_gpus < 0:
            out.append("ray.gpus_per_replica, ray.cpus_per_replica and ray.agent_gpus must be >= 0")
        if self.max_in_flight < 1 or self.max_attempts < 1 or self.max_restarts < 0:
            out.append("ray.max_in_flight and ray.max_attempts must be >= 1, ray.max_restarts >= 0")
        return out


def executor_problems(executor: str, ray: RayConfig) -> list[str]:
    """What is wrong with an ``executor`` / ``ray`` pair, as lines for a config error."""
    if executor not in EXECUTORS:
        return [f"executor must be one of {tuple(EXECUTORS)}, got {executor!r}"]
    return ray.problems() if executor == "ray" else []
