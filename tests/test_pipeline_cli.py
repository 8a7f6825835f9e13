"""``python -m imageedit_r1.pipeline``: single images, batches that resume, failures recorded, clear exits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from imageedit_r1.pipeline.cli import main
from imageedit_r1.store import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flux_args(tiny_flux_kontext):
    flux = tiny_flux_kontext
    return ["--mode", "original", "--editor", "flux-kontext", f"editor.options.model_id={flux}",
            "editor.options.local_files_only=true", "editor.options.device=cpu", "editor.options.min_area=0",
            "editor.options.num_inference_steps=2", "editor.options.max_sequence_length=32", "seed=3"]


def write_manifest(folder: Path, items):
    path = folder / "requests.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


@pytest.mark.slow
def test_single_image_writes_the_image_at_the_input_size_and_its_trace(tmp_path, flux_args, capsys):
    source = tmp_path / "in.png"
    Image.new("RGB", (67, 45), (90, 20, 200)).save(source)
    out = tmp_path / "out" / "edited.png"
    assert main(["--image", str(source), "--request", "make it red", "--out", str(out), *flux_args]) == 0
    assert Image.open(out).size == (67, 45)
    trace = json.loads((tmp_path / "out" / "edited.png.trace.json").read_text())
    assert trace["status"] == "ok" and trace["mode"] == "original" and trace["seeds"] == [3]
    assert f"editor.options.model_id={trace['models']['editor']}" in flux_args
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_batch_records_a_failed_item_goes_on_and_resumes_without_redoing_work(tmp_path, flux_args):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(images / "a.png")
    Image.new("RGB", (31, 47), (10, 10, 200)).save(images / "b.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    manifest = write_manifest(tmp_path, [
        {"id": "a", "image": "images/a.png", "request": "make it blue"},
        {"id": "broken", "image": "images/broken.png", "request": "make it green"},
        {"id": "b", "image": "images/b.png", "request": "remove the car"},
    ])
    out_dir = tmp_path / "run"
    assert main(["--manifest", str(manifest), "--out-dir", str(out_dir), *flux_args]) == 1
    assert Image.open(out_dir / "a.png").size == (40, 30) and Image.open(out_dir / "b.png").size == (31, 47)
    records = {r["id"]: r for r in read_jsonl(out_dir / "results.jsonl")}
    assert records["a"]["status"] == "ok" and records["b"]["status"] == "ok"
    assert records["broken"]["status"] == "failed" and "unreadable image" in records["broken"]["error"]
    assert json.loads((out_dir / "broken.trace.json").read_text())["status"] == "failed"

    # Re-run after fixing the broken input: finished items are skipped, the failed one is redone.
    a_mtime = (out_dir / "a.png").stat().st_mtime_ns
    Image.new("RGB", (20, 20), (0, 120, 0)).save(images / "broken.png")
    assert main(["--manifest", str(manifest), "--out-dir", str(out_dir), *flux_args]) == 0
    assert (out_dir / "a.png").stat().st_mtime_ns == a_mtime
    records = {r["id"]: r for r in read_jsonl(out_dir / "results.jsonl")}
    assert records["broken"]["status"] == "ok" and Image.open(out_dir / "broken.png").size == (20, 20)


@pytest.mark.slow
def test_two_batches_on_one_out_dir_at_once_edit_each_item_once(tmp_path, processes):
    from imageedit_r1.testing.fake_image_servers import fake_openai_images_server

    for index in range(3):
        Image.new("RGB", (32, 24), (60 * index, 90, 30)).save(tmp_path / f"{index}.png")
    manifest = write_manifest(tmp_path, [{"id": f"item{i}", "image": f"{i}.png", "request": "make it red"}
                                         for i in range(3)])
    out_dir = tmp_path / "run"
    with fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image), latency=0.7) as server:
        command = [sys.executable, "-m", "imageedit_r1.pipeline", "--manifest", str(manifest), "--out-dir",
                   str(out_dir), "--mode", "original", "--editor", "openai-image",
                   f"editor.options.base_url={server.url}/v1"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test-batch-key"}
        runs = [processes.start(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert len(server.requests) == 3  # each item edited (and paid for) once
    waited = [(out, err) for out, err in outputs if "is in use by another run (pid" in err]
    assert len(waited) == 1, outputs  # the second batch said so, waited, then found everything done
    assert f"{out_dir} is in use by another run (pid" in waited[0][1]
    assert "0 edited, 3 already done, 0 failed" in waited[0][0]
    assert {r["id"] for r in read_jsonl(out_dir / "results.jsonl")} == {"item0", "item1", "item2"}


def test_traces_mask_an_agent_key_its_server_echoes(tmp_path, monkeypatch, capsys):
    from imageedit_r1.pipeline import AgentConfig, EditorConfig, ImageEditR1, PipelineConfig
    from imageedit_r1.testing.fake_image_servers import fake_openai_images_server
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    key = "llm-test-SECRET-agent-key-4242"  # kept in a variable whose name says nothing of a key
    monkeypatch.setenv("LLM_SK", key)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-images")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "in.png")
    out = tmp_path / "out" / "edited.png"

    def echo_key(body):  # a server that quotes the caller's key back in its answers
        return reply_in_kind(openai_text(body)).replace("scarlet", f"scarlet (key {key})")

    with fake_openai_server(echo_key) as agents, \
            fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image)) as images:
        flags = ["--image", str(tmp_path / "in.png"), "--request", "make the coat scarlet", "--mode", "multi-turn",
                 "--decomposer", "openai:served-r1", "--editor", "openai-image"]
        overrides = [f"decomposer.base_url={agents.url}/v1", "decomposer.api_key_env=LLM_SK",
                     f"editor.options.base_url={images.url}/v1"]
        assert main([*flags, "--out", str(out), *overrides]) == 0
        assert main([*flags, "--dry-run", "--json", *overrides]) == 0
        agent = AgentConfig(backend="openai", model="served-r1", base_url=agents.url + "/v1", api_key_env="LLM_SK")
        pipeline = ImageEditR1(config=PipelineConfig(
            mode="multi-turn", decomposer=agent, editor=EditorConfig("openai-image", {"base_url": images.url + "/v1"})))
        returned = pipeline(str(tmp_path / "in.png"), "make the coat scarlet").trace
        planned = pipeline.plan(str(tmp_path / "in.png"), "make the coat scarlet")
        assert agents.requests[0].headers["authorization"] == f"Bearer {key}"  # the key did travel
    printed = capsys.readouterr()
    written = (tmp_path / "out" / "edited.png.trace.json").read_text()
    for text in (written, printed.out, printed.err, json.dumps(returned), json.dumps(planned.record),
                 json.dumps(planned.trace())):
        assert key not in text
    assert "scarlet (key [REDACTED])" in written and "scarlet (key [REDACTED])" in printed.out


@pytest.mark.slow
def test_a_finished_image_without_a_trace_is_redone(tmp_path, flux_args):
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    manifest = write_manifest(tmp_path, [{"id": "x", "image": "x.png", "request": "make it red"}])
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    Image.new("RGB", (5, 5)).save(out_dir / "x.png")  # left by a run killed before its trace was written
    assert main(["--manifest", str(manifest), "--out-dir", str(out_dir), *flux_args]) == 0
    assert Image.open(out_dir / "x.png").size == (20, 20)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "image": "a.png", "request": "x"}\n{not json}\n', "requests.jsonl:2: not valid JSON"),
        ('{"id": "a", "image": "a.png"}\n', "requests.jsonl:1: no field 'request'"),
        ('{"id": "a", "image": "a.png", "request": "x"}\n{"id": "a", "image": "b.png", "request": "y"}\n', "duplicate id"),
    ],
)
def test_a_bad_manifest_stops_before_any_work_with_the_line_number(tmp_path, capsys, content, message):
    path = tmp_path / "requests.jsonl"
    path.write_text(content)
    assert main(["--manifest", str(path), "--out-dir", str(tmp_path / "o"), "--mode", "original"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_a_missing_api_key_is_a_clear_error_not_a_failed_batch(tmp_path, capsys, monkeypatch):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    code = main(["--image", str(tmp_path / "x.png"), "--request", "make it red", "--out", str(tmp_path / "o.png"),
                 "--mode", "original", "--editor", "nano-banana"])
    assert code == 2
    assert "set the environment variable GEMINI_API_KEY or GOOGLE_API_KEY" in capsys.readouterr().err


def test_usage_errors_and_help(capsys, monkeypatch):
    with pytest.raises(SystemExit) as info:
        main(["--image", "x.png"])
    assert info.value.code == 2
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "80")  # as printed to a pipe
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "OFFLINE DEMO" in out and "--manifest" in out and "single-turn" in out
    # Every example is a command that can be pasted as printed: a continuation is kept, never joined up.
    import re

    examples = out.split("examples:", 1)[1].split("manifest:", 1)[0]
    assert "--verify openai:gpt-4o-2024-08-06" in examples
    assert not re.findall(r"\S {3,}--", examples), examples


@pytest.mark.slow
def test_the_offline_demo_runs_all_three_agents_and_says_its_output_is_noise(tmp_path, capsys):
    out = tmp_path / "demo_out" / "edited.png"
    assert main(["--demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "OFFLINE DEMO" in printed and "NOISE" in printed
    assert Image.open(out).size == Image.open(tmp_path / "demo_out" / "edited.input.png").size == (320, 240)
    trace = json.loads((tmp_path / "demo_out" / "edited.png.trace.json").read_text())
    assert trace["status"] == "ok" and trace["demo"]["offline_demo"] is True
    # The tiny agents really answered (raw outputs kept) and the fallbacks that took over are named.
    assert trace["raw_outputs"]["decompose"] and trace["raw_outputs"]["sequence"]
    assert {f["stage"] for f in trace["fallbacks"]} <= {"decompose", "sequence"}
    assert trace["sub_requests"] and trace["seconds"]["edit"] > 0


@pytest.mark.parametrize(("override", "line"), [
    ("editor.options.retry.atempts=2", "error: editor.options.retry: unknown config key 'atempts' (did you mean 'attempts'?)"),
    ("editor.options.retry.attempts=0", "error: editor.options.retry.attempts must be >= 1, got 0"),
])
def test_a_bad_editor_retry_stops_before_any_agent_or_editor_call(tmp_path, monkeypatch, capsys, override, line):
    from imageedit_r1.testing.fake_image_servers import fake_openai_images_server
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-retry-options")
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "in.png")
    with fake_openai_server(lambda body: reply_in_kind(openai_text(body))) as agents, \
            fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image)) as images:
        code = main(["--image", str(tmp_path / "in.png"), "--request", "make the coat scarlet", "--out",
                     str(tmp_path / "o.png"), "--decomposer", "openai:served-r1", "--editor", "openai-image",
                     f"decomposer.base_url={agents.url}/v1", f"editor.options.base_url={images.url}/v1", override])
        assert code == 2 and not agents.requests and not images.requests
    assert [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")] == [line]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_backend_flags_read_the_backend_names_the_config_takes(tmp_path, capsys):
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "in.png")
    plan = ["--image", str(tmp_path / "in.png"), "--request", "make the coat scarlet", "--dry-run"]
    with fake_openai_server(lambda body: reply_in_kind(openai_text(body))) as agents:
        # The old spelling of a served model's backend, as in a config file: read as openai with its base_url.
        assert main([*plan, "--decomposer", "openai-compatible:served-r1", f"decomposer.base_url={agents.url}/v1"]) == 0
        assert agents.requests and {r.json["model"] for r in agents.requests} == {"served-r1"}
    assert "decomposer.backend=openai-compatible -> decomposer.backend=openai" in capsys.readouterr().err
    # Without a base_url it would call OpenAI itself: one line naming the key, for --verify too.
    for flag, role in (("--decomposer", "decomposer"), ("--verify", "verify.judge")):
        assert main([*plan, "--mode", "original", flag, "openai-compatible:served-r1"]) == 2
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert line.startswith(f"error: {role}.backend=openai-compatible is the old spelling") and \
            f"{role}.base_url is not set" in line


@pytest.mark.parametrize(("flags", "message"), [
    (["--out-format", "jpg"], "--out-format: for a batch (--manifest) only"),
    (["--if-busy", "stop"], "--if-busy: for a batch (--manifest) only"),
    (["--retry-failed"], "--retry-failed: for a batch (--manifest) only"),
    (["--out-dir", "runs/x"], "--out-dir: for a batch (--manifest) only"),
    (["--json"], "--json goes with --dry-run"),
])
def test_a_flag_the_single_image_run_would_ignore_is_refused(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        main(["--image", "x.png", "--request", "r", "--out", str(tmp_path / "o.png"), *flags])
    assert info.value.code == 2 and f"error: {message}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flags", [["--config", "examples/configs/flux_kontext.yaml"], ["--decomposer", "openai:m"]])
def test_the_demo_refuses_a_setup_it_would_not_use(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as info:
        main(["--demo", "--out", str(tmp_path / "edited.png"), *flags])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"--demo builds its own tiny models; it does not take {flags[0]}" in err
    assert not list(tmp_path.iterdir())
