"""How a run is spread over processes: ``executor: local`` (one process) or ``executor: ray``.

The same ``RayConfig`` block sits in the evaluation config and in the pipeline config::

    executor: ray
    ray:
      replicas: null          # one editor replica per GPU of the cluster
      gpus_per_replica: 1     # 0.5 puts two replicas on one GPU
      max_in_flight: 2        # items queued on one replica (backpressure)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXECUTORS = ("local", "ray")


@dataclass
class RayConfig:
    # Cluster to join: "auto", "ray://head:10001" or "head:6379"; None: $RAY_ADDRESS when set,
    # else a new Ray instance on this machine (one 8-GPU node).
    address: str | None = None
    # Resources of a new local instance only (None: detected). Tests fake GPUs with num_gpus.
    num_cpus: int | None = None
    num_gpus: int | None = None
    # Passed to ray.init (working_dir, pip, env_vars, ...); empty on clusters built from the image.
    runtime_env: dict[str, Any] = field(default_factory=dict)
    replicas: int | None = None  # None: every GPU of the cluster / gpus_per_replica
    gpus_per_replica: float = 1.0  # a fraction packs several replicas on one GPU
    cpus_per_replica: float = 1.0  # 0 on a machine whose CPUs are all taken (tests)
    max_in_flight: int = 2  # items sent to one replica and not yet back: one edited, one waiting
    max_attempts: int = 3  # tries of one item when the replica holding it dies
    max_restarts: int = 2  # a replica's process is restarted this often, then retired

    def problems(self) -> list[str]:
        out = []
        if self.replicas is not None and self.replicas < 1:
            out.append("ray.replicas must be >= 1 (or null: one per GPU)")
        if self.gpus_per_replica < 0 or self.cpus_per_replica < 0:
            out.append("ray.gpus_per_replica and ray.cpus_per_replica must be >= 0")
        if self.max_in_flight < 1 or self.max_attempts < 1 or self.max_restarts < 0:
            out.append("ray.max_in_flight and ray.max_attempts must be >= 1, ray.max_restarts >= 0")
        return out


def executor_problems(executor: str, ray: RayConfig) -> list[str]:
    """What is wrong with an ``executor`` / ``ray`` pair, as lines for a config error."""
    if executor not in EXECUTORS:
        return [f"executor must be one of {EXECUTORS}, got {executor!r}"]
    return ray.problems() if executor == "ray" else []
