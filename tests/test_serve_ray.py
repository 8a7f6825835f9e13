"""The service on Ray Serve, called as programs call it: the real ``openai`` SDK on loopback.

One Ray Serve application (one local Ray instance: 2 CPUs, 4 fake GPUs; replicas ask no CPU) is
shared by this module's tests. It serves two pipelines: ``imageedit-r1``, the offline demo's tiny
random-weight Qwen2.5-VL agents and FLUX.1-Kontext editor, and ``sleepy``, agents on a fake
OpenAI server and a stand-in editor that sleeps 0.5 s. Each editor has one replica (one fake GPU),
running one edit at a time with a queue of 4. Checks: an edit at the input's size, n=2 distinct
images, 401 without a key, 413 before a 30 MB body is read, 429 with Retry-After for some of 20
concurrent requests and an answer for every one, a changed plan executed as given, a refusal as
OpenAI's content-policy error, Serve's Prometheus metrics, and a replica SIGKILLed and restarted.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import urllib.request

import pytest

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.slow  # a Ray instance and six replica processes: about two minutes on two cores

from imageedit_r1.serve.config import load_serve_config  # noqa: E402
from imageedit_r1.testing import sleepy_editor  # noqa: E402
from tests.app_fixtures import free_port  # noqa: E402
from tests.serve_fixtures import (  # noqa: E402
    DIGESTS,
    KEY,
    decode,
    fake_agents,
    png_bytes,
    sleepy_pipeline,
    upload_until_answered,
)

THIRTY_MB = 30 * 2**20


@pytest.fixture(scope="module")
def service(tiny_qwen25vl, tiny_flux_kontext):
    from imageedit_r1.pipeline.demo import demo_config_dict
    from imageedit_r1.serve.server import running

    saved = os.environ.get(sleepy_editor.SECONDS_VARIABLE)
    os.environ[sleepy_editor.SECONDS_VARIABLE] = "0.5"  # local Ray workers inherit it
    port = free_port()
    try:
        with fake_agents() as agents:
            config = load_serve_config(data={
                "pipelines": {"imageedit-r1": demo_config_dict(str(tiny_qwen25vl), str(tiny_flux_kontext)),
                              "sleepy": sleepy_pipeline(f"{agents.url}/v1")},
                "planner": {"batch_wait_timeout_s": 0.2},
                "editor": {"replicas": 1, "max_queued_requests": 4, "health_check_period_s": 1.0},
                "retry_after_s": 3,
                "ray": {"num_cpus": 2, "num_gpus": 4},
            })
            with running(config, host="127.0.0.1", port=port, key_digests=DIGESTS) as url:
                yield {"url": url, "port": port}
    finally:
        if saved is None:
            os.environ.pop(sleepy_editor.SECONDS_VARIABLE, None)
        else:
            os.environ[sleepy_editor.SECONDS_VARIABLE] = saved


def client(service, key: str = KEY, timeout: float = 120.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service['url']}/v1", api_key=key, max_retries=0, timeout=timeout)


def post(service, path: str, files: dict, data: dict, key: str = KEY, timeout: float = 120.0) -> httpx.Response:
    return httpx.post(f"{service['url']}{path}", files=files, data=data, timeout=timeout,
                      headers={"Authorization": f"Bearer {key}"})


def test_the_sdk_gets_an_edit_of_the_input_size_and_two_different_images_for_n_2(service, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes((97, 61)))
    with path.open("rb") as image:
        response = client(service).images.edit(model="imageedit-r1", image=image, prompt="Change the color of her "
                                               "coat to scarlet", n=2)
    images = [decode(item.b64_json) for item in response.data]
    assert [image.size for image in images] == [(97, 61), (97, 61)]
    assert images[0].tobytes() != images[1].tobytes()
    extra = response.model_extra["imageedit_r1"]
    seeds = [trace["seeds"] for trace in extra["traces"]]
    assert len({tuple(s) for s in seeds}) == 2  # distinct seeds made the difference
    assert extra["model"] == "imageedit-r1" and extra["plan"]["sub_requests"]
    assert all(trace["status"] == "ok" and trace["output"]["width"] == 97 for trace in extra["traces"])
    # The tiny editor ran on a fake GPU of its own; the sub-requests it got are the plan's.
    assert [len(trace["worker"]["gpu"]) for trace in extra["traces"]] == [1, 1]
    assert extra["traces"][0]["instructions"] == extra["plan"]["instructions"]


def test_without_a_valid_key_the_sdk_raises_authentication_error_and_healthz_stays_open(service):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(service, key="sk-not-the-key-of-this-service").images.edit(
            model="sleepy", image=("a.png", png_bytes(), "image/png"), prompt="Make it red")
    assert caught.value.code == "invalid_api_key" and caught.value.type == "invalid_request_error"
    bare = httpx.get(f"{service['url']}/v1/models", timeout=30)
    assert bare.status_code == 401 and set(bare.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{service['url']}/healthz", timeout=30).json()["status"] == "ok"
    assert [model.id for model in client(service).models.list()] == ["imageedit-r1", "sleepy"]


def test_what_the_service_does_not_do_is_a_400_naming_the_parameter(service):
    sdk = client(service)
    image = ("a.png", png_bytes(), "image/png")
    cases = [({"response_format": "url"}, "response_format"), ({"size": "1024x1024"}, "size"),
             ({"mask": image}, "mask"), ({"image": [image, image]}, "image"),
             ({"image": ("a.png", b"not an image", "image/png")}, "image")]
    for change, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.images.edit(**{"model": "sleepy", "image": image, "prompt": "Make it red", **change})
        assert caught.value.param == param and caught.value.type == "invalid_request_error", change
    assert "b64_json" in str(_bad_request(sdk, image, response_format="url"))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.images.edit(model="gpt-image-2", image=image, prompt="Make it red")
    assert caught.value.code == "model_not_found"


def _bad_request(sdk, image, **change) -> openai.BadRequestError:
    try:
        sdk.images.edit(model="sleepy", image=image, prompt="Make it red", **change)
    except openai.BadRequestError as exc:
        return exc
    raise AssertionError("expected a 400")


def test_a_30_mb_body_gets_413_before_it_is_read_in_full(service):
    sent, answer = upload_until_answered(service["port"], "/v1/images/edits", THIRTY_MB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 2 * 2**20  # answered from the declared length while the client was still sending
    head, body = answer.split(b"\r\n\r\n", 1)
    assert json.loads(body)["error"]["code"] == "request_too_large"
    # Answered by the door in Serve's HTTP proxy, ahead of its routing: Serve tags every request it
    # routes with an X-Request-ID; this one was never routed, so no replica saw a byte of it.
    assert b"x-request-id" not in head.lower() and b"connection: close" in head.lower()
    # Without a declared length (chunked), the bytes are counted as they arrive: refused just past the
    # limit (25 MiB and the form's slack, 26.1 MiB), not after the whole 64 MiB.
    sent, answer = upload_until_answered(service["port"], "/v1/images/edits", 64 * 2**20, chunked=True, pause=0.001)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert 26 * 2**20 < sent < 40 * 2**20


def test_twenty_concurrent_requests_against_a_queue_of_four_all_get_an_answer_some_429(service):
    sdk = client(service, timeout=60)

    def one(index: int):
        started = time.monotonic()
        try:
            response = sdk.images.edit(model="sleepy", image=("a.png", png_bytes(seed=index), "image/png"),
                                       prompt=f"Make item {index} red")
            return 200, response.model_extra["imageedit_r1"]["planning"]["batch_size"], time.monotonic() - started
        except openai.RateLimitError as exc:
            return 429, exc.response.headers.get("retry-after"), time.monotonic() - started
        except openai.APIStatusError as exc:
            return exc.status_code, exc.message, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(one, range(20)))
    statuses = [status for status, _, _ in outcomes]
    assert len(outcomes) == 20 and set(statuses) <= {200, 429}, outcomes
    assert statuses.count(429) >= 10 and statuses.count(200) >= 3, statuses  # 1 editing, 1 waiting in the replica, 4 queued
    assert {detail for status, detail, _ in outcomes if status == 429} == {"3"}  # Retry-After: retry_after_s
    assert max(seconds for _, _, seconds in outcomes) < 30  # nothing hangs: 5 edits of 0.5 s, then answers
    assert max(detail for status, detail, _ in outcomes if status == 200) > 1  # planned together


def test_a_plan_changed_between_plans_and_execute_runs_as_given_and_the_trace_says_so(service):
    from imageedit_r1.testing.stand_ins import sub_requests_by_rule

    image = png_bytes()
    planned = post(service, "/v1/plans", {"image": ("a.png", image, "image/png")},
                   {"model": "sleepy", "prompt": "Change the color of her coat to scarlet"})
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    planned_by_rule = sub_requests_by_rule("Change the color of her coat to scarlet")  # the stand-in agents
    assert plan["format"] == 1 and plan["sub_requests"] == planned_by_rule
    plan["sub_requests"][0] = "Recolor the coat to emerald green"
    executed = post(service, "/v1/plans/execute", {"image": ("a.png", image, "image/png")},
                    {"model": "sleepy", "plan": json.dumps(plan), "seed": "7"})
    assert executed.status_code == 200, executed.text
    trace = executed.json()["imageedit_r1"]["traces"][0]
    assert trace["instructions"] == ["Recolor the coat to emerald green."] and trace["seeds"] == [7]
    assert trace["plan"]["changed"] is True and trace["plan"]["image_matches"] is True
    assert trace["plan"]["changes"] == [{"field": "sub_requests", "op": "edit", "index": 0,
                                         "before": planned_by_rule[0],
                                         "after": "Recolor the coat to emerald green"}]
    assert decode(executed.json()["data"][0]["b64_json"]).size == (97, 61)


def test_an_editor_refusal_is_openais_content_policy_error_with_the_reason(service):
    plan = {"request": "Make it red", "mode": "single-turn", "sub_requests": ["Make it red [refuse]"]}
    refused = post(service, "/v1/plans/execute", {"image": ("a.png", png_bytes(), "image/png")},
                   {"model": "sleepy", "plan": json.dumps(plan)})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "content_policy_violation" and "(declined)" in error["message"]


def test_ray_serves_prometheus_metrics_on_this_node(service):
    import ray

    port = next(node["MetricsExportPort"] for node in ray.nodes() if node.get("Alive"))
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline and "ray_serve_num_http_requests" not in text:
        time.sleep(2)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert "ray_serve_num_http_requests" in text and 'application="imageedit-r1"' in text


def test_an_editor_replica_killed_with_sigkill_is_restarted_and_later_requests_succeed(service):
    from ray import serve

    sdk = client(service, timeout=60)
    image = ("a.png", png_bytes(), "image/png")
    before = sdk.images.edit(model="sleepy", image=image, prompt="Make it red").model_extra["imageedit_r1"]
    victim = before["traces"][0]["worker"]["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline, after, failures = time.monotonic() + 120, None, []
    while time.monotonic() < deadline and after is None:
        try:
            after = sdk.images.edit(model="sleepy", image=image, prompt="Make it red").model_extra["imageedit_r1"]
        except openai.APIStatusError as exc:  # while it restarts: 503 in OpenAI's shape, never a hang
            assert exc.status_code == 503 and exc.code == "unavailable", exc
            failures.append(exc.status_code)
            time.sleep(1)
    assert after is not None, f"no edit succeeded within 120 s after the kill ({len(failures)} refusals)"
    assert after["traces"][0]["worker"]["pid"] != victim and after["traces"][0]["status"] == "ok"
    status = serve.status().applications["imageedit-r1"]
    assert status.status == "RUNNING" and status.deployments["editor-sleepy"].status == "HEALTHY"
