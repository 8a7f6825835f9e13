"""The Ray executor on one local Ray instance with fake GPUs (shared by this module's tests).

Replicas are real Ray actors in their own processes; the editors are the tiny random-weight FLUX.1
Kontext (real diffusers loading and seeding) or a sleeping stand-in that logs which process edited
what. Checks: a 4-replica run equals a 1-replica run byte for byte; a replica killed mid-run loses
no item and no item is written twice; a driver SIGKILLed mid-run and restarted repeats no finished
item; in-flight items per replica stay bounded; pipeline batches give the local executor's bytes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray instance and replica processes: tens of seconds on two cores

from imageedit_r1.eval.config import EvalConfig, MethodConfig  # noqa: E402
from imageedit_r1.eval.records import Summary  # noqa: E402
from imageedit_r1.eval.runner import EvalRunner  # noqa: E402
from imageedit_r1.executors import RayConfig  # noqa: E402
from imageedit_r1.store import read_jsonl  # noqa: E402
from imageedit_r1.testing import sleepy_editor  # noqa: E402
from tests.eval_fixtures import make_benchmark  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SLEEPY = "imageedit_r1.testing.sleepy_editor:edit"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray instance, 2 CPUs and 4 fake GPUs; workers inherit the sleepy editor's settings."""
    log = tmp_path_factory.mktemp("sleepy") / "calls.jsonl"
    loads = tmp_path_factory.mktemp("loads")
    names = (sleepy_editor.SECONDS_VARIABLE, sleepy_editor.LOG_VARIABLE, sleepy_editor.LOADS_VARIABLE)
    saved = {name: os.environ.get(name) for name in names}
    os.environ[sleepy_editor.SECONDS_VARIABLE] = "0.3"
    os.environ[sleepy_editor.LOG_VARIABLE] = str(log)
    os.environ[sleepy_editor.LOADS_VARIABLE] = str(loads)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, logging_level="ERROR")
    yield {"log": log, "loads": loads, "address": ray.get_runtime_context().gcs_address}
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def calls(log: Path, prefix: str) -> list[dict]:
    return [line for line in read_jsonl(log) if line["id"].startswith(prefix)]


def ray_config(root: Path, bench, method: MethodConfig, **ray_options) -> EvalConfig:
    options = {"cpus_per_replica": 0, **ray_options}
    return EvalConfig(out_dir=str(root / "run"), benchmarks=[bench], methods=[method], executor="ray",
                      ray=RayConfig(**options))


def edit_lines(out: Path) -> list[dict]:
    return list(read_jsonl(out / "edits.jsonl"))


def edited_bytes(out: Path) -> dict[tuple[str, str], str]:
    return {(record["method"], record["sample_id"]): hashlib.sha256((out / record["edited_path"]).read_bytes()).hexdigest()
            for record in edit_lines(out) if record["status"] == "ok"}


@pytest.fixture(scope="module")
def flux_method():
    pytest.importorskip("diffusers")
    from imageedit_r1.testing.tiny_diffusion import build_tiny_flux_kontext

    flux = build_tiny_flux_kontext()
    return MethodConfig(name="flux", kind="original", seed=3, editor={"name": "flux-kontext", "options": {
        "model_id": str(flux), "local_files_only": True, "device": "cpu", "min_area": 0,
        "num_inference_steps": 2, "max_sequence_length": 32}})


def test_four_replicas_make_the_same_bytes_as_one_and_say_where(cluster, flux_method, tmp_path):
    bench = make_benchmark(tmp_path, "same", 4, size=40)
    outs = {}
    for replicas in (1, 4):
        root = tmp_path / f"r{replicas}"
        summary = EvalRunner(ray_config(root, bench, flux_method, replicas=replicas), progress=False).run("edit")
        assert summary.edits["done"] == 4 and not summary.setup_errors
        outs[replicas] = root / "run"
    assert edited_bytes(outs[4]) == edited_bytes(outs[1]) and len(edited_bytes(outs[1])) == 4
    workers = [record["worker"] for record in edit_lines(outs[4])]
    assert all(w["node"] and w["node_id"] and len(w["gpu"]) == 1 and w["seconds"] > 0 for w in workers)
    assert len({w["replica"] for w in workers}) > 1  # the work was spread
    assert len({w["gpu"][0] for w in workers}) == len({w["replica"] for w in workers})  # one GPU each
    assert {w["replica"] for w in (r["worker"] for r in edit_lines(outs[1]))} == {0}


