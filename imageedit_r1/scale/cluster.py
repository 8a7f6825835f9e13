"""Joining Ray: an existing cluster (``ray.address`` or ``$RAY_ADDRESS``) or a new local instance."""

from __future__ import annotations

import logging
import math
import os

from imageedit_r1.agents.editors.base import EditorUnavailableError
from imageedit_r1.executors import RayConfig

log = logging.getLogger("imageedit_r1.scale")


class ClusterUnavailableError(EditorUnavailableError):
    """Ray is missing, the cluster cannot be reached, or it has no GPU for the replicas: nothing can run."""


def connect(cfg: RayConfig) -> None:
    """Initialise Ray for this process unless it already is (a test's or a notebook's instance wins).

    Raises ``ClusterUnavailableError`` saying what to do when Ray is missing or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - Ray comes with the verl extra
        raise ClusterUnavailableError("executor 'ray' needs Ray: pip install -e '.[scale]' (or 'ray>=2.40')") from exc
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    options = {"runtime_env": dict(cfg.runtime_env) or None, "logging_level": logging.WARNING,
               "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=False,
                     _metrics_export_port=cfg.metrics_export_port, **options)
    except ConnectionError as exc:
        raise ClusterUnavailableError(f"cannot reach the Ray cluster at {address!r}: {exc}; start it with `ray start --head` "
                           "or unset RAY_ADDRESS / ray.address to run on this machine alone") from exc
    resources = ray.cluster_resources()
    log.info("Ray: %s CPUs, %s GPUs on %d nodes", resources.get("CPU", 0), resources.get("GPU", 0),
             len([node for node in ray.nodes() if node.get("Alive")]))


def replica_count(cfg: RayConfig, gpus_per_replica: float, reserved_gpus: float = 0.0) -> int:
    """How many replicas to start: ``cfg.replicas``, else every GPU of the cluster but the
    ``reserved_gpus`` (the agents' actor) (or every CPU for replicas that need no GPU). Raises
    ``ClusterUnavailableError`` when the cluster has no GPU at all."""
    import ray

    resources = ray.cluster_resources()
    total = float(resources.get("GPU", 0))
    gpus = max(0.0, total - reserved_gpus)
    if gpus_per_replica > 0 and total > 0 and gpus < gpus_per_replica and cfg.replicas is None:
        raise ClusterUnavailableError(f"executor 'ray': the agents' actor takes {reserved_gpus} of the cluster's {total:g} "
                                      f"GPUs, which leaves less than one editor replica's {gpus_per_replica}; share "
                                      "them (e.g. ray.agent_gpus=0.5 ray.gpus_per_replica=0.5) or add GPUs")
    if gpus_per_replica > 0 and gpus <= 0 and total <= 0:
        raise ClusterUnavailableError("executor 'ray': the Ray cluster has no GPU; join one with GPUs (RAY_ADDRESS), or "
                           "set ray.gpus_per_replica=0 for CPU replicas")
    if cfg.replicas is not None:
        if gpus_per_replica > 0 and cfg.replicas * gpus_per_replica > gpus:
            log.warning("%d replicas x %s GPU ask for more than the cluster's %s GPUs now: the rest wait for "
                        "GPUs to join", cfg.replicas, gpus_per_replica, gpus)
        return cfg.replicas
    if gpus_per_replica > 0:
        return max(1, math.floor(gpus / gpus_per_replica + 1e-9))
    return max(1, int(resources.get("CPU", 1)))
