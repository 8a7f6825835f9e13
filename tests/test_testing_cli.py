"""``python -m imageedit_r1.testing``: tiny models into a folder, a fake API server, a ready config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # fake servers and builds as real processes

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_server(processes, *args: str) -> tuple[subprocess.Popen, str]:
    proc = processes.start([sys.executable, "-m", "imageedit_r1.testing", "serve", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    line = proc.stdout.readline()
    assert line.startswith("fake "), proc.stderr.read() if proc.poll() is not None else line
    return proc, line


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_serve_answers_the_real_openai_client_with_the_scripted_replies_in_order(tmp_path, processes):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["first answer", {"sub_requests": ["Recolor the coat"]}]))
    port = free_port()
    proc, line = start_server(processes, "--api", "openai", "--port", str(port), "--replies", str(replies), "--model", "m1")
    try:
        assert f"http://127.0.0.1:{port}/v1" in line
        import openai

        client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        texts = [client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
                 .choices[0].message.content for _ in range(3)]
        assert texts == ["first answer", '{"sub_requests": ["Recolor the coat"]}',
                         '{"sub_requests": ["Recolor the coat"]}']  # the last repeats
    finally:
        assert "stopped after 3 request(s)" in stop(proc)


def test_serve_answers_the_real_gemini_client(tmp_path, processes):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["hello from the fake"]))
    port = free_port()
    proc, _ = start_server(processes, "--api", "gemini", "--port", str(port), "--replies", str(replies))
    try:
        from google import genai
        from google.genai import types

        client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=f"http://127.0.0.1:{port}"))
        reply = client.models.generate_content(model="gemini-fake", contents="hi")
        assert reply.text == "hello from the fake"
    finally:
        stop(proc)


def test_serve_refuses_a_bad_replies_file_and_a_busy_port(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    done = subprocess.run([sys.executable, "-m", "imageedit_r1.testing", "serve", "--replies", str(bad)],
                          capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"error: {bad}: not JSON")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "imageedit_r1.testing", "serve", "--port", str(port)],
                              capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_build_writes_only_inside_its_folder_and_config_runs_the_pipeline_offline(tmp_path, processes):
    parent = tmp_path / "parent"
    parent.mkdir()
    models = parent / "models"
    done = subprocess.run([sys.executable, "-m", "imageedit_r1.testing", "build", "--out", str(models),
                           "--models", "flux-kontext,qwen-image-edit"], capture_output=True, text=True, env=env(),
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["models"]  # no sibling folder left behind
    assert sorted(p.name for p in models.iterdir()) == ["tiny-flux-kontext", "tiny-qwen-image-edit"]
    assert (models / "tiny-qwen-image-edit" / "text_encoder").is_dir()

    port = free_port()
    config = subprocess.run([sys.executable, "-m", "imageedit_r1.testing", "config", "--models", str(models),
                             "--port", str(port)], capture_output=True, text=True, env=env(), timeout=60)
    assert config.returncode == 0, config.stderr
    (tmp_path / "offline.yaml").write_text(config.stdout)
    Image.new("RGB", (48, 32), (200, 30, 30)).save(tmp_path / "in.png")
    proc, _ = start_server(processes, "--port", str(port))
    try:
        run = subprocess.run([sys.executable, "-m", "imageedit_r1.pipeline", "--config", str(tmp_path / "offline.yaml"),
                              "--image", str(tmp_path / "in.png"), "--request", "Change the coat to scarlet",
                              "--out", str(tmp_path / "out.png")], capture_output=True, text=True, env=env(),
                             timeout=600)
    finally:
        stop(proc)
    assert run.returncode == 0, run.stderr
    assert "1. Recolor the coat to scarlet" in run.stdout
    trace = json.loads((tmp_path / "out.trace.json").read_text())
    assert trace["status"] == "ok" and trace["decomposition"]["actions"] == ["Recoloring"]
    assert Image.open(tmp_path / "out.png").size == (48, 32)


def test_serve_by_default_answers_each_agent_by_its_prompt_so_runs_repeat_and_judges_score(tmp_path, processes):
    """Without --replies the server reads the prompt: a second pipeline run, a verifier, an eval judge
    and a teacher each get an answer of their own kind, which the project's own parsers read."""
    from imageedit_r1.agents.judge import judge_prompt, parse_judgment
    from imageedit_r1.agents.sequencer import parse_sub_requests
    from imageedit_r1.agents.verifier import (
        parse_checklist_verdict,
        parse_table2_verdict,
        verification_prompt,
    )
    from imageedit_r1.decomposition import parse_strict
    from imageedit_r1.prompts import render_prompt

    port = free_port()
    proc, line = start_server(processes, "--port", str(port))
    try:
        import openai

        client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)

        def ask(prompt: str) -> str:
            return client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": prompt}]
                                                  ).choices[0].message.content

        decompose = render_prompt("decompose", content="Change the coat to red")
        sequence = render_prompt("sequence", request="Change the coat to red", actions='["Recoloring"]',
                                 subjects='["coat"]', goals='["red"]', max_steps=8, as_object=True)
        for _ in range(2):  # a second run gets the same answers as the first
            assert parse_strict(ask(decompose)).actions == ["Recoloring"]
            assert parse_sub_requests(ask(sequence)) == ["Recolor the coat to scarlet"]
        assert parse_judgment(ask(judge_prompt("Change the coat to red"))).total >= 8
        plan = ["Recolor the coat to scarlet", "Brighten the sky"]
        verdict = parse_table2_verdict(ask(verification_prompt("table2", "Change the coat to red", plan)), plan)
        assert verdict.score >= 8 and verdict.unmet == []
        verdict = parse_checklist_verdict(ask(verification_prompt("checklist", "Change the coat to red", plan)), plan)
        assert verdict.score == 10 and verdict.unmet == []
        label = json.loads(ask(render_prompt("teacher", request="Change the coat to red", actions=[("Recoloring", "")])))
        assert label["actions"] == ["Recoloring"] and label["subjects"] and label["goals"]
    finally:
        stop(proc)
