"""The first hour through the real command lines: errors before work, one line each, honest exit codes.

Every test runs ``python -m imageedit_r1.<tool>`` in a subprocess, offline, and asserts the exit
status, the line a user reads and, where a wrong setup used to cost minutes, the time to fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # every test is a real process of a command line

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once (an offline hub)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def offline_env(tmp_path):
    """No API keys, an empty Hugging Face cache, a hub endpoint that refuses connections."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "HF_HUB_OFFLINE")}
    env.update(HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
               PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    return env


def run_cli(module: str, *args: str, env: dict, timeout: float = 120) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", module, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (96, 64), (120, 30, 30)).save(path)
    return path


# ----------------------------------------------------------------------------- 1. fail before work


def test_pipeline_without_a_config_stops_at_once_when_the_default_hub_model_is_not_there(photo, tmp_path, offline_env):
    code, out, err, seconds = run_cli("imageedit_r1.pipeline", "--image", photo, "--request", "make the coat red",
                                      "--out", tmp_path / "out.png", env=offline_env)
    assert code == 2, err
    assert seconds < 30  # it used to retry for ~150 s
    lines = error_lines(err)
    decomposer = next(line for line in lines if "Qwen/Qwen2.5-VL-7B-Instruct" in line)
    assert "not in the Hugging Face cache" in decomposer
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in decomposer and "decomposer.model=" in decomposer
    assert any("black-forest-labs/FLUX.1-Kontext-dev" in line and "editor.options.model_id=" in line for line in lines)
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()


def test_eval_run_stops_at_once_when_a_method_model_is_not_there(tmp_path, offline_env):
    from tests.eval_fixtures import make_benchmark

    bench = make_benchmark(tmp_path, "A", 2)
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({
        "out_dir": str(tmp_path / "run"),
        "benchmarks": [{"name": "A", "source": "manifest", "manifest": bench.manifest}],
        "methods": [{"name": "r1", "kind": "pipeline", "editor": "flux-kontext",
                     "decomposer": {"backend": "transformers", "model": "Qwen/Qwen2.5-VL-7B-Instruct"}}],
        "judges": [{"name": "J", "backend": "openai-compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1"}],
    }))
    code, out, err, seconds = run_cli("imageedit_r1.eval", "run", "--config", config, "--no-progress",
                                      env=offline_env)
    assert code == 2, err
    assert seconds < 30
    assert any(line.startswith("error: method 'r1': the decomposer model 'Qwen/Qwen2.5-VL-7B-Instruct' is not in "
                               "the Hugging Face cache") for line in error_lines(err)), err
    assert not (tmp_path / "run" / "edits.jsonl").exists()


def test_data_label_stops_at_once_when_the_teacher_model_is_not_there(tmp_path, offline_env):
    from tests.data_fixtures import write_manifest

    manifest = write_manifest(tmp_path / "m", ["rgb", "rgb"])
    code, out, err, seconds = run_cli(
        "imageedit_r1.data", "label", "--source", f"manifest:{manifest}", "--out", tmp_path / "labels.jsonl",
        "teacher.backend=transformers", "teacher.model=Qwen/Qwen2.5-VL-72B-Instruct", env=offline_env)
    assert code == 2, err
    assert seconds < 30
    (line,) = error_lines(err)
    assert "'Qwen/Qwen2.5-VL-72B-Instruct' is not in the Hugging Face cache" in line and "teacher.model=" in line
    assert not (tmp_path / "labels.jsonl").exists()


@pytest.mark.parametrize("where", ["command line", "yaml", "demo"])
def test_a_typo_in_a_pipeline_key_is_one_line_naming_the_key_meant(photo, tmp_path, offline_env, where):
    args = ["--image", photo, "--request", "make it red", "--out", tmp_path / "o.png"]
    if where == "demo":  # the offline demo reads its config through the same door, before building models
        args = ["--demo", "--out", tmp_path / "d.png", "on_decompose_failur=keywords"]
    elif where == "yaml":
        config = tmp_path / "pipe.yaml"
        config.write_text("mode: single-turn\non_decompose_failur: keywords\n")
        args += ["--config", config]
    else:
        args += ["on_decompose_failur=keywords"]
    code, out, err, _ = run_cli("imageedit_r1.pipeline", *args, env=offline_env)
    assert code == 2
    assert err.strip().splitlines() == [
        ("error: " + (f"{config}: " if where == "yaml" else "")
         + "unknown config key 'on_decompose_failur' (did you mean 'on_decompose_failure'?)")]


