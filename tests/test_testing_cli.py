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
                              "--image", str(tmp_path / "in.png"), "--request",
                              "Remove the car and recolor the coat to scarlet", "--out", str(tmp_path / "out.png")],
                             capture_output=True, text=True, env=env(), timeout=600)
    finally:
        stop(proc)
    assert run.returncode == 0, run.stderr
    assert "1. Remove the car" in run.stdout and "2. Recolor the coat to scarlet" in run.stdout  # a two-step plan
    trace = json.loads((tmp_path / "out.png.trace.json").read_text())
    assert trace["status"] == "ok" and trace["decomposition"]["actions"] == ["Removal", "Recoloring"]
    assert trace["decomposition"]["subjects"] == ["car", "coat"]
    assert Image.open(tmp_path / "out.png").size == (48, 32)


def _image_part(image: Image.Image) -> dict:
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}}


def test_serve_by_default_answers_each_agent_from_what_it_is_given(tmp_path, processes):
    """Without --replies the server reads each prompt and its images: the agents plan the request by
    rule, the teacher labels it the same way, the judge and the verifiers score what they measure
    between the two images; a second run gets the same answers."""
    from imageedit_r1.agents.judge import judge_prompt, parse_judgment
    from imageedit_r1.agents.sequencer import parse_sub_requests
    from imageedit_r1.agents.verifier import (
        parse_checklist_verdict,
        parse_table2_verdict,
        verification_prompt,
    )
    from imageedit_r1.decomposition import parse_strict
    from imageedit_r1.prompts import render_prompt
    from imageedit_r1.sample_images import sample_image

    request = "remove the car and recolor the coat"
    original = sample_image("portrait", (256, 192))
    noise = Image.effect_noise((256, 192), 120).convert("RGB")
    port = free_port()
    proc, line = start_server(processes, "--port", str(port))
    try:
        import openai

        client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)

        def ask(prompt: str, *images: Image.Image) -> str:
            content = [{"type": "text", "text": prompt}, *(_image_part(image) for image in images)]
            return client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": content}]
                                                  ).choices[0].message.content

        decompose = render_prompt("decompose", content=request)
        sequence = render_prompt("sequence", request=request, actions='["Removal", "Recoloring"]',
                                 subjects='["car", "coat"]', goals='["car removed", "recolor the coat"]', max_steps=8,
                                 as_object=True)
        for _ in range(2):  # a second run gets the same answers as the first
            decomposition = parse_strict(ask(decompose, original))
            assert (decomposition.actions, decomposition.subjects) == (["Removal", "Recoloring"], ["car", "coat"])
            assert parse_sub_requests(ask(sequence, original)) == ["Remove the car", "Recolor the coat"]
        label = json.loads(ask(render_prompt("teacher", request="Remove the red car", actions=[("Removal", "")]),
                               original))
        assert (label["actions"], label["subjects"]) == (["Removal"], ["red car"])

        prompt = judge_prompt(request)
        unchanged, noisy = (parse_judgment(ask(prompt, original, edit)) for edit in (original, noise))
        assert unchanged.total <= 6 and noisy.total <= 6 and unchanged.total != noisy.total
        plan = ["Remove the car", "Recolor the coat"]
        assert parse_table2_verdict(ask(verification_prompt("table2", request, plan), original, original),
                                    plan).unmet == [0, 1]
        assert parse_checklist_verdict(ask(verification_prompt("checklist", request, plan), original, original),
                                       plan).unmet == [0, 1]
    finally:
        stop(proc)


def test_serve_edits_images_for_the_openai_image_editor_without_a_key(tmp_path, processes):
    """`--editor openai-image` with the served /v1/images/edits: the real SDK, no OPENAI_API_KEY."""
    from imageedit_r1.sample_images import sample_image

    sample_image("portrait", (200, 150)).save(tmp_path / "in.png")
    port = free_port()
    proc, line = start_server(processes, "--port", str(port))
    assert "image edits at /v1/images/edits" in line
    try:
        run = subprocess.run([sys.executable, "-m", "imageedit_r1.pipeline", "--editor", "openai-image", "--mode",
                              "original", "--image", str(tmp_path / "in.png"), "--request", "Recolor the coat to blue",
                              "--out", str(tmp_path / "out.png"), f"editor.options.base_url=http://127.0.0.1:{port}/v1"],
                             capture_output=True, text=True, env={k: v for k, v in env().items() if k != "OPENAI_API_KEY"},
                             timeout=300)
    finally:
        stop(proc)
    assert run.returncode == 0, run.stderr
    before, after = Image.open(tmp_path / "in.png").convert("RGB"), Image.open(tmp_path / "out.png").convert("RGB")
    assert after.size == before.size
    middle = after.getpixel((100, 75))
    assert middle[2] > middle[0] and middle != before.getpixel((100, 75))  # tinted towards blue, in the middle


def test_config_eval_makes_an_offline_evaluation_one_command(tmp_path, processes, tiny_flux_kontext):
    models = tmp_path / "tiny"
    models.mkdir()
    (models / "tiny-flux-kontext").symlink_to(tiny_flux_kontext)
    port = free_port()
    config = subprocess.run([sys.executable, "-m", "imageedit_r1.testing", "config", "--eval", "--models", str(models),
                             "--port", str(port)], capture_output=True, text=True, env=env(), timeout=60)
    assert config.returncode == 0, config.stderr
    assert (models / "eval-samples" / "manifest.jsonl").is_file()
    (tmp_path / "offline-eval.yaml").write_text(config.stdout)
    proc, _ = start_server(processes, "--port", str(port))
    try:
        run = subprocess.run([sys.executable, "-m", "imageedit_r1.eval", "run", "--config",
                              str(tmp_path / "offline-eval.yaml"), "-q"], capture_output=True, text=True,
                             env={k: v for k, v in env().items() if k != "OPENAI_API_KEY"}, cwd=tmp_path, timeout=900)
    finally:
        stop(proc)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "edits:      done 16" in run.stdout and "judgments:  scored 16" in run.stdout
    results = [json.loads(line) for line in (tmp_path / "runs" / "offline-eval" / "results.jsonl").read_text().splitlines()]
    totals: dict[str, list[float]] = {}
    for record in results:
        totals.setdefault(record["method"], []).append(record["total"])
    # The judge tells the editors apart: the tiny random editor's noise scores below the stand-in's edits.
    assert max(totals["tiny-flux-original"]) < min(totals["images-original"])
    assert set(totals) == {"tiny-flux-original", "tiny-flux-r1", "images-original", "images-r1"}
