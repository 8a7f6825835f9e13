"""The service's configuration: which pipelines it serves, and how its deployments are sized.

One YAML file, loaded through the project's config door (``imageedit_r1.config.load_config``)::

    pipelines:                       # the names clients send as `model`; the first is the default
      imageedit-r1:                  # a pipeline config (docs/pipeline.md), as in examples/configs/
        editor: {name: flux-kontext}
    planner:                         # the agents: one deployment, concurrent requests planned in batches
      replicas: 1
      num_gpus: null                 # null: 1 when an agent runs its model here (transformers, vllm), else 0
      max_batch_size: 8
      batch_wait_timeout_s: 0.05
      max_queued_requests: 64
    editor:                          # the editor: one replica per GPU, scaled by load
      gpus_per_replica: 1.0          # hosted editors (nano-banana, openai-image) take no GPU
      replicas: null                 # a fixed count; null: autoscaling between min and max
      min_replicas: 1
      max_replicas: null             # null: the cluster's GPUs / gpus_per_replica (1 without GPUs)
      concurrent_edits: null         # edits at once per replica; null: 1 (a GPU), 8 (a hosted editor)
      max_ongoing_requests: null     # requests a replica holds; null: concurrent_edits + 1 (the next one waits there)
      max_queued_requests: 16        # requests waiting for a replica; beyond them 429 + Retry-After
    queue_full_status: 429           # or 503
    retry_after_s: 2
    limits: {max_upload_mb: 25, max_megapixels: 40, max_n: 4}
    ray: {address: null, num_cpus: null, num_gpus: null}

A pipeline config file (one ``editor``, ``decomposer``... at the top) is read as the one pipeline
``imageedit-r1``. ``key=value`` overrides apply to the service config
(``pipelines.imageedit-r1.seed=0``, ``editor.max_queued_requests=4``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from imageedit_r1.executors import RayConfig
from imageedit_r1.pipeline.config import PipelineConfig

DEFAULT_MODEL = "imageedit-r1"
QUEUE_FULL_STATUSES = (429, 503)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class PlannerOptions:
    replicas: int = 1
    num_gpus: float | None = None  # null: 1 when an agent runs its model in the replica, else 0
    num_cpus: float = 0.0  # GPUs decide placement; a CPU request only keeps replicas off busy nodes
    max_batch_size: int = 8  # requests planned in one batch (@serve.batch)
    batch_wait_timeout_s: float = 0.05  # how long a batch waits to fill up
    max_queued_requests: int = 64


@dataclass
class EditorOptions:
    gpus_per_replica: float = 1.0  # one replica per GPU; hosted editors take none
    num_cpus: float = 0.0
    replicas: int | None = None  # a fixed count; null: autoscaling
    min_replicas: int = 1
    max_replicas: int | None = None  # null: the cluster's GPUs / gpus_per_replica (1 without GPUs)
    initial_replicas: int | None = None  # null: max_replicas (every GPU loaded at start)
    target_ongoing_requests: float = 2.0  # the autoscaler's aim per replica: one edit running, one waiting
    downscale_delay_s: float = 600.0
    concurrent_edits: int | None = None  # edits at once per replica; null: 1 for a local editor, 8 for a hosted one
    # Requests a replica holds; null: concurrent_edits + 1. The one waiting in the replica starts the
    # moment an edit ends: Serve's router, finding every replica full, retries with backoff (up to 0.5 s).
    max_ongoing_requests: int | None = None
    max_queued_requests: int = 16
    health_check_period_s: float = 10.0


@dataclass
class IngressOptions:
    replicas: int = 1
    num_cpus: float = 0.0
    max_ongoing_requests: int = 256  # requests in flight through one replica (they wait on the others)
    max_queued_requests: int = 512


@dataclass
class LimitsConfig:
    max_upload_mb: float = 25.0  # one uploaded image, in MiB
    max_megapixels: float = 40.0  # decoded size: stops decompression bombs
    max_n: int = 4  # images per request (each is an editor call)

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)


@dataclass
class ServeConfig:
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    planner: PlannerOptions = field(default_factory=PlannerOptions)
    editor: EditorOptions = field(default_factory=EditorOptions)
    ingress: IngressOptions = field(default_factory=IngressOptions)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    queue_full_status: int = 429
    retry_after_s: float = 2.0
    request_timeout_s: float | None = 900.0  # the HTTP proxy answers 408 after this long
    ray: RayConfig = field(default_factory=RayConfig)

    @property
    def default_model(self) -> str:
        return next(iter(self.pipelines))

    def validate(self) -> ServeConfig:
        problems = []
        if not self.pipelines:
            problems.append("the config serves no pipeline: add one under 'pipelines' (name: pipeline config)")
        for name, pipeline in self.pipelines.items():
            if not _NAME.match(name):
                problems.append(f"pipeline name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")
            try:
                pipeline.validate()
            except ValueError as exc:
                problems.append(f"pipelines.{name}: {exc}")
            if pipeline.executor != "local":
                problems.append(f"pipelines.{name}.executor: the service places editors itself (editor.*); "
                                "leave executor at 'local'")
        if self.queue_full_status not in QUEUE_FULL_STATUSES:
            problems.append(f"queue_full_status must be one of {QUEUE_FULL_STATUSES}, got {self.queue_full_status}")
        if self.retry_after_s < 0:
            problems.append("retry_after_s must be >= 0")
        planner, editor = self.planner, self.editor
        if planner.replicas < 1 or planner.max_batch_size < 1 or planner.batch_wait_timeout_s < 0:
            problems.append("planner.replicas and planner.max_batch_size must be >= 1, batch_wait_timeout_s >= 0")
        if editor.replicas is not None and editor.replicas < 1:
            problems.append("editor.replicas must be >= 1 (or null: autoscaling)")
        if editor.min_replicas < 0 or (editor.max_replicas is not None and editor.max_replicas < max(1, editor.min_replicas)):
            problems.append("editor.min_replicas must be >= 0 and editor.max_replicas >= max(1, min_replicas)")
        if editor.gpus_per_replica < 0 or editor.num_cpus < 0 or planner.num_cpus < 0:
            problems.append("GPU and CPU requests must be >= 0")
        for name, value in (("planner.max_queued_requests", planner.max_queued_requests),
                            ("editor.max_queued_requests", editor.max_queued_requests),
                            ("ingress.max_queued_requests", self.ingress.max_queued_requests)):
            if value < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("concurrent_edits", "max_ongoing_requests"):
            if getattr(editor, name) is not None and getattr(editor, name) < 1:
                problems.append(f"editor.{name} must be >= 1 (or null)")
        limits = self.limits
        if limits.max_upload_mb <= 0 or limits.max_megapixels <= 0 or limits.max_n < 1:
            problems.append("limits.max_upload_mb and limits.max_megapixels must be > 0, limits.max_n >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_serve_config(path: str | os.PathLike | None = None, overrides=(), *, data: dict[str, Any] | None = None,
                      where: str = "") -> ServeConfig:
    """The service config from a YAML file (a service config, or one pipeline config) or a mapping,
    with ``key=value`` overrides, through the config door; ``ValueError`` in one line when it is wrong."""
    from imageedit_r1.config import load_config, read_config_file

    if path is not None:
        data, where = read_config_file(path), os.fspath(path)
    data = dict(data or {})
    if "pipelines" not in data:  # a pipeline config: served as the one pipeline
        data = {"pipelines": {DEFAULT_MODEL: data}}
    return load_config(ServeConfig, overrides=list(overrides), data=data, where=where).validate()
