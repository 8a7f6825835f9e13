"""The service's rules without Ray: its config, deployment sizes, keys, seeds, OpenAI error shapes,
the HTTP routes' checks (FastAPI's TestClient, a recording backend) and the replicas' work on a
real pipeline with the sleepy stand-in editor. tests/test_serve_ray.py serves it all on Ray."""

from __future__ import annotations

import json
import pickle

import pytest

from imageedit_r1.serve.config import load_serve_config
from imageedit_r1.serve.errors import APIError, error_for
from imageedit_r1.serve.front_door import KEYS_ENV, key_digest, read_api_keys
from imageedit_r1.serve.sizing import deployment_options
from tests.serve_fixtures import KEY, SLEEPY_EDITOR, decode, png_bytes

FLUX = {"editor": {"name": "flux-kontext"}}  # local agents (transformers) and a local editor: the defaults
HOSTED = {"editor": {"name": "openai-image"}, "decomposer": {"backend": "openai", "model": "gpt-4o"}}


# ----------------------------------------------------------------------------- config and sizes


def test_a_pipeline_config_file_is_served_as_one_pipeline_and_overrides_reach_it():
    config = load_serve_config("examples/configs/flux_kontext.yaml",
                               ["pipelines.imageedit-r1.seed=3", "editor.max_queued_requests=4"])
    assert list(config.pipelines) == ["imageedit-r1"] and config.default_model == "imageedit-r1"
    assert config.pipelines["imageedit-r1"].seed == 3 and config.editor.max_queued_requests == 4


@pytest.mark.parametrize("data, message", [
    ({"pipelines": {"a": {"edtor": {}}}}, "did you mean 'pipelines.a.editor'"),
    ({"pipelines": {"a": {}}, "editr": {}}, "did you mean 'editor'"),
    ({"pipelines": {}}, "serves no pipeline"),
    ({"pipelines": {"a b": {}}}, "pipeline name 'a b'"),
    ({"pipelines": {"a": {"executor": "ray"}}}, "leave executor at 'local'"),
    ({"pipelines": {"a": {}}, "queue_full_status": 500}, "queue_full_status must be one of"),
])
def test_a_wrong_service_config_is_one_line_saying_what_to_fix(data, message):
    with pytest.raises(ValueError, match=message):
        load_serve_config(data=data)


def test_editors_get_one_gpu_each_from_what_the_planners_leave_and_hosted_ones_none():
    config = load_serve_config(data={"pipelines": {"flux": FLUX, "hosted": HOSTED}})
    options = deployment_options(config, cluster_gpus=8)
    planner, hosted_planner = options["planners"]["flux"], options["planners"]["hosted"]
    assert planner["ray_actor_options"]["num_gpus"] == 1.0  # the local agents' VLM
    assert hosted_planner["ray_actor_options"]["num_gpus"] == 0.0  # agents behind an API
    assert planner["max_ongoing_requests"] == 2 * config.planner.max_batch_size
    editor, hosted = options["editors"]["flux"], options["editors"]["hosted"]
    # One edit at a time on the GPU, the next request waiting in the replica.
    assert editor["ray_actor_options"]["num_gpus"] == 1.0 and editor["max_ongoing_requests"] == 2
    assert editor["init_args"] == (1,) and hosted["init_args"] == (8,)
    assert editor["autoscaling_config"]["max_replicas"] == 7  # 8 GPUs, one to the planner
    assert editor["autoscaling_config"]["initial_replicas"] == 7 and editor["autoscaling_config"]["min_replicas"] == 1
    assert hosted["ray_actor_options"]["num_gpus"] == 0.0 and hosted["max_ongoing_requests"] == 9
    assert editor["max_queued_requests"] == 16
    assert editor["backpressure_config"] == {"status_code": 429, "retry_after_s": 2.0}


