"""How big each deployment of the service is: GPUs, replicas, concurrency and queues.

``deployment_options(config, cluster_gpus)`` gives Serve's options for every deployment, from the
service config and the cluster's GPU count; ``imageedit_r1.serve.deployments`` binds them. No
Ray import here, so the sizing rules are checked without a cluster.
"""

from __future__ import annotations

import math
from typing import Any

from imageedit_r1.pipeline.config import PipelineConfig
from imageedit_r1.serve.config import ServeConfig

HOSTED_EDITOR_CONCURRENCY = 8  # a hosted editor's replica waits on the provider, not a GPU
EDITOR_ROUTER = "imageedit_r1.serve.routing:LeastLoaded"


def planner_gpus(config: ServeConfig, pipeline: PipelineConfig) -> float:
    from imageedit_r1.scale.placement import agents_are_local

    if config.planner.num_gpus is not None:
        return config.planner.num_gpus
    local = pipeline.mode != "original" and agents_are_local(pipeline.decomposer, pipeline.sequencer)
    return 1.0 if local else 0.0


def deployment_options(config: ServeConfig, cluster_gpus: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Serve options of every deployment: ``{"planners": {name: ...}, "editors": {name: ...}, "ingress": ...}``.

    Editors ask ``gpus_per_replica`` GPUs (hosted editors none). An autoscaled editor's
    ``max_replicas`` defaults to the GPUs the planners leave, over ``gpus_per_replica``; the
    local editors start with those GPUs shared among them.
    """
    from imageedit_r1.scale.placement import is_hosted_editor

    backpressure = {"status_code": config.queue_full_status, "retry_after_s": config.retry_after_s}
    planner = config.planner
    planners = {name: {
        "num_replicas": planner.replicas,
        "ray_actor_options": {"num_gpus": planner_gpus(config, pipeline), "num_cpus": planner.num_cpus},
        # Room for the batch being planned and the next one filling up.
        "max_ongoing_requests": 2 * planner.max_batch_size,
        "max_queued_requests": planner.max_queued_requests,
        "backpressure_config": backpressure,
    } for name, pipeline in config.pipelines.items()}
    spare_gpus = cluster_gpus - sum(options["ray_actor_options"]["num_gpus"] * options["num_replicas"]
                                    for options in planners.values())
    editor = config.editor
    hosted = {name: is_hosted_editor(pipeline.editor.name) for name, pipeline in config.pipelines.items()}
    local_count = max(1, sum(not value for value in hosted.values()))
    editors = {}
    for name in config.pipelines:
        gpus = 0.0 if hosted[name] else editor.gpus_per_replica
        edits = editor.concurrent_edits or (HOSTED_EDITOR_CONCURRENCY if hosted[name] else 1)
        options: dict[str, Any] = {
            "ray_actor_options": {"num_gpus": gpus, "num_cpus": editor.num_cpus},
            "max_ongoing_requests": editor.max_ongoing_requests or edits + 1,
            "max_queued_requests": editor.max_queued_requests,
            "backpressure_config": backpressure,
            "health_check_period_s": editor.health_check_period_s,
            "request_router_config": {"request_router_class": EDITOR_ROUTER},
            "init_args": (edits,),
        }
        if editor.replicas is not None:
            options["num_replicas"] = editor.replicas
        else:
            most = editor.max_replicas or (max(1, math.floor(spare_gpus / gpus + 1e-9)) if gpus > 0 else 1)
            least = min(editor.min_replicas, most)
            start = editor.initial_replicas if editor.initial_replicas is not None else max(least, 1, most // local_count)
            options["autoscaling_config"] = {
                "min_replicas": least, "max_replicas": most, "initial_replicas": min(start, most),
                "target_ongoing_requests": editor.target_ongoing_requests,
                "downscale_delay_s": editor.downscale_delay_s,
            }
        editors[name] = options
    ingress = {"num_replicas": config.ingress.replicas, "ray_actor_options": {"num_cpus": config.ingress.num_cpus},
               "max_ongoing_requests": config.ingress.max_ongoing_requests,
               "max_queued_requests": config.ingress.max_queued_requests, "backpressure_config": backpressure}
    return {"planners": planners, "editors": editors, "ingress": ingress}




def gpus_at_start(options: dict[str, dict[str, Any]]) -> float:
    """GPUs the deployments ask for before any request: every planner replica and every editor's
    first replicas (its fixed count, or the autoscaler's ``initial_replicas``)."""
    def replicas(option: dict[str, Any]) -> int:
        scaling = option.get("autoscaling_config")
        return scaling["initial_replicas"] if scaling else option["num_replicas"]

    return sum(option["ray_actor_options"]["num_gpus"] * replicas(option)
               for group in ("planners", "editors") for option in options[group].values())


def gpu_shortfall(options: dict[str, dict[str, Any]], cluster_gpus: float) -> str | None:
    """Why the deployments cannot all start on ``cluster_gpus`` GPUs, and what to change; None when they can."""
    needed = gpus_at_start(options)
    if needed <= cluster_gpus + 1e-9:
        return None
    return (f"the service asks for {needed:g} GPU(s) at start (its planners and first editor replicas) and Ray "
            f"has {cluster_gpus:g}: share them (planner.num_gpus=0.5 editor.gpus_per_replica=0.5, if both models "
            "fit in one GPU's memory), serve the agents from a server (docs/agents.md), add GPUs, or fake them "
            "for a test (ray.num_gpus=N)")