def test_a_typo_in_eval_data_and_train_configs_is_one_line_with_exit_2(tmp_path, offline_env):
    code, _, err, _ = run_cli("imageedit_r1.eval", "run", "--estimate", "concurency=4", env=offline_env)
    assert code == 2
    assert err.strip() == "error: unknown config key 'concurency' (did you mean 'concurrency'?)"

    code, _, err, _ = run_cli("imageedit_r1.data", "label", "--print-config", "teacher.modle=gpt-4.1",
                              env=offline_env)
    assert code == 2
    assert err.strip() == "error: unknown config key 'teacher.modle' (did you mean 'teacher.model'?)"

    code, _, err, _ = run_cli("imageedit_r1.train", "preflight", "easyr1", "--dry-run", "--", "python3", "-m",
                              "verl.trainer.main", "data.rollout_batch_sise=8", env=offline_env)
    assert code == 2
    assert "unknown EasyR1 config key 'data.rollout_batch_sise' (did you mean 'data.rollout_batch_size'?)" in err


def test_a_typo_in_an_editor_option_is_caught_before_any_agent_runs(photo, tmp_path, offline_env):
    flux = tmp_path / "flux"  # a folder: the weights check passes, the option check must not
    flux.mkdir()
    code, out, err, seconds = run_cli(
        "imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--out", tmp_path / "o.png",
        "--decomposer", "openai:served-model", "decomposer.base_url=http://127.0.0.1:9/v1",
        f"editor.options.model_id={flux}", "editor.options.num_inference_step=2", env=offline_env)
    assert code == 2
    assert seconds < 30
    assert error_lines(err) == [
        "error: unknown config key 'editor.options.num_inference_step' (did you mean "
        "'editor.options.num_inference_steps'?)"]


def test_missing_api_keys_of_every_stage_are_reported_before_the_first_stage(photo, tmp_path, offline_env):
    code, out, err, seconds = run_cli(
        "imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--out", tmp_path / "o.png",
        "--decomposer", "gemini:gemini-2.5-flash", "--editor", "openai-image", env=offline_env)
    assert code == 2
    assert error_lines(err) == [
        "error: no API key for decomposer (gemini, gemini-2.5-flash): set the environment variable GEMINI_API_KEY "
        "or GOOGLE_API_KEY (or decomposer.api_key_env to the variable that holds it)",
        "error: no API key for the openai-image editor: set the environment variable OPENAI_API_KEY "
        "(or editor.options.api_key_env to the variable that holds it)"]
    assert not (tmp_path / "o.png.trace.json").exists()  # no stage ran

    from tests.eval_fixtures import make_benchmark

    bench = make_benchmark(tmp_path, "A", 1)
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({
        "out_dir": str(tmp_path / "run"),
        "benchmarks": [{"name": "A", "source": "manifest", "manifest": bench.manifest}],
        "methods": [{"name": "same", "kind": "identity"}],
        "judges": [{"name": "GPT", "backend": "openai", "model": "gpt-4o"},
                   {"name": "Gem", "backend": "gemini", "model": "gemini-2.5-flash", "api_key_env": "MY_GEMINI"}],
    }))
    code, out, err, _ = run_cli("imageedit_r1.eval", "run", "--config", config, "--no-progress", env=offline_env)
    assert code == 2
    assert [line.split(":", 3)[1:3] for line in error_lines(err)] == [
        [" judge 'GPT'", " no API key"], [" judge 'Gem'", " no API key"]]
    assert "MY_GEMINI" in err
    assert not (tmp_path / "run" / "edits.jsonl").exists()  # the edit stage did not start


def test_decomposer_flag_switches_backend_over_a_config_written_for_another(photo, tmp_path, offline_env):
    config = tmp_path / "agents.yaml"
    config.write_text("decomposer:\n  backend: transformers\n  model: /nowhere\n  options: {dtype: bfloat16}\n")
    code, out, err, _ = run_cli(
        "imageedit_r1.pipeline", "--config", config, "--image", photo, "--request", "make it red", "--dry-run",
        "--decomposer", "openai:served", f"decomposer.base_url=http://127.0.0.1:{closed_port()}/v1",
        "decomposer.retry.attempts=1",
        "decomposer.timeout=2", env=offline_env)
    # dtype belongs to the transformers backend: it is dropped, with a note, and the run reaches the server.
    assert "the config's decomposer options (for transformers) are not used" in err
    assert "unknown config key" not in err and "bad options" not in err
    assert code == 1, err  # the plan was attempted against the server named on the command line
    assert error_lines(err) == ["error: decomposition failed: gave up after 1 attempts: openai served: "
                                "connection failed: Connection error."]