def test_a_replica_killed_mid_run_loses_no_item_and_writes_none_twice(cluster, tmp_path):
    bench = make_benchmark(tmp_path, "kill", 16)
    method = MethodConfig(name="sleepy", kind="callable", target=SLEEPY, seed=1)
    runner = EvalRunner(ray_config(tmp_path, bench, method, replicas=2, max_in_flight=2, max_restarts=1),
                        progress=False)
    killed = {}

    def kill_one_replica_when_busy():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            log = calls(cluster["log"], "kill-")
            ended = {(c["pid"], c["id"]) for c in log if c["event"] == "end"}
            # The replica that started an item most recently and has not ended it: the one most
            # surely still holding an item when the signal lands.
            running = [c for c in log if c["event"] == "start" and (c["pid"], c["id"]) not in ended]
            if len(ended) >= 3 and running:
                victim = running[-1]["pid"]
                os.kill(victim, signal.SIGKILL)
                killed["pid"], killed["at"] = victim, time.time()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_replica_when_busy)
    killer.start()
    summary = Summary()
    runner.run_edits(summary)  # no compaction: edits.jsonl shows every line the driver wrote
    killer.join()
    assert killed, "the run ended before a replica could be killed"
    lines = edit_lines(tmp_path / "run")
    per_key = collections.Counter(record["key"] for record in lines)
    assert len(per_key) == 16 and set(per_key.values()) == {1}
    assert all(record["status"] == "ok" for record in lines), [r.get("error") for r in lines]
    assert summary.edits["done"] == 16
    # What the killed process had started and not finished was edited again, by a live process.
    log = calls(cluster["log"], "kill-")
    by_pid = collections.defaultdict(lambda: collections.Counter())
    for call in log:
        by_pid[(call["pid"], call["id"])][call["event"]] += 1
    lost = {item for (pid, item), events in by_pid.items() if pid == killed["pid"] and events["end"] < events["start"]}
    assert lost, "the killed replica held no item"
    for item in lost:
        assert any(pid != killed["pid"] and events["end"] for (pid, other), events in by_pid.items() if other == item)
    redone = [record for record in lines if record["sample_id"] in lost]
    assert all(record["worker"]["attempts"] == 2 and record["worker"]["pid"] != killed["pid"] for record in redone)


def test_in_flight_items_per_replica_are_bounded(cluster):
    import functools

    from imageedit_r1.eval.methods import build_edit_fn
    from imageedit_r1.scale.replicas import ReplicaPool

    method = MethodConfig(name="bp", kind="callable", target=SLEEPY, seed=0)
    pool = ReplicaPool(functools.partial(build_edit_fn, method), replicas=2, num_gpus=1, num_cpus=0, max_in_flight=2)
    peak = [0, 0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[:] = [max(p, n) for p, n in zip(peak, pool.in_flight, strict=True)]
            time.sleep(0.005)

    from PIL import Image

    sample = types.SimpleNamespace(id="bp-0", request="make it red")
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=12) as threads:  # more callers than slots: they wait
            results = list(threads.map(lambda _: pool.call(sample, Image.new("RGB", (8, 8))), range(12)))
    finally:
        stop.set()
        watcher.join()
        pool.close()
    assert len(results) == 12 and peak == [2, 2]
    assert pool.concurrency == 4 and pool.in_flight == [0, 0]


