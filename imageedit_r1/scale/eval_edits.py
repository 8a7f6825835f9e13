"""The edit stage of ``python -m imageedit_r1.eval run`` on Ray replicas (``executor: ray``).

``ray_edit_fn_factory(config, base)`` wraps the runner's edit-function factory. For a method
that holds a model (a local editor, a local verifier, or a ``callable``) it starts one replica per
GPU, each building ``base(method)`` once, and returns a ``RemoteEditFn``: called from the
runner's threads like any edit function, it runs the edit on a replica and hands back the
image, so the runner's own bookkeeping (resume, records, failure kinds, the one writer) is the
same code for both executors. Pipeline methods get their plans from the plan stage (made once by
the agents' actor, ``scale.planner``): the replicas execute them and never load the agents.
Methods with nothing to load on a GPU — hosted editors, ``identity``, ``precomputed`` — run in
the driver as before, at the config's ``edit_concurrency`` (their API concurrency).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imageedit_r1.eval.config import EvalConfig, MethodConfig
from imageedit_r1.eval.methods import EditFn, EditOutput
from imageedit_r1.scale.placement import agents_are_local, is_hosted_editor

log = logging.getLogger("imageedit_r1.scale")


def runs_on_replicas(method: MethodConfig) -> bool:
    if method.kind == "callable":
        return True  # user code: may load anything
    if method.kind == "original":
        return not is_hosted_editor(method.editor.name)
    if method.kind in ("pipeline", "pipeline-verify"):  # the agents plan elsewhere (the plan stage)
        verifier = method.verify.judge if method.verify is not None else None
        return not is_hosted_editor(method.editor.name) or agents_are_local(verifier, None)
    return False


def _light_sample(sample: Any) -> Any:
    """The sample without its decoded image (the replica gets the image once, as an argument)."""
    image = getattr(sample, "image", None)
    if dataclasses.is_dataclass(sample) and image is not None and not isinstance(image, (str, Path)):
        return dataclasses.replace(sample, image=None)
    return sample


class RemoteEditFn:
    """An ``EditFn`` whose edits run on a ``ReplicaPool``; ``concurrency`` and ``close`` tell the
    runner how many threads to feed it with and when to free the GPUs."""

    def __init__(self, pool) -> None:
        self.pool = pool
        # One driver thread per slot, plus one per replica that reads and stores the next item's
        # original while every slot is busy, so a replica never waits on the driver.
        self.concurrency = pool.concurrency + pool.size

    def __call__(self, sample: Any, image: Any, plan: Any = None) -> EditOutput:
        output, worker = self.pool.call(_light_sample(sample), image, **({"plan": plan} if plan is not None else {}))
        output.worker = worker
        return output

    def notes(self) -> list[str]:
        """Retired replicas (node, GPU, why) and quarantined items, for the run's summary."""
        return self.pool.notes()

    def close(self) -> None:
        self.pool.close()


def ray_edit_fn_factory(config: EvalConfig, base: Callable[[MethodConfig], EditFn]) -> Callable[[MethodConfig], EditFn]:
    """A factory like ``base`` that places GPU methods on Ray replicas (see the module docstring)."""

    def factory(method: MethodConfig) -> EditFn:
        if not runs_on_replicas(method):
            return base(method)
        from imageedit_r1.scale.cluster import connect, replica_count
        from imageedit_r1.scale.replicas import ReplicaPool

        cfg = config.ray
        connect(cfg)
        gpus = cfg.gpus_per_replica
        replicas = replica_count(cfg, gpus)
        log.info("method %s: %d replicas x %s GPU, %d in flight each", method.name, replicas, gpus, cfg.max_in_flight)
        pool = ReplicaPool.for_config(functools.partial(base, method), cfg, replicas=replicas, num_gpus=gpus,
                                      name=method.name)
        return RemoteEditFn(pool)

    return factory
