"""Scale-out on Ray: editor replicas across GPUs and nodes, the driver the only writer.

``cluster`` (connect to Ray; its settings are ``imageedit_r1.executors.RayConfig``),
``replicas`` (the replica actor and the pool that feeds it), ``eval_edits`` (the edit stage of
``python -m imageedit_r1.eval run``) and ``batch`` (pipeline manifests). Importing this package
loads no Ray: ``imageedit_r1.executors`` imports its parts when a run chooses ``executor: ray``.
"""