def test_editor_flag_switches_the_editor_over_a_config_written_for_another(photo, tmp_path, offline_env):
    """--editor openai-image on the flux-kontext example: its options are dropped with a note, and the
    editor's base_url to a local server needs no provider key (none is set here)."""
    from PIL import ImageOps

    from imageedit_r1.testing.fake_image_servers import fake_openai_images_server

    with fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image)) as server:
        code, out, err, _ = run_cli(
            "imageedit_r1.pipeline", "--config", ROOT / "examples" / "configs" / "flux_kontext.yaml",
            "--editor", "openai-image", "--mode", "original", "--image", photo, "--request", "make it red",
            "--out", tmp_path / "out.png", f"editor.options.base_url={server.url}/v1", env=offline_env)
    assert code == 0, err
    assert ("note: --editor switches the editor from flux-kontext to openai-image; the config's editor options "
            "(for flux-kontext) are not used") in err
    assert "unknown config key" not in err and error_lines(err) == []
    (edit,) = server.requests_to("/v1/images/edits")
    assert edit.multipart()["prompt"][0].text == "make it red"
    assert Image.open(tmp_path / "out.png").size == (96, 64)


@pytest.mark.parametrize("flag", ["-q", "--no-progress"])
def test_data_label_takes_the_quiet_flag_after_the_subcommand_as_eval_run_does(tmp_path, offline_env, flag):
    from imageedit_r1.testing.fake_servers import fake_openai_server
    from tests.data_fixtures import write_manifest

    manifest = write_manifest(tmp_path / "m", ["rgb", "rgb"])
    reply = json.dumps({"rationale": "a recolouring", "actions": ["Recoloring"], "subjects": ["sky"], "goals": ["red"]})
    with fake_openai_server(lambda body: reply) as server:
        code, out, err, _ = run_cli("imageedit_r1.data", "label", "--source", f"manifest:{manifest}", "--out",
                                    tmp_path / "labels.jsonl", f"teacher.base_url={server.url}/v1", flag,
                                    env={**offline_env, "TQDM_DISABLE": ""})
    assert code == 0, err
    assert "samples: 2 = 0 from cache + 2 labelled now + 0 failed" in out
    assert "samples/s" not in err and "labelling with" not in err  # no progress bar


def test_data_subsets_offline_checks_the_hub_once_and_stops_at_once(tmp_path, offline_env):
    env = {k: v for k, v in offline_env.items() if k not in ("HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code, out, err, seconds = run_cli("imageedit_r1.data", "subsets", "--out", tmp_path / "subsets",
                                      env={**env, "HF_DATASETS_CACHE": str(tmp_path / "ds-cache")})
    assert code == 2, err
    assert seconds < 15  # it used to spend 26 s in the hub client's retries
    (line,) = error_lines(err)
    assert line.startswith("error: could not open dataset PSRDataset/PSR-328 (split test): "
                           f"{offline_env['HF_ENDPOINT']} cannot be reached. Pass a local copy instead")
    assert "HF_DATASETS_OFFLINE=1" in line and "Traceback" not in err
    assert not (tmp_path / "subsets").exists()


# ----------------------------------------------------------------------------- 2. Ctrl-C


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 90) -> tuple[int, str, float]:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never reached the point to interrupt"
        time.sleep(0.05)
    time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err, time.monotonic() - sent


def _blocking_image(path: Path):
    """A named pipe where an image should be: reading it blocks until the test interrupts."""
    os.mkfifo(path)

    def reader_waiting() -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once a reader has it open
        except OSError:
            return False
        _blocking_image.keep.append(fd)  # keep the writer end open: the reader blocks on read
        return True

    return reader_waiting


_blocking_image.keep = []


def assert_one_interrupt_line(code: int, err: str, seconds: float) -> None:
    assert code == 130, err
    assert seconds < 10
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [line for line in err.splitlines() if line.strip()][-1] == "interrupted: re-run the same command to resume"