def test_a_driver_killed_mid_run_and_restarted_repeats_no_finished_item(cluster, tmp_path, processes):
    bench = make_benchmark(tmp_path, "drv", 14)
    config = tmp_path / "eval.yaml"
    import yaml

    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "run"), "executor": "ray",
        "ray": {"replicas": 2, "cpus_per_replica": 0, "max_in_flight": 1},
        "benchmarks": [{"name": bench.name, "source": "manifest", "manifest": bench.manifest}],
        "methods": [{"name": "sleepy", "kind": "callable", "target": SLEEPY, "seed": 2}], "judges": []}))
    command = [sys.executable, "-m", "imageedit_r1.eval", "run", "--config", str(config), "--stage", "edit",
               "--no-progress"]
    env = {**os.environ, "RAY_ADDRESS": cluster["address"]}  # joins the running cluster, as on a real one
    edits = tmp_path / "run" / "edits.jsonl"
    driver = processes.start(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline and len(list(read_jsonl(edits))) < 4 and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, driver.communicate()[0].decode()[-3000:]
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = {record["sample_id"] for record in read_jsonl(edits) if record["status"] == "ok"}
    assert 4 <= len(finished) < 14
    restarted_at = time.time()
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    redone = {c["id"] for c in calls(cluster["log"], "drv-") if c["event"] == "start" and c["time"] >= restarted_at}
    assert not redone & finished  # no finished item is edited again
    records = {record["sample_id"]: record for record in read_jsonl(edits)}
    assert len(records) == 14 and all(record["status"] == "ok" for record in records.values())
    assert redone == set(records) - finished


def test_a_pipeline_batch_on_ray_writes_the_local_executors_bytes_and_resumes(cluster, flux_method, tmp_path):
    from PIL import Image

    from imageedit_r1.pipeline.cli import main

    options = flux_method.editor.options
    args = ["--mode", "original", "--editor", "flux-kontext", "seed=3",
            *(f"editor.options.{key}={value}" for key, value in options.items())]
    images = tmp_path / "images"
    images.mkdir()
    items = []
    for index, size in enumerate([(40, 30), (31, 47), (64, 16)]):
        Image.new("RGB", size, (40 * index, 90, 200 - 30 * index)).save(images / f"{index}.png")
        items.append({"id": f"p{index}", "image": f"images/{index}.png", "request": f"make item {index} red"})
    items.append({"id": "missing", "image": "images/none.png", "request": "make it blue"})
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text("".join(json.dumps(item) + "\n" for item in items))
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["--manifest", str(manifest), "--out-dir", str(local), *args]) == 1
    assert main(["--manifest", str(manifest), "--out-dir", str(remote), *args, "executor=ray", "ray.replicas=2",
                 "ray.cpus_per_replica=0"]) == 1
    for item in items[:3]:
        assert (remote / f"{item['id']}.png").read_bytes() == (local / f"{item['id']}.png").read_bytes()
    records = {record["id"]: record for record in read_jsonl(remote / "results.jsonl")}
    assert records["missing"]["status"] == "failed" and "not found" in records["missing"]["error"]
    assert {records[f"p{i}"]["worker"]["replica"] for i in range(3)} <= {0, 1}
    trace = json.loads((remote / "p0.trace.json").read_text())
    assert trace["status"] == "ok" and trace["worker"]["gpu"] and trace["seeds"] == [3]
    lines_before = len(list(read_jsonl(remote / "results.jsonl")))
    assert main(["--manifest", str(manifest), "--out-dir", str(remote), *args, "executor=ray", "ray.replicas=1",
                 "ray.cpus_per_replica=0"]) == 1
    after = list(read_jsonl(remote / "results.jsonl"))
    assert [record["id"] for record in after[lines_before:]] == ["missing"]  # only the failed item again


