"""Start the service on Ray Serve, wait for a stop signal, and leave nothing running.

``run`` joins Ray (``$RAY_ADDRESS`` or ``ray.address``: a cluster; otherwise a new local
instance, whose Serve proxy gets the front door: ``front_door.proxy_middlewares``), starts
Serve's HTTP proxy on ``host:port``, deploys the application (``imageedit_r1.serve.deployments``)
and blocks until SIGINT or SIGTERM. Then it deletes the application; a local Ray instance it
started is shut down with every replica. ``running`` is the same without the wait.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imageedit_r1.serve.config import DEFAULT_MODEL, ServeConfig, load_serve_config


def demo_config(work: Path, overrides=()) -> ServeConfig:
    """The offline demo: the pipeline demo's tiny random-weight agents and editor (built into
    ``work``) served as ``imageedit-r1``, on CPUs (no GPU asked for)."""
    from imageedit_r1.pipeline.demo import FLUX_DIR, QWEN_DIR, build_demo_models, demo_config_dict

    data = {"pipelines": {DEFAULT_MODEL: demo_config_dict(str(work / QWEN_DIR), str(work / FLUX_DIR))},
            "planner": {"num_gpus": 0}, "editor": {"gpus_per_replica": 0, "replicas": 1}}
    config = load_serve_config(data=data, overrides=overrides, where="--demo")
    print("building tiny random-weight models for the offline demo...", flush=True)
    build_demo_models(work)
    return config


def metrics_url(host: str) -> str | None:
    """Where this node's Prometheus metrics (Ray Serve's included) are exported, when Ray says."""
    import ray

    ports = [node.get("MetricsExportPort") for node in ray.nodes() if node.get("Alive")]
    port = next((port for port in ports if port), None)
    return f"http://{host}:{port}/metrics" if port else None


@contextmanager
def running(config: ServeConfig, *, host: str, port: int, key_digests: tuple[str, ...] = ()) -> Iterator[str]:
    """The service deployed and answering at the URL this yields; on leaving, the application is
    deleted and a local Ray instance started here is shut down, whatever happened."""
    from ray import serve

    from imageedit_r1.scale.cluster import connect
    from imageedit_r1.serve.deployments import APP_NAME, build_application
    from imageedit_r1.serve.front_door import KEYS_ENV, proxy_door_environment

    local = not (config.ray.address or os.environ.get("RAY_ADDRESS"))
    # A new local instance's Serve proxy gets the front door too; its processes inherit this
    # environment, so they get the keys' digests and never the keys themselves.
    door = {**proxy_door_environment(key_digests, config.limits.max_bytes), KEYS_ENV: None} if local else {}
    try:  # a stop signal while Ray starts still shuts down what it started
        with _environment(door):
            connect(config.ray)
        serve.start(http_options={"host": host, "port": port, "request_timeout_s": config.request_timeout_s})
        serve.run(build_application(config, key_digests, fixed_gpus=local), name=APP_NAME, route_prefix="/")
        yield f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    finally:
        _stop(local)


@contextmanager
def _environment(variables: dict[str, str | None]) -> Iterator[None]:
    """``variables`` set (None: unset) in this process's environment, which a new local Ray
    instance inherits, while inside."""
    saved = {name: os.environ.get(name) for name in variables}
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(config: ServeConfig, *, host: str, port: int, key_digests: tuple[str, ...], demo: bool = False) -> int:
    """Serve until SIGINT or SIGTERM (see the module docstring)."""
    stop = threading.Event()
    print(f"deploying {', '.join(config.pipelines)} (planner and editor replicas load their models)...", flush=True)
    with running(config, host=host, port=port, key_digests=key_digests) as url:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print(f"ImageEdit-R1 is serving {', '.join(config.pipelines)} at {url}/v1 "
              f"(POST /v1/images/edits, /v1/plans, /v1/plans/execute; GET /v1/models, /healthz)"
              + (" [OFFLINE DEMO: random weights, the edits are noise]" if demo else ""), flush=True)
        metrics = metrics_url("127.0.0.1" if url.startswith("http://127.0.0.1") else "<node>")
        if metrics:
            print(f"Prometheus metrics (Ray Serve's): {metrics}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
        print("stopping...", flush=True)
    return 0


def _stop(local: bool) -> None:
    import ray
    from ray import serve

    from imageedit_r1.serve.deployments import APP_NAME

    try:
        if not ray.is_initialized():  # stopped before Ray was up: nothing of Serve's to remove
            pass
        elif local:
            serve.shutdown()
        else:  # a cluster's Serve may host other applications: remove ours only
            serve.delete(APP_NAME)
    except Exception as exc:  # noqa: BLE001 - whatever happened, the Ray instance below still goes
        print(f"warning: stopping Serve: {exc}", file=sys.stderr)
    finally:
        ray.shutdown()
