"""Teacher labelling with the real openai / google-genai clients against fake servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from imageedit_r1.costs import Price, price_for, priced_as
from imageedit_r1.data import ManifestLoader
from imageedit_r1.data.__main__ import main
from imageedit_r1.data.labels import LabelIndex
from imageedit_r1.data.teacher import InvalidLabel, LabelConfig, TeacherLabeller, validate_label
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.endpoints import RetryConfig, TeacherConfig, build_endpoint
from imageedit_r1.store import read_jsonl
from imageedit_r1.testing.fake_servers import (
    ScriptedReply,
    fake_gemini_server,
    fake_openai_server,
    gemini_text,
    openai_text,
)
from tests.data_fixtures import image_bytes

ROOT = Path(__file__).resolve().parents[1]

GOOD = {"rationale": "a recolor", "actions": ["recolor"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]}


def _manifest(tmp_path, requests: list[str]):
    lines = []
    for i, request in enumerate(requests):
        (tmp_path / f"{i}.png").write_bytes(image_bytes("rgb", seed=i))
        lines.append(json.dumps({"id": f"r{i}", "image": f"{i}.png", "request": request}))
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _request_of(prompt_text: str) -> str:
    return re.search(r"^Edit request: (.*)$", prompt_text, re.MULTILINE).group(1)


def _teacher_reply(request_json) -> str | ScriptedReply:
    request = _request_of(openai_text(request_json))
    assert request_json["response_format"]["type"] == "json_schema"  # structured output is asked for
    if "GARBAGE" in request:
        return '{"actions": ["Recoloring"], "subjects": '  # truncated JSON, every time
    if "REFUSE" in request:
        return ScriptedReply(refusal="I can't help with that.")
    if "LEVITATE" in request:
        return json.dumps({**GOOD, "actions": ["Levitate", "brighten"]})
    return json.dumps(GOOD)


class _FaultsByRequest:
    """HTTP faults decided per edit request and attempt: FLAKY sees 429, 500, malformed, then an answer."""

    def __init__(self, plans: dict[str, list[str | None]]) -> None:
        self.plans, self.seen, self.lock = plans, Counter(), threading.Lock()

    def __call__(self, recorded):
        request = _request_of(openai_text(recorded.json))
        for marker, plan in self.plans.items():
            if marker in request:
                with self.lock:
                    attempt = self.seen[marker]
                    self.seen[marker] += 1
                return plan[attempt] if attempt < len(plan) else plan[-1]
        return None


def _config(server, **overrides) -> LabelConfig:
    teacher = TeacherConfig(
        backend="openai", model="gpt-4o-mini", base_url=server.url + "/v1", retry=RetryConfig(base_delay=0.01, max_delay=0.05),
        timeout=10.0,
    )
    return LabelConfig(teacher=teacher, concurrency=4, **overrides)


def test_labelling_survives_faults_reports_failures_and_never_pays_twice(tmp_path):
    requests = [f"make the coat {i} red" for i in range(8)] + [
        "FLAKY recolor the coat",
        "GARBAGE recolor",
        "REFUSE this",
        "LEVITATE the cat",
    ]
    manifest = _manifest(tmp_path, requests)
    faults = _FaultsByRequest({"FLAKY": ["429", "500", "malformed", None]})
    labels = tmp_path / "labels.jsonl"
    with fake_openai_server(_teacher_reply, faults=faults) as server:
        labeller = TeacherLabeller(build_endpoint(_config(server).teacher), labels, _config(server))
        summary = labeller.run(ManifestLoader(manifest), progress=False)
        first_run_requests = len(server.requests)

        # Every request answered once, FLAKY four times (bounded), GARBAGE re-asked once with the reason.
        assert first_run_requests == 9 + 4 + 2 + 1
        assert summary.total == 12 and summary.labelled == 10 and summary.cached == 0
        kinds = {item_id: kind for item_id, kind, _ in summary.failures}
        assert kinds == {"r9": "invalid", "r10": "refused"}
        assert summary.unknown_actions == Counter({"Levitate": 1})
        garbage_retry = [r for r in server.requests if "GARBAGE" in openai_text(r.json)][-1].json["messages"]
        assert [m["role"] for m in garbage_retry] == ["user", "assistant", "user"]
        assert "not usable: not JSON" in garbage_retry[-1]["content"]

        records = {r["id"]: r for r in read_jsonl(labels)}
        assert json.loads(records["r0"]["ground_truth"]) == {
            "actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]
        }
        assert Decomposition.from_dict(json.loads(records["r11"]["ground_truth"])).actions == ["Levitate", "Tone Adjustment"]
        assert records["r11"]["unknown_actions"] == ["Levitate"] and records["r11"]["teacher_actions"] == ["Levitate", "brighten"]
        assert records["r9"]["status"] == "failed" and records["r9"]["raw"].startswith('{"actions"')

        # Tokens as the server reported them, priced from the table (gpt-4o-mini: $0.15 / $0.60 per 1M).
        assert summary.prompt_tokens > 0 and summary.completion_tokens > 0
        assert summary.cost_usd == pytest.approx((summary.prompt_tokens * 0.15 + summary.completion_tokens * 0.60) / 1e6)
        text = summary.summary()
        assert "failures: invalid 1, refused 1" in text and "r9 [invalid]" in text and "Levitate x1" in text
        assert "priced as gpt-4o-mini" in text

        # A second run over the same data sends nothing and still reports the two failures.
        again = TeacherLabeller(build_endpoint(_config(server).teacher), labels, _config(server))
        summary2 = again.run(ManifestLoader(manifest), progress=False)
        assert len(server.requests) == first_run_requests
        assert summary2.cached == 10 and len(summary2.failures) == 2 and summary2.calls == 0

        # --retry-failed asks again for exactly the invalid and refused samples.
        retry = TeacherLabeller(build_endpoint(_config(server).teacher), labels, _config(server, retry_failed=True))
        retry.run(ManifestLoader(manifest), progress=False)
        assert len(server.requests) == first_run_requests + 2 + 1

    index = LabelIndex.from_files([labels])
    assert len(index) == 10 and index.models == {"gpt-4o-mini"}


def test_service_failures_are_bounded_and_retried_on_the_next_run(tmp_path):
    manifest = _manifest(tmp_path, ["DEAD recolor", "make the sky blue"])
    labels = tmp_path / "labels.jsonl"
    with fake_openai_server(_teacher_reply, faults=_FaultsByRequest({"DEAD": ["500"]})) as server:
        config = _config(server)
        summary = TeacherLabeller(build_endpoint(config.teacher), labels, config).run(
            ManifestLoader(manifest), progress=False
        )
        dead = [r for r in server.requests if "DEAD" in openai_text(r.json)]
        assert len(dead) == config.teacher.retry.attempts == 4  # bounded retries, then a recorded failure
        assert [(i, k) for i, k, _ in summary.failures] == [("r0", "retries_exhausted")]
        server.set_faults(None)  # the service recovers
        summary = TeacherLabeller(build_endpoint(config.teacher), labels, config).run(
            ManifestLoader(manifest), progress=False
        )
        assert summary.labelled == 1 and summary.cached == 1 and not summary.failures


def test_a_run_killed_halfway_keeps_what_it_paid_for(tmp_path):
    manifest = _manifest(tmp_path, [f"make the coat {i} red" for i in range(6)])
    labels = tmp_path / "labels.jsonl"

    def dies_after_three():
        for number, sample in enumerate(ManifestLoader(manifest)):
            if number == 3:
                raise KeyboardInterrupt
            yield sample

    with fake_openai_server(_teacher_reply) as server:
        config = _config(server)
        with pytest.raises(KeyboardInterrupt):
            TeacherLabeller(build_endpoint(config.teacher), labels, config).run(dies_after_three(), progress=False)
        # Calls already sent were waited for and recorded; queued ones were dropped, never sent.
        sent = len(server.requests)
        assert 1 <= sent <= 3 and len(list(read_jsonl(labels))) == sent
        summary = TeacherLabeller(build_endpoint(config.teacher), labels, config).run(
            ManifestLoader(manifest), progress=False
        )
        assert summary.cached == sent and summary.labelled == 6 - sent and len(server.requests) == 6


@pytest.mark.slow
def test_two_label_runs_on_one_labels_file_at_once_ask_once_per_sample(tmp_path, processes):
    manifest = _manifest(tmp_path, [f"make the coat {i} red" for i in range(6)])
    labels = tmp_path / "labels.jsonl"
    with fake_openai_server(_teacher_reply, latency=0.5) as server:
        command = [sys.executable, "-m", "imageedit_r1.data", "-q", "label", "--source", f"manifest:{manifest}",
                   "--out", str(labels), f"teacher.base_url={server.url}/v1", "teacher.base_delay=0.01",
                   "concurrency=2"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs = [processes.start(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert len(server.requests) == 6  # one teacher call per sample, not one per sample and run
    waited = [(out, err) for out, err in outputs if "is in use by another run (pid" in err]
    assert len(waited) == 1, outputs  # the second run said so, waited, then found every label cached
    assert f"{labels} is in use by another run (pid" in waited[0][1]
    assert "samples: 6 = 6 from cache + 0 labelled now + 0 failed" in waited[0][0]
    assert len({r["key"] for r in read_jsonl(labels)}) == 6


def test_concurrency_is_bounded_and_used(tmp_path):
    manifest = _manifest(tmp_path, [f"make the coat {i} red" for i in range(8)])
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def slow_reply(request_json):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return json.dumps(GOOD)

    with fake_openai_server(slow_reply) as server:
        config = _config(server)
        config.concurrency = 3
        summary = TeacherLabeller(build_endpoint(config.teacher), tmp_path / "l.jsonl", config).run(
            ManifestLoader(manifest), progress=False
        )
    assert summary.labelled == 8 and state["peak"] == 3


def test_gemini_teacher_through_google_genai(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    manifest = _manifest(tmp_path, ["make the coat red"])
    with fake_gemini_server(lambda req: json.dumps(GOOD)) as server:
        teacher = TeacherConfig(backend="gemini", model="gemini-2.5-flash", base_url=server.url,
                                retry=RetryConfig(base_delay=0.01))
        config = LabelConfig(teacher=teacher, concurrency=1)
        summary = TeacherLabeller(build_endpoint(teacher), tmp_path / "l.jsonl", config).run(
            ManifestLoader(manifest), progress=False
        )
        assert summary.labelled == 1 and summary.price_model == "gemini-2.5-flash"
        assert "make the coat red" in gemini_text(server.requests[0].json)


def test_cli_label_prints_tokens_and_cost(tmp_path, capsys):
    manifest = _manifest(tmp_path, ["make the coat red", "make the sky blue"])
    with fake_openai_server(_teacher_reply) as server:
        argv = ["-q", "label", "--source", f"manifest:{manifest}", "--out", str(tmp_path / "l.jsonl"),
                f"teacher.base_url={server.url}/v1", "teacher.model=my-vlm", "prices.my-vlm.input_per_mtok=1000000",
                "prices.my-vlm.output_per_mtok=0", "teacher.retry.base_delay=0.01"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        prompt_tokens = int(re.search(r"tokens: ([\d,]+) in", out).group(1).replace(",", ""))
        assert f"cost: ${prompt_tokens:.4f} (priced as my-vlm)" in out
        assert "samples: 2 = 0 from cache + 2 labelled now + 0 failed" in out
        assert main(argv) == 0
        assert "samples: 2 = 2 from cache" in capsys.readouterr().out and len(server.requests) == 2


def test_validate_label_rules():
    label = validate_label("```json\n" + json.dumps({**GOOD, "actions": ["recolor", "Recoloring", "get rid of the lamp"]}) + "\n```")
    assert label.decomposition.actions == ["Recoloring", "Removal"]
    for bad, reason in [
        ("nope", "not JSON"),
        ("[1]", "JSON object"),
        (json.dumps({**GOOD, "goals": []}), "'goals' is empty"),
        (json.dumps({**GOOD, "subjects": "coat"}), "array of strings"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "actions"}), "'actions' must be"),
        (json.dumps({**GOOD, "subjects": ["x" * 400]}), "longer than"),
        ('{"actions": ' + "[" * 5000, "not JSON"),  # a degenerate answer: once a RecursionError
    ]:
        with pytest.raises(InvalidLabel, match=reason):
            validate_label(bad)


def test_price_lookup_prefers_exact_then_the_longest_snapshot_prefix_then_none():
    prices = {"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6)}
    assert priced_as(prices, "gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert price_for(prices, "gpt-4o-mini-2024-07-18") is prices["gpt-4o-mini"]
    assert priced_as(prices, "gpt-4o-2024-08-06") == "gpt-4o" and priced_as(prices, "gpt-4o") == "gpt-4o"
    # Another model that shares a prefix is not a snapshot: unpriced rather than mispriced.
    assert priced_as(prices, "gpt-4o-realtime") is None and price_for(prices, "llava-local") is None
    assert priced_as(prices, None, "gpt-4o") == "gpt-4o"  # the first model with a price


def test_large_images_are_shrunk_before_sending(tmp_path):
    from PIL import Image

    from imageedit_r1.testing.fake_servers import openai_images

    Image.new("RGB", (800, 200), "blue").save(tmp_path / "big.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "big", "image": "big.png", "request": "make it red"}) + "\n")
    with fake_openai_server(_teacher_reply) as server:
        config = _config(server)
        config.teacher.image_max_pixels = 10_000
        TeacherLabeller(build_endpoint(config.teacher), tmp_path / "l.jsonl", config).run(
            ManifestLoader(manifest), progress=False
        )
        (sent,) = openai_images(server.requests[0].json)
    assert sent.size == (200, 50)