def test_ctrl_c_in_a_pipeline_batch_prints_one_line_and_exits_130(tmp_path, offline_env, processes):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    ready = _blocking_image(tmp_path / "b.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "image": "a.png", "request": "make it red"}) + "\n"
                                      + json.dumps({"id": "b", "image": "b.png", "request": "make it blue"}) + "\n")
    env = {**offline_env, "GEMINI_API_KEY": "k"}
    proc = processes.start([PYTHON, "-m", "imageedit_r1.pipeline", "--manifest", tmp_path / "m.jsonl",
                            "--out-dir", tmp_path / "run", "--mode", "original", "--editor", "nano-banana",
                            "editor.options.base_url=http://127.0.0.1:9", "editor.options.retry={attempts: 1}"],
                           env=env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert_one_interrupt_line(*_interrupt_when(proc, ready))


def test_ctrl_c_in_eval_run_prints_one_line_and_exits_130(tmp_path, offline_env, processes):
    from tests.eval_fixtures import make_benchmark

    bench = make_benchmark(tmp_path, "A", 3)
    marker = tmp_path / "editing"
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({
        "out_dir": str(tmp_path / "run"),
        "benchmarks": [{"name": "A", "source": "manifest", "manifest": bench.manifest}],
        "methods": [{"name": "slow", "kind": "callable", "target": "tests.test_cli_first_hour:slow_edit"}],
        "judges": [{"name": "J", "backend": "openai-compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1"}],
    }))
    env = {**offline_env, "SLOW_EDIT_MARKER": str(marker)}
    proc = processes.start([PYTHON, "-m", "imageedit_r1.eval", "run", "--config", config, "--stage", "edit"],
                           env=env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert_one_interrupt_line(*_interrupt_when(proc, marker.exists))


def slow_edit(image, request, *, seed=0, sample=None):
    """An edit that takes a minute (the eval Ctrl-C test interrupts it)."""
    Path(os.environ["SLOW_EDIT_MARKER"]).touch()
    time.sleep(60)
    return image


def test_ctrl_c_in_data_export_prints_one_line_and_exits_130(tmp_path, offline_env, processes):
    folder = tmp_path / "src"
    folder.mkdir()
    ready = _blocking_image(folder / "a.png")
    (folder / "m.jsonl").write_text(json.dumps({"id": "a", "image": "a.png", "request": "make it red"}) + "\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": "a", "sample_key": "k", "status": "ok", "model": "t",
                                  "ground_truth": "{}"}) + "\n")
    proc = processes.start([PYTHON, "-m", "imageedit_r1.data", "export", "--source",
                            f"manifest:{folder / 'm.jsonl'}", "--labels", labels, "--out", tmp_path / "out",
                            "--no-leakage-guard"],
                           env=offline_env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert_one_interrupt_line(*_interrupt_when(proc, ready))


# ----------------------------------------------------------------------------- 3. honest exit codes


def test_data_label_against_a_dead_endpoint_exits_non_zero(tmp_path, offline_env):
    from tests.data_fixtures import write_manifest

    manifest = write_manifest(tmp_path / "m", ["rgb", "rgb"])
    code, out, err, seconds = run_cli(
        "imageedit_r1.data", "-q", "label", "--source", f"manifest:{manifest}", "--out", tmp_path / "labels.jsonl",
        f"teacher.base_url=http://127.0.0.1:{closed_port()}/v1", "teacher.retry.attempts=1", env=offline_env)
    assert code == 1, err
    assert "samples: 2 = 0 from cache + 0 labelled now + 2 failed" in out
    assert error_lines(err)[-1] == "error: no sample was labelled: all 2 failed (reasons above)"


def test_eval_alignment_with_no_matching_item_exits_non_zero(tmp_path, offline_env):
    from tests.test_eval_tables import _run

    _run(tmp_path)
    human = tmp_path / "human.csv"
    human.write_text("benchmark,sample_id,method,fulfillment,quality,preservation\nA,A-99,base,3,2,2\n")
    code, out, err, _ = run_cli("imageedit_r1.eval", "alignment", "--run-dir", tmp_path / "run", "--human", human,
                                env=offline_env)
    assert code == 1
    assert out == ""
    assert error_lines(err)[-1].startswith("error: no human-scored item of")


def test_export_counts_every_sample_left_out(tmp_path, offline_env):
    from imageedit_r1.data.labels import sample_key
    from imageedit_r1.images import image_sha256, load_image
    from tests.data_fixtures import write_manifest

    manifest = write_manifest(tmp_path / "m", ["rgb", "rgb", "corrupt"])
    request = "make sky 0 a sunset"
    key = sample_key(image_sha256(load_image(tmp_path / "m" / "img_0.png")), request)
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps({"id": "req-0", "sample_key": key, "status": "ok", "model": "t", "ground_truth":
                    json.dumps({"think": "", "actions": ["recolor"], "subjects": ["sky"], "goals": ["sunset"]})})
        + "\n" + json.dumps({"id": "req-1", "sample_key": "x", "status": "failed", "error": "refused"}) + "\n")
    code, out, err, _ = run_cli("imageedit_r1.data", "-q", "export", "--source", f"manifest:{manifest}",
                                "--labels", labels, "--out", tmp_path / "out", "--no-leakage-guard", env=offline_env)
    assert code == 0, err
    assert "exported 1 samples" in out
    assert "unlabelled (no ok label, not exported): 2" in out

    empty = tmp_path / "none.jsonl"
    empty.write_text(json.dumps({"id": "zzz", "sample_key": "y", "status": "ok", "model": "t",
                                 "ground_truth": "{}"}) + "\n")
    code, out, err, _ = run_cli("imageedit_r1.data", "-q", "export", "--source", f"manifest:{manifest}",
                                "--labels", empty, "--out", tmp_path / "out2", "--no-leakage-guard", env=offline_env)
    assert code == 1
    assert "unlabelled (no ok label, not exported): 3" in out
    assert error_lines(err)[-1].startswith("error: nothing was exported")
    assert not (tmp_path / "out2").exists() and "wrote" not in out  # no empty trainer files, no manifest

    # Exporting nothing over an earlier export leaves it whole.
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    code, out, err, _ = run_cli("imageedit_r1.data", "-q", "export", "--source", f"manifest:{manifest}",
                                "--labels", empty, "--out", tmp_path / "out", "--no-leakage-guard", env=offline_env)
    assert code == 1
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before


