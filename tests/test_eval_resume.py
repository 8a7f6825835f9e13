"""The CLI run in a subprocess: SIGKILLed midway and restarted; API keys never written anywhere."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import judge_reply_json, make_benchmark

pytest.importorskip("openai")
pytest.importorskip("google.genai")
fakes = pytest.importorskip("imageedit_r1.testing.fake_servers", reason="needs the loopback fake API servers")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REQUEST_RE = re.compile(r'\*\*Edit Request:\*\* "(.*)"')


def write_config(tmp_path, benchmarks, judges, methods=("base",), concurrency=2):
    config = {
        "out_dir": str(tmp_path / "run"),
        "concurrency": concurrency,
        "benchmarks": [{"name": b.name, "source": "manifest", "manifest": b.manifest} for b in benchmarks],
        "methods": [{"name": name, "label": name, "group": "Tint", "kind": "callable",
                     "target": "tests.eval_fixtures:tint", "seed": index, "baseline": index == 0}
                    for index, name in enumerate(methods)],
        "judges": judges,
        "prices": {"gpt-judge": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def cli(config_path, *extra):
    return [sys.executable, "-m", "imageedit_r1.eval", "run", "--config", str(config_path), "--no-progress", *extra]


def env_with(**values):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **values)
    return env


def openai_judge(server, **extra):
    return {"name": "GPT", "backend": "openai", "model": "gpt-judge", "base_url": server.url + "/v1",
            "timeout": 5.0, "retry_base_delay": 0.01, **extra}


def test_killed_run_resumes_without_repeating_finished_items(tmp_path, processes):
    bench = make_benchmark(tmp_path, "A", 12)
    with fakes.fake_openai_server(lambda body: judge_reply_json(REQUEST_RE.search(fakes.openai_text(body)).group(1)),
                            latency=0.25) as server:
        config = write_config(tmp_path, [bench], [openai_judge(server)])
        results = tmp_path / "run" / "results.jsonl"
        process = processes.start(cli(config), cwd=ROOT, env=env_with(OPENAI_API_KEY="sk-test-resume-key"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if results.exists() and len(list(read_jsonl(results))) >= 4:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        finished = {r["request"] for r in read_jsonl(results) if r["status"] == "scored"}
        assert 4 <= len(finished) < 12
        seen_before = len(server.requests)

        again = subprocess.run(cli(config), cwd=ROOT, env=env_with(OPENAI_API_KEY="sk-test-resume-key"),
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        later = [REQUEST_RE.search(fakes.openai_text(r.json)).group(1) for r in server.requests[seen_before:]]

    assert not finished & set(later), "a finished item was asked again after the restart"
    records = list(read_jsonl(results))
    assert len(records) == 12 and len({r["sample_id"] for r in records}) == 12
    assert all(r["status"] == "scored" for r in records)
    edits = list(read_jsonl(tmp_path / "run" / "edits.jsonl"))
    assert len(edits) == 12 and len({e["sample_id"] for e in edits}) == 12
    assert "judgments:  cached" in again.stdout and "scored" in again.stdout


def test_api_keys_never_reach_files_or_logs(tmp_path):
    openai_key, gemini_key = "sk-test-SECRET-openai-4242", "AIza-test-SECRET-gemini-4242"
    bench = make_benchmark(tmp_path, "A", 3)

    def echo_key_in_error(body):
        # A provider error that quotes the key back, as some do for a bad key.
        return json.dumps({"fulfillment": 9, "quality": 0, "preservation": 0, "reasoning": openai_key})

    with fakes.fake_openai_server(echo_key_in_error) as openai_server, \
            fakes.fake_gemini_server(lambda body: judge_reply_json(REQUEST_RE.search(fakes.gemini_text(body)).group(1))) \
            as gemini_server:
        judges = [openai_judge(openai_server, api_key_env="MY_OPENAI_KEY"),
                  {"name": "Gemini", "backend": "gemini", "model": "gemini-judge", "base_url": gemini_server.url,
                   "timeout": 5.0, "retry_base_delay": 0.01}]
        config = write_config(tmp_path, [bench], judges)
        env = env_with(MY_OPENAI_KEY=openai_key, GEMINI_API_KEY=gemini_key)
        run = subprocess.run(cli(config), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        table = subprocess.run([sys.executable, "-m", "imageedit_r1.eval", "report", "--run-dir",
                                str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert table.returncode == 0, table.stderr[-3000:]
        # The keys did travel to the servers, so the test would notice a leak of the real values.
        assert openai_server.requests[0].headers["authorization"] == f"Bearer {openai_key}"
        assert gemini_server.requests[0].headers["x-goog-api-key"] == gemini_key

    texts = [run.stdout, run.stderr, table.stdout, table.stderr]
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    assert len(texts) > 8
    for text in texts:
        assert openai_key not in text and gemini_key not in text
    failed = [r for r in read_jsonl(tmp_path / "run" / "results.jsonl") if r["judge"] == "GPT"]
    assert all(r["status"] == "failed" and r["error_kind"] == "invalid_reply" for r in failed)
    assert "[REDACTED]" in failed[0]["raw"]


def test_two_runs_on_one_out_dir_at_once_edit_each_item_once(tmp_path, processes):
    bench = make_benchmark(tmp_path, "A", 3)
    config = write_config(tmp_path, [bench], [{"name": "GPT", "backend": "openai", "model": "gpt-judge",
                                               "base_url": "http://127.0.0.1:9/v1"}])
    settings = json.loads(config.read_text())
    settings["methods"][0]["target"] = "imageedit_r1.testing.sleepy_editor:edit"
    config.write_text(json.dumps(settings))
    calls = tmp_path / "editor-calls.jsonl"
    env = env_with(IMAGEEDIT_R1_SLEEPY_SECONDS="0.8", IMAGEEDIT_R1_SLEEPY_LOG=str(calls))
    runs = [processes.start(cli(config, "--stage", "edit"), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    started = [r for r in read_jsonl(calls) if r["event"] == "start"]
    assert len(started) == 3  # no edit redone: the second run read the cache after the first had finished
    waited = [(out, err) for out, err in outputs if "is in use by another run (pid" in err]
    assert len(waited) == 1, outputs
    assert "edits:      cached 3" in waited[0][0]


def test_every_key_the_run_reaches_is_masked_in_run_json_run_log_and_records(tmp_path):
    from PIL import ImageOps

    from imageedit_r1.testing.fake_image_servers import fake_openai_images_server

    hub_token, hub_access, vllm_key = "hf_test_SECRET_token_4242", "test-SECRET-access-4242", "vllm-test-SECRET-4242"
    bench = make_benchmark(tmp_path, "A", 2)
    with fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image)) as images:
        # A gated proxy in front of the image API: its token read from the environment by the config.
        options = {"base_url": images.url + "/v1", "retry": {"base_delay": 0.01},
                   "extra_params": {"user": "${oc.env:HUB_ACCESS}", "extra_headers": {"X-Hub-Token": "${oc.env:HF_TOKEN}"}}}
        config = tmp_path / "eval.yaml"
        config.write_text(json.dumps({
            "out_dir": str(tmp_path / "run"),
            "benchmarks": [{"name": bench.name, "source": "manifest", "manifest": bench.manifest}],
            "methods": [{"name": "gpt-image", "label": "Original", "group": "G", "kind": "original", "baseline": True,
                         "editor": "openai-image", "editor_options": options},
                        {"name": "served", "label": "Served", "group": "G", "kind": "callable",
                         "target": "tests.eval_fixtures:served_key_in_error"}],
            "judges": [{"name": "GPT", "backend": "openai", "model": "gpt-judge", "base_url": "http://127.0.0.1:9/v1"}],
        }))
        env = env_with(HF_TOKEN=hub_token, HUB_ACCESS=hub_access, VLLM_API_KEY=vllm_key, OPENAI_API_KEY="sk-test-images")
        run = subprocess.run(cli(config, "--stage", "edit"), cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        # The values did travel, so a leak of them would be seen.
        sent = images.requests[0]
        assert sent.headers["x-hub-token"] == hub_token and sent.multipart()["user"][0].text == hub_access

    files = {path.name: path.read_bytes().decode("utf-8", "replace") for path in (tmp_path / "run").rglob("*")
             if path.is_file()}
    assert {"run.json", "run.log", "edits.jsonl"} <= set(files)
    for text in [run.stdout, run.stderr, *files.values()]:
        assert hub_token not in text and hub_access not in text and vllm_key not in text
    assert "[REDACTED]" in files["run.json"] and "invalid API key [REDACTED]" in files["run.log"]
    failed = [r for r in read_jsonl(tmp_path / "run" / "edits.jsonl") if r["method"] == "served"]
    assert len(failed) == 2 and all(r["error"].endswith("invalid API key [REDACTED]") for r in failed)