def test_two_local_editors_share_the_gpus_at_start_and_a_fixed_count_is_kept():
    config = load_serve_config(data={"pipelines": {"a": FLUX, "b": FLUX}, "planner": {"num_gpus": 0}})
    scaling = [deployment_options(config, 8)["editors"][name]["autoscaling_config"] for name in ("a", "b")]
    assert [(s["initial_replicas"], s["max_replicas"]) for s in scaling] == [(4, 8), (4, 8)]
    fixed = load_serve_config(data={"pipelines": {"a": FLUX}, "editor": {"replicas": 2, "gpus_per_replica": 0.5}})
    editor = deployment_options(fixed, 8)["editors"]["a"]
    assert editor["num_replicas"] == 2 and "autoscaling_config" not in editor
    assert editor["ray_actor_options"]["num_gpus"] == 0.5


def test_deployments_that_cannot_all_start_on_a_fixed_machine_say_what_to_change():
    from imageedit_r1.serve.sizing import gpu_shortfall

    paper = load_serve_config("examples/configs/flux_kontext.yaml")  # local agents and a local editor
    message = gpu_shortfall(deployment_options(paper, 1), 1)
    assert "asks for 2 GPU(s) at start" in message and "planner.num_gpus=0.5 editor.gpus_per_replica=0.5" in message
    shared = load_serve_config("examples/configs/flux_kontext.yaml",
                               ["planner.num_gpus=0.5", "editor.gpus_per_replica=0.5"])
    assert gpu_shortfall(deployment_options(shared, 1), 1) is None
    assert gpu_shortfall(deployment_options(paper, 8), 8) is None


# ----------------------------------------------------------------------------- keys, seeds, errors


