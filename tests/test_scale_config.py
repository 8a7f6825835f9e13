"""``executor: ray`` settings, placement of methods on replicas, and errors crossing processes (no Ray started)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from imageedit_r1.endpoints import AgentConfig
from imageedit_r1.eval.config import EvalConfig, MethodConfig, load_eval_config
from imageedit_r1.executors import RayConfig
from imageedit_r1.pipeline.config import EditorConfig, PipelineConfig, load_pipeline_config
from imageedit_r1.pipeline.trace import EditFailed
from imageedit_r1.unavailable import Unavailable, is_unavailable

ROOT = Path(__file__).resolve().parents[1]


def test_the_executor_is_chosen_in_config_and_bad_settings_stop_before_any_work(tmp_path):
    config = load_eval_config(None, ["executor=ray", "ray.replicas=4", "ray.gpus_per_replica=0.5"])
    assert config.executor == "ray" and config.ray.replicas == 4 and config.ray.gpus_per_replica == 0.5
    with pytest.raises(ValueError, match="executor must be one of"):
        load_eval_config(None, ["executor=dask"])
    with pytest.raises(ValueError, match="max_in_flight"):
        load_eval_config(None, ["executor=ray", "ray.max_in_flight=0"])
    pipeline = load_pipeline_config(None, ["executor=ray", "ray.address=auto"])
    assert pipeline.executor == "ray" and pipeline.ray.address == "auto"
    with pytest.raises(ValueError, match="ray.replicas"):
        PipelineConfig(executor="ray", ray=RayConfig(replicas=0)).validate()
    assert EvalConfig().executor == "local" and PipelineConfig().executor == "local"


def test_methods_that_hold_a_model_go_to_replicas_and_hosted_ones_stay_in_the_driver():
    from imageedit_r1.scale.eval_edits import runs_on_replicas

    hosted_agent = {"backend": "openai", "model": "served", "base_url": "http://vllm:8000/v1"}
    assert runs_on_replicas(MethodConfig(name="a", kind="original", editor="flux-kontext"))
    assert runs_on_replicas(MethodConfig(name="b", kind="callable", target="m:f"))
    assert runs_on_replicas(MethodConfig(name="c", kind="pipeline", editor="qwen-image-edit", decomposer=hosted_agent))
    # a hosted editor with local agents: the agents plan on their own actor, the edits need no GPU
    assert not runs_on_replicas(MethodConfig(name="d", kind="pipeline", editor="nano-banana"))
    # ... unless a local verifier judges each edit there
    assert runs_on_replicas(MethodConfig(name="v", kind="pipeline-verify", editor="nano-banana", verify={}))
    # hosted editor and hosted (served) agents: the driver's edit_concurrency, the API's limits
    assert not runs_on_replicas(MethodConfig(name="e", kind="pipeline", editor="nano-banana", decomposer=hosted_agent))
    assert not runs_on_replicas(MethodConfig(name="f", kind="original", editor="openai-image"))
    assert not runs_on_replicas(MethodConfig(name="g", kind="identity"))
    assert not runs_on_replicas(MethodConfig(name="h", kind="precomputed", images_dir="x"))


def test_pipeline_batches_ask_a_gpu_only_when_a_model_runs_on_the_editor_replica():
    from imageedit_r1.scale.batch import needs_gpu

    served = AgentConfig(backend="openai", model="imageedit-r1", base_url="http://vllm:8000/v1")
    assert needs_gpu(PipelineConfig(editor=EditorConfig(name="flux-kontext"), decomposer=served))
    # local transformers agents plan on the agents' actor: an editor replica never loads them
    assert not needs_gpu(PipelineConfig(editor=EditorConfig(name="nano-banana")))
    assert not needs_gpu(PipelineConfig(editor=EditorConfig(name="nano-banana"), decomposer=served))
    assert not needs_gpu(PipelineConfig(mode="original", editor=EditorConfig(name="openai-image")))


class Unpicklable(RuntimeError):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle
        self.trace = {"status": "failed", "errors": [{"stage": "edit"}]}


class MissingWeights(Unpicklable, Unavailable):
    """Cannot run here, and cannot travel back from the replica as itself."""


def test_errors_come_back_from_a_replica_with_their_kind_and_trace():
    from imageedit_r1.eval.records import classify_failure
    from imageedit_r1.scale.replicas import RemoteError, ReplicaLostError, portable

    failed = portable(EditFailed("editing failed: boom", {"status": "failed", "seeds": [3]}))
    failed = pickle.loads(pickle.dumps(failed))  # the trip a Ray return value makes
    assert isinstance(failed, EditFailed) and failed.trace == {"status": "failed", "seeds": [3]}
    odd = pickle.loads(pickle.dumps(portable(Unpicklable("odd", handle=lambda: None))))
    assert isinstance(odd, RemoteError) and odd.remote_type == "Unpicklable" and odd.trace["status"] == "failed"
    assert "odd" in str(odd)
    missing = portable(MissingWeights("no weights here", handle=lambda: None))
    assert is_unavailable(missing)  # still stops the method instead of failing every item
    assert classify_failure(ReplicaLostError("replicas died 3 times")) == ("replica_lost", True)


def test_importing_the_configs_does_not_import_ray():
    code = ("import imageedit_r1.scale, imageedit_r1.eval.config, imageedit_r1.pipeline.config, "
            "imageedit_r1.scale.eval_edits, imageedit_r1.scale.batch, sys; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_evaluation_launchers_start_ray_and_run_the_driver_with_executor_ray():
    import yaml

    sbatch = ROOT / "recipes" / "slurm" / "eval.sbatch"
    assert subprocess.run(["bash", "-n", str(sbatch)], capture_output=True).returncode == 0
    text = sbatch.read_text()
    assert "ray start --head" in text and "ray start --address" in text and "SLURM_JOB_NUM_NODES" in text
    assert text.rstrip().endswith('"$@" executor=ray') and "python -m imageedit_r1.eval run" in text
    job = yaml.safe_load((ROOT / "recipes" / "k8s" / "rayjob-eval.yaml").read_text())
    assert job["kind"] == "RayJob"
    entry = job["spec"]["entrypoint"]
    assert "python -m imageedit_r1.eval run" in entry and entry.rstrip().endswith("executor=ray")
    cluster = job["spec"]["rayClusterSpec"]
    assert int(cluster["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"]) > 0
    # the entrypoint's arguments parse with the real command line
    from imageedit_r1.eval.__main__ import build_parser

    args = build_parser().parse_args(entry.split("python -m imageedit_r1.eval ", 1)[1].split())
    assert "executor=ray" in args.overrides and args.config == "/data/eval/eval.yaml"


def test_replicas_default_to_one_per_gpu_and_a_cluster_without_gpus_stops_the_batch_clearly(monkeypatch, tmp_path,
                                                                                            capsys):
    ray = pytest.importorskip("ray")
    from imageedit_r1.scale import cluster

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 16.0})
    assert cluster.replica_count(RayConfig(), 1.0) == 16
    assert cluster.replica_count(RayConfig(), 0.5) == 32
    assert cluster.replica_count(RayConfig(replicas=3), 1.0) == 3
    assert cluster.replica_count(RayConfig(), 0.0) == 64  # CPU replicas (hosted editor and agents)
    assert cluster.replica_count(RayConfig(), 1.0, reserved_gpus=1.0) == 15  # one GPU holds the agents
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    with pytest.raises(cluster.ClusterUnavailableError, match="agent_gpus=0.5"):
        cluster.replica_count(RayConfig(), 1.0, reserved_gpus=1.0)
    assert cluster.replica_count(RayConfig(), 0.5, reserved_gpus=0.5) == 1
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(cluster.ClusterUnavailableError, match="no GPU"):
        cluster.replica_count(RayConfig(), 1.0)

    from PIL import Image

    from imageedit_r1.pipeline.cli import main

    monkeypatch.setattr(cluster, "connect", lambda cfg: None)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_text('{"id": "a", "image": "a.png", "request": "make it red"}\n')
    code = main(["--manifest", str(tmp_path / "m.jsonl"), "--out-dir", str(tmp_path / "out"), "--mode", "original",
                 "executor=ray", f"editor.options.model_id={tmp_path}"])  # a local folder: the model check passes
    assert code == 2 and "has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.jsonl").exists()  # nothing recorded: nothing could run


def test_a_refusal_wrapped_in_a_pipeline_failure_is_still_a_refusal_after_the_trip_back():
    from imageedit_r1.agents.editors.base import EditRefusedError
    from imageedit_r1.eval.records import classify_failure
    from imageedit_r1.scale.replicas import portable_chain, rebuild_chain

    try:
        try:
            raise EditRefusedError("blocked by the safety system")
        except EditRefusedError as refusal:
            raise EditFailed("editing failed: blocked", {"status": "refused"}) from refusal
    except EditFailed as exc:
        wrapped = exc
    assert classify_failure(wrapped) == ("refusal", False)
    back = rebuild_chain(pickle.loads(pickle.dumps(portable_chain(wrapped))))  # as a Ray return value
    assert isinstance(back, EditFailed) and isinstance(back.__cause__, EditRefusedError)
    assert classify_failure(back) == ("refusal", False)


def test_a_batch_item_quarantined_on_ray_is_not_sent_again_unless_asked(tmp_path, capsys):
    """The batch loop's re-run rule for what the Ray pool raises about an item that killed its replicas
    (the pool itself is exercised on a Ray cluster in test_scale_ray.py)."""
    import json

    from PIL import Image

    from imageedit_r1.pipeline import ImageEditR1
    from imageedit_r1.pipeline.batch import run_batch
    from imageedit_r1.scale.replicas import NoHealthyReplica, PoisonItemError
    from imageedit_r1.store import read_jsonl
    from tests.test_pipeline_verify import SeedEditor

    class OnReplicas:  # what the batch loop sees of RemotePipeline: a call per item
        def __init__(self) -> None:
            self.pipe = ImageEditR1(editor=SeedEditor(), config=PipelineConfig(mode="original", seed=1))
            self.config, self.requests = self.pipe.config, []

        def __call__(self, image, request, **options):
            self.requests.append(request)
            if "[kill]" in request:
                raise PoisonItemError("an item killed its pipeline replica 2 times (the last time running alone): "
                                      "quarantined")
            return self.pipe(image, request, **options)

    for index in range(3):
        Image.new("RGB", (16, 12), (80 * index, 40, 40)).save(tmp_path / f"{index}.png")
    manifest = tmp_path / "m.jsonl"
    requests = ["make it red", "[kill] remove the lamp", "make it blue"]
    manifest.write_text("".join(json.dumps({"id": f"i{i}", "image": f"{i}.png", "request": r}) + "\n"
                                for i, r in enumerate(requests)))
    out = tmp_path / "out"
    first = OnReplicas()
    assert run_batch(first, manifest, out, False) == 1 and len(first.requests) == 3
    record = {r["id"]: r for r in read_jsonl(out / "results.jsonl")}["i1"]
    assert record["status"] == "failed" and record["error_kind"] == "poison" and record["retryable"] is False
    again = OnReplicas()
    assert run_batch(again, manifest, out, False) == 1 and again.requests == []
    assert "1 quarantined earlier, not sent again (i1): --retry-failed sends them" in capsys.readouterr().out
    asked = OnReplicas()
    assert run_batch(asked, manifest, out, False, retry_failed=True) == 1 and asked.requests == [requests[1]]
    assert is_unavailable(NoHealthyReplica("no healthy replica"))  # stops a batch instead of failing its items