# ----------------------------------------------------------------------------- 7. the trace gives the details


def test_dry_run_prints_a_short_plan_and_json_the_full_one_with_whole_fallback_reasons(photo, offline_env):
    from imageedit_r1.testing.fake_servers import fake_openai_server

    rambling = "I would rather describe the photo. " + "It shows a coat, a street and a lamp post. " * 12
    with fake_openai_server(lambda _request: rambling) as server:
        args = ["--image", photo, "--request", "Change the coat to red and remove the lamp post", "--dry-run",
                "--decomposer", "openai:fake-model", f"decomposer.base_url={server.url}/v1",
                "decomposer.retry.attempts=1", "on_decompose_failure=keywords", "on_sequence_failure=template"]
        code, out, err, _ = run_cli("imageedit_r1.pipeline", *args, env=offline_env)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"plan for {photo} (single-turn):"
        assert any(line.strip().startswith("actions: ") for line in lines)
        assert any(line.strip().startswith("editor instruction 1: ") for line in lines)
        fallback = next(line for line in lines if "fallback: the decompose stage used 'keywords'" in line)

        code, out, err, _ = run_cli("imageedit_r1.pipeline", *args, "--json", env=offline_env)
        assert code == 0, err
        plan = json.loads(out)
        reason = plan["fallbacks"][0]["reason"]
        assert len(reason) > 120 and fallback.endswith(f"({reason})")  # whole, not cut mid-word
        assert plan["status"] == "planned" and plan["instructions"]


# ----------------------------------------------------------------------------- 4. eval methods take the pipeline's settings


def test_eval_methods_take_pipeline_keys_and_per_method_overrides(tmp_path, offline_env):
    from tests.eval_fixtures import make_benchmark

    bench = make_benchmark(tmp_path, "A", 1)
    config = tmp_path / "eval.yaml"
    config.write_text(json.dumps({
        "out_dir": str(tmp_path / "run"),
        "benchmarks": [{"name": "A", "source": "manifest", "manifest": bench.manifest}],
        "methods": [{"name": "r1", "kind": "pipeline", "editor": "nano-banana", "on_decompose_failure": "keywords",
                     "max_image_pixels": 4_000_000,
                     "decomposer": {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}}],
        "judges": [{"name": "J", "backend": "openai-compatible", "model": "m", "base_url": "http://127.0.0.1:9/v1"}],
    }))
    base = ["run", "--config", config, "--estimate"]
    code, out, err, _ = run_cli("imageedit_r1.eval", *base, "methods.r1.on_sequence_failure=template",
                                "methods.0.mode=multi-turn", env=offline_env)
    assert code == 0, err
    assert "edit   r1" in out and "Traceback" not in err

    code, out, err, _ = run_cli("imageedit_r1.eval", *base, "methods.r1.on_sequence_failur=template",
                                env=offline_env)
    assert code == 2
    assert err.strip() == ("error: unknown config key 'methods.r1.on_sequence_failur' "
                           "(did you mean 'methods.r1.on_sequence_failure'?)")
    code, out, err, _ = run_cli("imageedit_r1.eval", *base, "methods.r2.mode=multi-turn", env=offline_env)
    assert code == 2
    assert err.strip() == ("error: override 'methods.r2.mode=multi-turn': no method named 'r2'; have ['r1']; "
                           "write methods.NAME.KEY=VALUE")


