"""The service as a Ray Serve application: an ingress, and a planner and an editor per pipeline.

- ``Service`` (the ingress, one replica by default) serves the HTTP routes
  (``imageedit_r1.serve.api``) and calls the others through deployment handles.
- ``Planner`` holds a pipeline's agents. Concurrent requests reach it one by one and
  ``@serve.batch`` hands them to ``plan_outcomes`` together, which plans them in one ``plan_batch`` (``imageedit_r1.serve.work``).
- ``Editor`` holds a pipeline's editor, one replica per GPU (``num_gpus``; hosted editors take
  none), scaled by Serve's autoscaler between ``min_replicas`` and ``max_replicas``. Each
  replica runs ``concurrent_edits`` edits at once (1 on a GPU) with the next request waiting in
  it, and Serve queues up to ``max_queued_requests`` more; beyond that the request gets
  ``queue_full_status`` with ``Retry-After``, in OpenAI's error shape.

A client's ``model`` picks one of these pipelines; nothing a request says makes a replica load
another model or read another key. ``build_application(config)`` binds it all;
``app_builder({"config": PATH})`` does the same for ``serve run`` and a RayService manifest.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from imageedit_r1.pipeline.config import PipelineConfig
from imageedit_r1.serve import errors
from imageedit_r1.serve.api import ApiSettings, ServedModel, create_api
from imageedit_r1.serve.config import ServeConfig
from imageedit_r1.serve.errors import APIError
from imageedit_r1.serve.sizing import deployment_options, gpu_shortfall
from imageedit_r1.serve.work import edit_image, plan_outcomes

APP_NAME = "imageedit-r1"


def _pipeline(config: PipelineConfig):
    from imageedit_r1.masking import register_config
    from imageedit_r1.pipeline.core import ImageEditR1

    register_config(config)
    return ImageEditR1(config=config)


class Planner:
    """A pipeline's decomposition and sequencing agents; requests planned together in batches."""

    def __init__(self, pipeline: PipelineConfig, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        self.pipeline = _pipeline(pipeline)
        self.plan.set_max_batch_size(max_batch_size)
        self.plan.set_batch_wait_timeout_s(batch_wait_timeout_s)
        if pipeline.mode != "original":  # load the agents' models now: the first request does not wait for them
            self.pipeline.decomposer  # noqa: B018
            self.pipeline.sequencer  # noqa: B018

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def plan(self, images: list[bytes], requests: list[str]) -> list[dict[str, Any]]:
        outcomes = await asyncio.to_thread(plan_outcomes, self.pipeline, images, requests)
        return [{"outcome": outcome, "batch_size": len(images)} for outcome in outcomes]


class Editor:
    """A pipeline's editor on one GPU (or none, for a hosted editor); runs plans as given."""

    def __init__(self, pipeline: PipelineConfig, concurrent_edits: int) -> None:
        from imageedit_r1.scale.replicas import where

        self.pipeline = _pipeline(pipeline)
        editor = self.pipeline.editor
        if hasattr(editor, "load"):  # the model is on the GPU before the replica takes requests
            editor.load()
        # Requests beyond concurrent_edits wait here for the device. A request cancelled while its
        # edit runs frees Serve's slot, not the GPU: the edit thread holds its slot until it is done.
        self._slots = threading.BoundedSemaphore(concurrent_edits)
        self._worker = where(serve.get_replica_context().replica_id.unique_id)

    async def edit(self, image: bytes, plan: dict[str, Any], seed: int, output_format: str,
                   output_compression: int | None) -> dict[str, Any] | APIError:
        return await asyncio.to_thread(self._edit, image, plan, seed, output_format, output_compression)

    def _edit(self, image, plan, seed, output_format, output_compression) -> dict[str, Any] | APIError:
        with self._slots:
            try:
                return edit_image(self.pipeline, image, plan, seed=seed, output_format=output_format,
                                  output_compression=output_compression, worker=dict(self._worker))
            except APIError as exc:  # a value, so a failed edit is told apart from a replica that died
                return exc


@serve.ingress()
class Service:
    """The HTTP ingress: checks each request at the door, then plans and edits through the handles."""

    def __init__(self, settings: ApiSettings, planners: dict[str, Any], editors: dict[str, Any],
                 queue_full_status: int, retry_after_s: float) -> None:
        self.settings, self.planners, self.editors = settings, planners, editors
        self.queue_full_status, self.retry_after_s = queue_full_status, retry_after_s

    def __serve_build_asgi_app__(self):
        return create_api(self, self.settings)

    async def plan(self, model: str, image: bytes, prompt: str) -> tuple[dict[str, Any], int]:
        answer = await self._settle(self.planners[model].plan.remote(image, prompt), "planner")
        if isinstance(answer["outcome"], APIError):
            raise answer["outcome"]
        return answer["outcome"], answer["batch_size"]

    async def edit(self, model: str, image: bytes, plan: dict[str, Any], seeds: list[int], output_format: str,
                   output_compression: int | None) -> list[dict[str, Any]]:
        handle = self.editors[model]
        calls = [handle.edit.remote(image, plan, seed, output_format, output_compression) for seed in seeds]
        results = await asyncio.gather(*(self._settle(call, "editor") for call in calls), return_exceptions=True)
        failed = [result for result in results if isinstance(result, BaseException)]
        if failed:
            for call in calls:  # one image failed: the request fails, and the others stop
                call.cancel()
            raise failed[0]
        for result in results:
            if isinstance(result, APIError):
                raise result
        return list(results)

    async def _settle(self, response, stage: str):
        try:
            return await response
        except BackPressureError:
            raise errors.queue_full(self.queue_full_status, self.retry_after_s) from None
        except (RayActorError, ActorUnavailableError, DeploymentUnavailableError):
            raise errors.unavailable(f"the {stage} replica stopped while working; Ray Serve is starting another: "
                                     "try again", retry_after=self.retry_after_s) from None


# ----------------------------------------------------------------------------- binding


def _served_model(name: str, pipeline: PipelineConfig) -> ServedModel:
    return ServedModel(name=name, editor=pipeline.editor.name, mode=pipeline.mode, seed=pipeline.seed)


def build_application(config: ServeConfig, key_digests: tuple[str, ...] = (), *, fixed_gpus: bool = False):
    """The bound Serve application for ``config`` (Ray must be initialised: the cluster's GPUs size
    the editors). ``key_digests``: SHA-256 digests of the API keys (none: no key needed).
    ``fixed_gpus``: the cluster cannot grow (a local instance), so deployments that could never all
    start are a ValueError saying what to change, not a wait."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    options = deployment_options(config, gpus)
    shortfall = gpu_shortfall(options, gpus)
    if shortfall and fixed_gpus:
        raise ValueError(shortfall)
    if shortfall:
        print(f"warning: {shortfall}; waiting for the cluster to add GPUs", file=sys.stderr)
    planners, editors = {}, {}
    for name, pipeline in config.pipelines.items():
        planners[name] = serve.deployment(Planner).options(name=f"planner-{name}", **options["planners"][name]).bind(
            pipeline, config.planner.max_batch_size, config.planner.batch_wait_timeout_s)
        editor_options = dict(options["editors"][name])
        init_args = editor_options.pop("init_args")
        editors[name] = serve.deployment(Editor).options(name=f"editor-{name}", **editor_options).bind(
            pipeline, *init_args)
    settings = ApiSettings(models=tuple(_served_model(name, pipeline) for name, pipeline in config.pipelines.items()),
                           limits=_upload_limits(config), max_n=config.limits.max_n, key_digests=tuple(key_digests))
    return serve.deployment(Service).options(name="service", **options["ingress"]).bind(
        settings, planners, editors, config.queue_full_status, config.retry_after_s)


def _upload_limits(config: ServeConfig):
    from imageedit_r1.serve.front_door import UploadLimits

    return UploadLimits(max_bytes=config.limits.max_bytes, max_pixels=config.limits.max_pixels)


def app_builder(args: dict[str, Any]):
    """For ``serve run imageedit_r1.serve.deployments:app_builder config=PATH`` and a RayService's
    ``import_path``: the application for the service config at ``args["config"]`` (``overrides``: a
    list of ``key=value``). API keys come from ``$IMAGEEDIT_R1_API_KEYS`` where Ray builds it (set it
    on every node); without them it refuses to build unless ``args["anonymous"]`` is true."""
    from imageedit_r1.serve.config import load_serve_config
    from imageedit_r1.serve.front_door import KEYS_ENV, key_digest, read_api_keys

    config = load_serve_config(args["config"], args.get("overrides") or ())
    keys = read_api_keys(None, os.environ)
    if not keys and str(args.get("anonymous", "")).lower() not in ("1", "true", "yes"):
        raise ValueError(f"no API keys: set {KEYS_ENV} on every node (comma-separated), or pass anonymous=true "
                         "for a service no one else can reach")
    return build_application(config, tuple(key_digest(key) for key in keys))