def test_failures_on_replicas_are_recorded_by_kind_like_a_local_run_and_say_where(cluster, tmp_path):
    bench = make_benchmark(tmp_path, "fail", 4)
    manifest = Path(bench.manifest)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines[1]["request"] += " [refuse]"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    method = MethodConfig(name="sleepy", kind="callable", target=SLEEPY, seed=5)
    outcomes = {}
    for executor in ("local", "ray"):
        root = tmp_path / executor
        config = ray_config(root, bench, method, replicas=2)
        config.executor = executor
        summary = EvalRunner(config, progress=False).run("edit")
        assert summary.edits == collections.Counter({"done": 3, "failed": 1})
        outcomes[executor] = {r["sample_id"]: (r["status"], r.get("error_kind"), r.get("retryable"))
                              for r in edit_lines(root / "run")}
    assert outcomes["ray"] == outcomes["local"] and outcomes["ray"]["fail-1"][0] == "failed"
    failed = next(r for r in edit_lines(tmp_path / "ray" / "run") if r["status"] == "failed")
    assert "refused" in failed["error"] and failed["worker"]["gpu"] and failed["worker"]["attempts"] == 1
    assert edited_bytes(tmp_path / "ray" / "run") == edited_bytes(tmp_path / "local" / "run")


def with_requests(bench, changes: dict[int, str]):
    """``bench`` with the requests of some items rewritten (a marker the sleepy editor acts on)."""
    path = Path(bench.manifest)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for index, request in changes.items():
        lines[index]["request"] = request
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return bench


def starts(log: Path, item: str) -> int:
    return sum(1 for call in calls(log, item) if call["id"] == item and call["event"] == "start")


def test_an_item_that_kills_its_replica_is_quarantined_and_the_items_around_it_are_edited(cluster, tmp_path):
    bench = with_requests(make_benchmark(tmp_path, "psn", 6), {1: "[psn-1] [kill] remove the lamp"})
    method = MethodConfig(name="sleepy", kind="callable", target=SLEEPY, seed=4)
    config = ray_config(tmp_path, bench, method, replicas=1, max_in_flight=2)  # the only replica
    summary = EvalRunner(config, progress=False).run("edit")
    records = {record["sample_id"]: record for record in edit_lines(tmp_path / "run")}
    poison = records.pop("psn-1")
    assert poison["status"] == "failed" and poison["error_kind"] == "poison" and poison["retryable"] is False
    assert "quarantined" in poison["error"] and "--retry-failed" in poison["error"]
    assert all(record["status"] == "ok" for record in records.values()), records  # no innocent item lost
    assert summary.edits == {"done": 5, "failed": 1} and summary.failure_kinds == {"edit/poison": 1}
    assert starts(cluster["log"], "psn-1") == 2  # killed the replica twice, the second time alone
    assert len(summary.replicas) == 1 and "quarantined" in summary.replicas[0]  # and the replica was kept

    again = EvalRunner(config, progress=False).run("edit")  # a re-run does not send it again...
    assert again.edits == {"cached": 6} and starts(cluster["log"], "psn-1") == 2
    asked = EvalRunner(config, retry_failed=True, progress=False).run("edit")  # ...unless asked
    assert asked.edits == {"cached": 5, "failed": 1} and starts(cluster["log"], "psn-1") == 4


def test_a_replica_whose_model_cannot_load_is_retired_at_once_and_the_other_does_the_work(cluster, tmp_path):
    (cluster["loads"] / "claimed").unlink(missing_ok=True)
    bench = make_benchmark(tmp_path, "oom", 12)
    method = MethodConfig(name="loads", kind="callable", target="imageedit_r1.testing.sleepy_editor:LoadsOnOneGpu",
                          seed=5)
    summary = EvalRunner(ray_config(tmp_path, bench, method, replicas=2, max_in_flight=2), progress=False).run("edit")
    lines = edit_lines(tmp_path / "run")
    assert summary.edits == {"done": 12} and all(record["status"] == "ok" for record in lines)
    (healthy,) = {(record["worker"]["replica"], record["worker"]["gpu"][0]) for record in lines}  # one replica did all
    (note,) = summary.replicas
    match = re.search(r"replica (\d) \(node (\S+), GPU (\S+)\) could not set up: OutOfMemoryError: CUDA out of "
                      r"memory\. .*; retired, the other replicas do its work", note)
    assert match, note
    assert int(match.group(1)) != healthy[0] and match.group(3) != healthy[1]
    assert match.group(2) == lines[0]["worker"]["node"] and f"GPU {match.group(3)} has" in note
    assert any(line.startswith("replicas:   method loads: ") for line in summary.lines())