@pytest.mark.slow
def test_local_agents_report_tokens_and_loading_time_apart_from_the_first_stage(photo, offline_env):
    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    qwen = build_tiny_qwen25vl()
    code, out, err, _ = run_cli(
        "imageedit_r1.pipeline", "--image", photo, "--request", "Change the coat to red", "--dry-run", "--json",
        "--decomposer", f"transformers:{qwen}", "decomposer.options.device=cpu", "decomposer.max_tokens=16",
        "on_decompose_failure=keywords", "on_sequence_failure=template", env=offline_env)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["seconds"]["load_agents"] > 0 and plan["seconds"]["decompose"] > 0
    assert plan["tokens"]["decompose"]["prompt"] > 0 and plan["tokens"]["decompose"]["completion"] > 0
    assert plan["tokens"]["sequence"]["prompt"] > 0


def test_the_verifier_is_checked_with_the_other_agents_before_any_work(photo, tmp_path, offline_env):
    """A local verifier whose weights are not there, or a hosted one without its key, is one line
    naming the verify.judge setting, with the other agents' problems, before any agent runs."""
    code, _, err, seconds = run_cli(
        "imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--out", tmp_path / "o.png",
        "--decomposer", "gemini:gemini-2.5-flash", "--editor", "openai-image", "--verify", "transformers:acme/judge-vl",
        env=offline_env)
    assert code == 2 and seconds < 30
    lines = error_lines(err)
    assert len(lines) == 3, err
    assert "decomposer (gemini" in lines[0] and "openai-image editor" in lines[1]
    assert "acme/judge-vl" in lines[2] and "hf download acme/judge-vl" in lines[2]
    assert "verify.judge.model=" in lines[2]
    assert "Traceback" not in err and "couldn't connect" not in err

    code, _, err, _ = run_cli(
        "imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--out", tmp_path / "o.png",
        "--decomposer", "gemini:gemini-2.5-flash", "--verify", "openai:gpt-4o-2024-08-06", env=offline_env)
    assert code == 2
    assert any(line.startswith("error: no API key for verify.judge (openai, gpt-4o-2024-08-06): set the environment "
                               "variable OPENAI_API_KEY") for line in error_lines(err)), err
    assert any("decomposer (gemini" in line for line in error_lines(err)), err


@pytest.mark.parametrize("flags", [
    ["--verify", "judge-vlm", "verify.judge.base_url=http://127.0.0.1:9/v1"],
    ["--decomposer", "agent-vlm", "decomposer.base_url=http://127.0.0.1:9/v1"],
])
def test_a_server_url_on_an_in_process_backend_says_to_pick_the_openai_backend(photo, tmp_path, offline_env, flags):
    """`base_url` means a served model; on the default transformers backend it was dropped without a
    word and the model name was looked up as a local folder."""
    code, _, err, _ = run_cli("imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--dry-run",
                              *flags, "decomposer.backend=transformers", env=offline_env) if flags[0] == "--decomposer" \
        else run_cli("imageedit_r1.pipeline", "--image", photo, "--request", "make it red", "--dry-run",
                     "--decomposer", "gemini:gemini-2.5-flash", *flags, env=offline_env)
    assert code == 2
    setting = flags[2].split("=")[0].rsplit(".", 1)[0]
    line = next(line for line in error_lines(err) if line.startswith(f"error: {setting}.base_url"))
    assert f"{setting}.backend=openai" in line and "http://127.0.0.1:9/v1" in line
    assert not any("model folder not found" in line for line in error_lines(err)), err