def test_api_keys_come_from_a_file_or_the_environment_and_a_short_one_is_refused_unshown(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# the team's keys\n{KEY}\n\n{KEY}-2\n")
    assert read_api_keys(keys) == [KEY, f"{KEY}-2"]
    assert read_api_keys(None, {KEYS_ENV: f"{KEY}, {KEY}-3"}) == [KEY, f"{KEY}-3"]
    assert read_api_keys(None, {}) == []
    with pytest.raises(ValueError, match="API key 1 has 5 characters") as caught:
        read_api_keys(None, {KEYS_ENV: "short"})
    assert "short" not in str(caught.value)


def test_a_local_ray_instance_inherits_the_keys_digests_and_never_the_keys(monkeypatch):
    import os

    from imageedit_r1.scale import cluster
    from imageedit_r1.serve.front_door import DOOR_ENV
    from imageedit_r1.serve.server import running

    inherited = {}

    def connect(_config):  # where ray.init starts the instance, whose processes copy this environment
        inherited.update(os.environ)
        raise RuntimeError("no Ray in this test")

    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.setenv(KEYS_ENV, KEY)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = load_serve_config(data={"pipelines": {"p": FLUX}})
    with pytest.raises(RuntimeError, match="no Ray"), running(config, host="127.0.0.1", port=1,
                                                              key_digests=(key_digest(KEY),)):
        pass
    assert KEYS_ENV not in inherited and KEY not in json.dumps(inherited)
    assert json.loads(inherited[DOOR_ENV])["key_digests"] == [key_digest(KEY)]
    assert os.environ[KEYS_ENV] == KEY and DOOR_ENV not in os.environ  # this process's environment as it was


def test_n_images_get_distinct_seeds_spaced_by_the_plans_steps():
    from imageedit_r1.serve.api import distinct_seeds

    assert distinct_seeds(7, 3, 1) == [7, 8, 9]
    assert distinct_seeds(7, 3, 2) == [7, 9, 11]  # multi-turn: 7, 8 / 9, 10 / 11, 12 never overlap
    drawn = distinct_seeds(None, 4, 1)
    assert len(set(drawn)) == 4 and drawn == list(range(drawn[0], drawn[0] + 4))


def test_pipeline_failures_become_openais_error_shapes():
    from imageedit_r1.agents.editors.base import EditRefusedError
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.core import AgentUnavailableError
    from imageedit_r1.pipeline.plan import PlanError
    from imageedit_r1.pipeline.trace import EditFailed

    refusal = error_for(EditRefusedError("blocked by the provider", reason="moderation_blocked"), "editing")
    assert (refusal.status, refusal.code) == (400, "content_policy_violation")
    assert "(moderation_blocked)" in refusal.message
    failed = EditFailed("editing failed", {"status": "refused", "refusal": {"reason": "IMAGE_SAFETY", "message": "no"}})
    assert "(IMAGE_SAFETY)" in error_for(failed, "editing").message
    assert error_for(PlanError("bad"), "editing").param == "plan"
    assert error_for(ImageLoadError("bad"), "planning").code == "invalid_image"
    assert error_for(AgentUnavailableError("no weights"), "planning").status == 503
    assert error_for(RuntimeError("boom"), "editing").body()["error"]["type"] == "server_error"
    queue = APIError(429, "full", type="rate_limit_error", retry_after=2.5)
    again = pickle.loads(pickle.dumps(queue))  # replicas hand errors to the ingress through Ray
    assert again.body() == queue.body() and again.headers() == {"Retry-After": "3"}


def test_error_messages_are_masked(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-secret-value-123")
    body = error_for(RuntimeError("the key sk-live-secret-value-123 was refused"), "editing").body()
    assert "sk-live-secret-value-123" not in json.dumps(body) and "[REDACTED]" in body["error"]["message"]


# ----------------------------------------------------------------------------- the routes


class Recorder:
    """A backend that records what reached it and answers with a fixed plan and images."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def plan(self, model, image, prompt):
        self.calls.append(("plan", model, prompt))
        return {"format": 1, "request": prompt, "mode": "single-turn", "sub_requests": [prompt],
                "instructions": [prompt]}, 3

    async def edit(self, model, image, plan, seeds, output_format, output_compression):
        self.calls.append(("edit", model, seeds, output_format, output_compression))
        return [{"b64_json": "AAAA", "trace": {"seeds": [seed]}} for seed in seeds]


@pytest.fixture
def api():
    from fastapi.testclient import TestClient

    from imageedit_r1.serve.api import ApiSettings, ServedModel, create_api
    from imageedit_r1.serve.front_door import UploadLimits

    backend = Recorder()
    settings = ApiSettings(models=(ServedModel("first", "flux-kontext", "single-turn", seed=5),
                                   ServedModel("second", "nano-banana", "multi-turn")),
                           limits=UploadLimits(max_bytes=200_000, max_pixels=50_000), max_n=3,
                           key_digests=(key_digest(KEY),))
    with TestClient(create_api(backend, settings), headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client, backend


def edit_form(**fields):
    return {"image": ("a.png", png_bytes((97, 61)), "image/png")}, {"prompt": "Make it red", **fields}


def test_an_edit_is_planned_once_and_edited_n_times_in_openais_shape(api):
    client, backend = api
    files, data = edit_form(n="2", output_format="webp", output_compression="80", user="u-1")
    answer = client.post("/v1/images/edits", files=files, data=data)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["b64_json"] for item in body["data"]] == ["AAAA", "AAAA"] and body["size"] == "97x61"
    assert body["imageedit_r1"]["model"] == "first" and body["imageedit_r1"]["planning"] == {"batch_size": 3}
    assert backend.calls == [("plan", "first", "Make it red"), ("edit", "first", [5, 6], "webp", 80)]


@pytest.mark.parametrize("fields, param", [
    ({"response_format": "url"}, "response_format"), ({"size": "1024x1024"}, "size"), ({"n": "4"}, "n"),
    ({"n": "two"}, "n"), ({"stream": "true"}, "stream"), ({"quality": "high"}, "quality"),
    ({"background": "transparent"}, "background"), ({"output_format": "gif"}, "output_format"),
    ({"output_compression": "50"}, "output_compression"), ({"style": "vivid"}, "style"), ({"prompt": ""}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"), ({"seed": "-1"}, "seed"),
])
def test_each_parameter_the_service_does_not_take_is_a_400_before_any_work(api, fields, param):
    client, backend = api
    files, data = edit_form(**fields)
    answer = client.post("/v1/images/edits", files=files, data=data)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param and answer.json()["error"]["type"] == "invalid_request_error"
    assert backend.calls == []


def test_images_over_the_limits_and_other_bodies_are_refused_before_any_work(api):
    client, backend = api
    big = client.post("/v1/images/edits", files={"image": ("a.png", png_bytes((300, 200)), "image/png")},
                      data={"prompt": "Make it red"})
    assert big.status_code == 400 and "megapixels" in big.json()["error"]["message"]
    as_json = client.post("/v1/images/edits", json={"prompt": "Make it red"})
    assert as_json.status_code == 400 and "multipart/form-data" in as_json.json()["error"]["message"]
    files, data = edit_form(model="gpt-image-2")
    unknown = client.post("/v1/images/edits", files=files, data=data)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert backend.calls == []


def test_the_front_door_answers_401_and_413_without_reading_the_body(api):
    client, backend = api
    files, data = edit_form()
    no_key = client.post("/v1/images/edits", files=files, data=data, headers={"Authorization": "Bearer nope-nope"})
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert no_key.headers["connection"] == "close"
    probe = client.get("/healthz", headers={"Authorization": ""})
    assert probe.status_code == 200 and probe.json() == {"status": "ok"}  # nothing of what is served
    assert client.get("/-/routes", headers={"Authorization": ""}).status_code == 401
    declared = client.post("/v1/images/edits", content=b"x" * 10, headers={"content-length": str(5 * 2**20),
                                                                            "content-type": "multipart/form-data"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"

    def stream():  # no declared length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    streamed = client.post("/v1/images/edits", content=stream(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    assert backend.calls == []


def test_wrong_keys_are_throttled_per_client_in_openais_shape_and_probes_stay_open(api):
    client, backend = api
    wrong = {"Authorization": "Bearer sk-wrong-key-0123456789"}
    answers = [client.get("/v1/models", headers=wrong) for _ in range(6)]
    assert [answer.status_code for answer in answers] == [401] * 5 + [429]
    throttled = answers[-1]
    assert throttled.json()["error"]["type"] == "rate_limit_error"
    assert throttled.json()["error"]["code"] == "too_many_failed_keys" and int(throttled.headers["retry-after"]) >= 1
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    assert backend.calls == []


def test_plans_round_trip_and_a_broken_plan_is_a_400_before_any_edit(api):
    client, backend = api
    files, _ = edit_form()
    plan = client.post("/v1/plans", files=files, data={"prompt": "Make it red", "model": "second"})
    assert plan.status_code == 200 and plan.json()["sub_requests"] == ["Make it red"]
    plan_json = plan.json()
    plan_json["sub_requests"] = ["Make it blue"]
    executed = client.post("/v1/plans/execute", files=files, data={"plan": json.dumps(plan_json), "seed": "11"})
    assert executed.status_code == 200 and executed.json()["imageedit_r1"]["plan"]["sub_requests"] == ["Make it blue"]
    assert backend.calls[-1] == ("edit", "first", [11], "png", None)
    from imageedit_r1.pipeline.plan import Plan

    dry_run = Plan(request="Make it red", mode="multi-turn", sub_requests=["Make it red", "Blur it"]).trace()
    executed = client.post("/v1/plans/execute", files=files, data={"plan": json.dumps(dry_run), "n": "2", "seed": "3"})
    assert executed.status_code == 200 and executed.json()["imageedit_r1"]["plan"]["instructions"] == [
        "Make it red", "Blur it"]
    assert backend.calls[-1] == ("edit", "first", [3, 5], "png", None)  # two steps apart: 3, 4 and 5, 6
    calls = len(backend.calls)
    deep = json.dumps({**plan_json, "record": {"note": "N"}}).replace('"N"', "[" * 5000 + "]" * 5000)
    for broken in ("{", json.dumps({"mode": "single-turn"}), json.dumps({**plan_json, "mode": "sideways"}), deep):
        answer = client.post("/v1/plans/execute", files=files, data={"plan": broken})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "plan", answer.text
    assert len(backend.calls) == calls
    huge = json.dumps({**plan_json, "record": {"note": "x" * (2 * 2**20)}})
    answer = client.post("/v1/plans/execute", files=files, data={"plan": huge})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large", answer.text
    assert len(backend.calls) == calls


# ----------------------------------------------------------------------------- the replicas' work


@pytest.fixture
def sleepy(monkeypatch):
    from imageedit_r1.pipeline.core import ImageEditR1
    from imageedit_r1.testing import sleepy_editor

    monkeypatch.setenv(sleepy_editor.SECONDS_VARIABLE, "0")
    return ImageEditR1(config=load_serve_config(data={"pipelines": {"s": {
        "mode": "original", "editor": {"name": SLEEPY_EDITOR}}}}).pipelines["s"])


def test_one_bad_pair_in_a_planned_batch_fails_alone(sleepy):
    from imageedit_r1.serve.work import plan_outcomes

    outcomes = plan_outcomes(sleepy, [png_bytes(), b"not an image", png_bytes()], ["Make it red", "Make it red", " "])
    assert outcomes[0]["request"] == "Make it red" and outcomes[0]["mode"] == "original"
    assert isinstance(outcomes[1], APIError) and outcomes[1].code == "invalid_image"
    assert isinstance(outcomes[2], APIError) and outcomes[2].status == 400


def test_a_gathered_batch_is_planned_in_one_plan_batch_call(sleepy, monkeypatch):
    from imageedit_r1.serve.work import plan_outcomes

    calls = []
    real = sleepy.plan_batch
    monkeypatch.setattr(sleepy, "plan", lambda *a, **k: pytest.fail("planned one request at a time"))
    monkeypatch.setattr(sleepy, "plan_batch", lambda images, requests: calls.append(len(requests)) or real(images, requests))
    outcomes = plan_outcomes(sleepy, [png_bytes()] * 3, ["Make it red", "Make it blue", "Make it green"])
    assert calls == [3] and [outcome["request"] for outcome in outcomes] == ["Make it red", "Make it blue", "Make it green"]


def test_agents_that_cannot_start_fail_every_request_of_the_batch_with_why(sleepy, monkeypatch):
    from imageedit_r1.pipeline.core import AgentUnavailableError
    from imageedit_r1.serve.work import plan_outcomes

    def unavailable(images, requests):
        raise AgentUnavailableError("the decomposition agent cannot start: no module named 'vllm'")

    monkeypatch.setattr(sleepy, "plan_batch", unavailable)
    outcomes = plan_outcomes(sleepy, [png_bytes()] * 2, ["Make it red", "Make it blue"])
    assert all(isinstance(outcome, APIError) and outcome.status == 503 for outcome in outcomes), outcomes


def test_an_edit_comes_back_encoded_as_asked_with_its_trace_summary(sleepy):
    from imageedit_r1.serve.work import edit_image, plan_outcomes

    plan = plan_outcomes(sleepy, [png_bytes()], ["Make it red"])[0]
    result = edit_image(sleepy, png_bytes(), plan, seed=4, output_format="jpeg", output_compression=70,
                        worker={"replica": "r1", "pid": 1})
    image = decode(result["b64_json"])
    assert image.format == "JPEG" and image.size == (97, 61)
    assert result["trace"]["seeds"] == [4] and result["trace"]["worker"]["replica"] == "r1"
    assert result["trace"]["plan"]["changed"] is False and "raw_outputs" not in result["trace"]
    refused = dict(plan, sub_requests=["Make it red [refuse]"], mode="single-turn")
    with pytest.raises(APIError) as caught:
        edit_image(sleepy, png_bytes(), refused, seed=4)
    assert caught.value.code == "content_policy_violation"


# ----------------------------------------------------------------------------- the command line and deployment files


def test_the_command_line_refuses_before_starting_anything(tmp_path, capsys):
    from imageedit_r1.serve.__main__ import main

    def refusal(argv) -> str:
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        return capsys.readouterr().err

    assert "give --config CONFIG, or --demo" in refusal([])
    assert "give --config CONFIG, or --demo" in refusal(["--demo", "--config", "x.yaml"])
    assert "needs API keys" in refusal(["--demo", "--host", "0.0.0.0"])
    short = tmp_path / "keys.txt"
    short.write_text("tiny\n")
    assert "API key 1 has 4 characters" in refusal(["--demo", "--api-keys-file", str(short)])
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_sigterm_while_the_demo_builds_its_models_stops_and_deletes_them(monkeypatch, capsys):
    import os
    import signal

    from imageedit_r1.serve import __main__ as cli
    from imageedit_r1.serve import server

    built = []

    def demo_config(work, _overrides):  # SIGTERM arrives while the tiny models are being written
        (work / "tiny-model").mkdir()
        built.append(work)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(server, "demo_config", demo_config)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["--demo"]) == 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert built and not built[0].exists()
    assert "stopped before the service was ready" in capsys.readouterr().err


def test_the_application_builder_refuses_to_build_without_keys_unless_told(monkeypatch):
    pytest.importorskip("ray.serve")
    from imageedit_r1.serve.deployments import app_builder

    monkeypatch.delenv(KEYS_ENV, raising=False)
    with pytest.raises(ValueError, match="no API keys: set IMAGEEDIT_R1_API_KEYS on every node"):
        app_builder({"config": "examples/serve.yaml"})


def test_the_rayservice_and_the_docker_stage_start_this_service_with_keys_and_the_proxy_door():
    from pathlib import Path

    import yaml

    from imageedit_r1.serve.__main__ import build_parser
    from imageedit_r1.serve.front_door import DOOR_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV

    root = Path(__file__).resolve().parents[1]
    service = yaml.safe_load((root / "recipes/k8s/rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    application = serve_config["applications"][0]
    assert application["import_path"] == "imageedit_r1.serve.deployments:app_builder"
    config_path = application["args"]["config"].replace("/workspace/imageedit-r1/", "")
    config = load_serve_config(root / config_path, application["args"]["overrides"])
    assert config.pipelines["imageedit-r1"].decomposer.model == "/data/models/decomposer"
    assert config.editor.max_replicas == 8
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    for pod in pods:
        container = pod["spec"]["containers"][0]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env[PROXY_CALLBACK_ENV] == PROXY_CALLBACK and json.loads(env[DOOR_ENV])["upload_bytes"] == config.limits.max_bytes
        assert {"secretRef": {"name": "imageedit-r1-serve-keys"}} in container["envFrom"]  # not optional
    stage = (root / "Dockerfile").read_text().split(" AS serve\n", 1)[1].split("\nFROM ", 1)[0]
    entry = json.loads(stage.split("ENTRYPOINT ", 1)[1].splitlines()[0])
    cmd = json.loads(stage.split("\nCMD ", 1)[1].splitlines()[0])
    assert entry[:3] == ["python", "-m", "imageedit_r1.serve"] and "EXPOSE 8000" in stage
    parsed = build_parser().parse_args(entry[3:] + cmd)
    assert parsed.port == 8000 and (root / parsed.config).is_file()


def test_an_editor_request_goes_to_the_least_loaded_replica_with_room_and_a_full_deployment_backs_off():
    import asyncio
    import types

    pytest.importorskip("ray.serve")
    from imageedit_r1.serve.routing import LeastLoaded

    replicas = [types.SimpleNamespace(replica_id=name, max_ongoing_requests=2) for name in ("a", "b", "c", "d")]
    router = object.__new__(LeastLoaded)  # the policy alone: Serve's own state is what it reads
    router._replica_queue_len_cache = {"a": 2, "b": 1, "c": None, "d": 2}
    pending = types.SimpleNamespace(routing_context=types.SimpleNamespace(should_backoff=False))
    groups = asyncio.run(router.choose_replicas(replicas, pending))
    assert [[replica.replica_id for replica in group] for group in groups] == [["b", "c"]]  # Serve picks the lower
    assert pending.routing_context.should_backoff is True  # else Serve asks again at once, in a loop
    router._replica_queue_len_cache = {"a": 2, "b": 2, "c": 2, "d": 2}
    full = asyncio.run(router.choose_replicas(replicas, pending))
    assert len(full) == 1 and len(full[0]) == 2  # probed two at a time, as Serve's default does
