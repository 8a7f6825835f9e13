"""Scale-out on Ray: editor replicas across GPUs and nodes, the driver the only writer.

``config`` (``executor`` names and ``RayConfig``, stdlib only), ``cluster`` (connect to Ray),
``replicas`` (the replica actor and the pool that feeds it), ``eval_edits`` (the edit stage of
``python -m imageedit_r1.eval run``) and ``batch`` (pipeline manifests). Importing this package
loads no Ray: it is imported when a run chooses ``executor: ray``.
"""

from imageedit_r1.scale.config import EXECUTORS, RayConfig

__all__ = ["EXECUTORS", "RayConfig"]