def test_the_method_stops_only_when_no_replica_is_healthy(cluster, tmp_path):
    bench = make_benchmark(tmp_path, "none", 4)
    method = MethodConfig(name="never", kind="callable", target="imageedit_r1.testing.sleepy_editor:NeverLoads", seed=6)
    summary = EvalRunner(ray_config(tmp_path, bench, method, replicas=2), progress=False).run("edit")
    (error,) = summary.setup_errors
    assert error.startswith("method never: NoHealthyReplica: no healthy never replica is left")
    assert error.count("could not set up: OutOfMemoryError: CUDA out of memory") == 2
    assert edit_lines(tmp_path / "run") == []  # nothing recorded as failed: the items wait for a run that can


def test_the_agents_plan_once_in_their_own_actor_and_the_editor_replicas_only_execute(cluster, flux_method, tmp_path,
                                                                                       tiny_qwen25vl):
    """Two FLUX methods share local (transformers) agents: the plan stage runs them once per sample in the
    agents' actor on its own fake GPU; with the agents' weights gone, the editor replicas still edit every
    item (they never load the agents) and write the local executor's bytes."""
    import shutil

    agents_dir = tmp_path / "agents"
    shutil.copytree(tiny_qwen25vl, agents_dir)
    agent = {"backend": "transformers", "model": str(agents_dir), "max_tokens": 8, "options": {"device": "cpu"}}
    options = dict(flux_method.editor.options)
    methods = [MethodConfig(name=name, kind="pipeline", seed=3, decomposer=dict(agent), on_decompose_failure="keywords",
                            on_sequence_failure="template",
                            editor={"name": "flux-kontext", "options": {**options, "guidance_scale": guidance}})
               for name, guidance in (("flux-a", 2.5), ("flux-b", 4.0))]
    bench = make_benchmark(tmp_path, "agents", 3, size=40)

    def config(root: Path, executor: str) -> EvalConfig:
        return EvalConfig(out_dir=str(root / "run"), benchmarks=[bench], methods=methods, executor=executor,
                          ray=RayConfig(replicas=2, cpus_per_replica=0, agent_gpus=1))

    local = EvalRunner(config(tmp_path / "local", "local"), progress=False).run("edit")
    assert local.plans == {"made": 3} and local.edits["done"] == 6, local.lines()

    remote = tmp_path / "ray"
    planned = EvalRunner(config(remote, "ray"), progress=False).run("plan")
    assert planned.plans == {"made": 3} and not planned.edits, planned.lines()
    plans = list(read_jsonl(remote / "run" / "plans.jsonl"))
    workers = [p["plan"]["record"]["planning"]["worker"] for p in plans]
    assert len(plans) == 3 and all(p["methods"] == ["flux-a", "flux-b"] and p["batch"] == 3 for p in plans)
    assert len({(w["pid"], w["agents"]) for w in workers}) == 1 and all(len(w["gpu"]) == 1 for w in workers)
    assert workers[0]["pid"] != os.getpid()  # planned in the actor, not in the driver

    (agents_dir / "model.safetensors").unlink()  # an editor replica that loaded the agents would now fail
    edited = EvalRunner(config(remote, "ray"), progress=False).run("edit")
    assert not edited.plans and edited.edits["done"] == 6 and not edited.setup_errors, edited.lines()
    assert edited_bytes(remote / "run") == edited_bytes(tmp_path / "local" / "run")
    records = edit_lines(remote / "run")
    assert len({record["edited_sha256"] for record in records}) == 6  # the two editors differ
    for record in records:
        assert record["worker"]["replica"] in (0, 1)
        assert record["trace"]["planning"]["shared_by"] == ["flux-a", "flux-b"]
        assert record["trace"]["planning"]["worker"]["pid"] == workers[0]["pid"]
