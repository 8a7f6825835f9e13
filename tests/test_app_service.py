"""The app's work without a browser: bounded uploads, plan/execute through the service, page-safe
errors, secrets kept out, and the command line's safe defaults."""

import io
import json

import pytest
from PIL import Image

from imageedit_r1.agents.editors import EditRefusedError
from imageedit_r1.app.__main__ import build_parser, is_loopback, read_auth
from imageedit_r1.app.service import AppError, AppSettings, EditService
from imageedit_r1.app.uploads import UploadLimits, UploadRefused, read_upload
from imageedit_r1.pipeline import ImageEditR1, PipelineConfig
from tests.test_pipeline import (
    DECOMPOSITION,
    REQUEST,
    SUBS,
    InvertingEditor,
    ScriptedDecomposer,
    ScriptedSequencer,
)

LIMITS = UploadLimits(max_bytes=300_000, max_pixels=2_000_000)


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


@pytest.fixture
def uploads(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    return root


def service(tmp_path, uploads, editor=None, **config):
    config = PipelineConfig(**config)
    planner = ImageEditR1(decomposer=ScriptedDecomposer(DECOMPOSITION), sequencer=ScriptedSequencer(SUBS),
                          config=config)
    settings = AppSettings(config=config, limits=LIMITS, upload_roots=[str(uploads)],
                           output_dir=str(tmp_path / "out"), auth_passwords=["hunter2-login"])
    return EditService(settings, planner=planner, editor=editor or InvertingEditor())


def test_a_good_upload_is_read_upright_and_rgb(uploads):
    path = save(Image.new("RGBA", (300, 200), (10, 20, 30, 128)), uploads / "a.png")
    image = read_upload(path, LIMITS, [uploads])
    assert image.mode == "RGB" and image.size == (300, 200)


def test_an_oversized_file_is_refused_before_it_is_decoded(uploads):
    noise = Image.effect_noise((800, 600), 120).convert("RGB")  # incompressible: well over 300 kB as PNG
    path = save(noise, uploads / "big.png")
    with pytest.raises(UploadRefused, match=r"MiB; this server accepts at most"):
        read_upload(path, LIMITS, [uploads])


@pytest.mark.parametrize(("side", "message"), [
    (5_000, r"5000x5000 = 25.0 megapixels; this server accepts at most 2 megapixels"),
    (20_000, r"more pixels than Pillow will open \(400000000 pixels\); this server accepts at most 2 megapixels"),
])
def test_a_decompression_bomb_is_refused_from_its_header(uploads, side, message):
    bomb = Image.new("1", (side, side))  # megapixels in a file of a few kB
    path = save(bomb, uploads / "bomb.png", optimize=True)
    assert (uploads / "bomb.png").stat().st_size < LIMITS.max_bytes
    with pytest.raises(UploadRefused, match=message):
        read_upload(path, LIMITS, [uploads])


@pytest.mark.parametrize("value", ["/etc/passwd", "../../etc/passwd", "/proc/self/environ"])
def test_a_path_outside_the_upload_folder_is_refused(uploads, value):
    with pytest.raises(UploadRefused, match="server paths are not accepted"):
        read_upload(value, LIMITS, [uploads])


def test_a_symlink_out_of_the_upload_folder_is_refused(uploads, tmp_path):
    secret = save(Image.new("RGB", (8, 8)), tmp_path / "secret.png")
    (uploads / "link.png").symlink_to(secret)
    with pytest.raises(UploadRefused, match="server paths are not accepted"):
        read_upload(str(uploads / "link.png"), LIMITS, [uploads])


def test_corrupt_files_and_unaccepted_formats_are_refused_clearly(uploads):
    corrupt = uploads / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(UploadRefused, match="not a readable image"):
        read_upload(str(corrupt), LIMITS, [uploads])
    svg = uploads / "x.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    with pytest.raises(UploadRefused, match="not a readable image"):
        read_upload(str(svg), LIMITS, [uploads])
    gif = save(Image.new("P", (10, 10)), uploads / "x.gif")
    with pytest.raises(UploadRefused, match="GIF images are not accepted; use one of: PNG, JPEG"):
        read_upload(gif, LIMITS, [uploads])
    with pytest.raises(UploadRefused, match="no image"):
        read_upload(None, LIMITS, [uploads])


def test_plan_then_execute_a_changed_plan_writes_the_image_and_a_trace_that_says_so(tmp_path, uploads):
    svc = service(tmp_path, uploads, mode="multi-turn")
    path = save(Image.new("RGB", (123, 77), (200, 0, 0)), uploads / "in.jpg", quality=95)
    _, plan = svc.plan(path, REQUEST)
    plan.edit_sub_request(0, "Recolor the coat to deep blue")
    outcome = svc.execute(path, plan.to_dict(), seed=4, steps=3)
    assert outcome.after.size == (123, 77) and Image.open(outcome.image_path).size == (123, 77)
    trace = json.loads(outcome.trace_path.read_text())
    assert trace["sub_requests"] == ["Recolor the coat to deep blue", SUBS[1]]
    assert trace["plan"]["changed"] is True and trace["seeds"] == [4, 5]


def test_page_errors_are_sentences_without_secrets(tmp_path, uploads, monkeypatch):
    monkeypatch.setenv("PROVIDER_API_KEY", "sk-live-0123456789abcdef")
    failing = InvertingEditor(fail=EditRefusedError("refused for key sk-live-0123456789abcdef and hunter2-login"))
    svc = service(tmp_path, uploads, editor=failing)
    path = save(Image.new("RGB", (32, 32)), uploads / "in.png")
    _, plan = svc.plan(path, REQUEST)
    with pytest.raises(AppError) as info:
        svc.execute(path, plan, seed=0)
    message, trace = str(info.value), json.dumps(info.value.trace)
    assert "editing failed: refused for key [REDACTED] and [REDACTED]" == message
    assert "sk-live" not in trace and "hunter2" not in trace and "Traceback" not in message
    for bad, expected in [(dict(upload=path, request="  "), "request is empty"),
                          (dict(upload=path, request="x" * 3000), "limit is 2000"),
                          (dict(upload=path, request="x", mode="sideways"), "mode must be one of")]:
        with pytest.raises(AppError, match=expected):
            svc.plan(**bad)
    with pytest.raises(AppError, match="seed must be a whole number"):
        svc.execute(path, plan, seed="abc")
    with pytest.raises(AppError, match="steps must be between 1 and 200"):
        svc.execute(path, plan, steps=10_000)
    with pytest.raises(AppError, match="runs the flux-kontext editor only, not 'paint'"):
        svc.execute(path, plan, editor="paint")
    with pytest.raises(AppError, match="sub-request 1 is empty"):
        svc.execute(path, {**plan.to_dict(), "sub_requests": [""]})
    with pytest.raises(AppError, match="the plan is over 4 MiB"):
        svc.execute(path, {**plan.to_dict(), "record": {"errors": ["x" * 5_000_000]}})


def test_an_agent_key_echoed_by_its_server_reaches_no_page_plan_or_download(tmp_path, uploads, monkeypatch):
    from imageedit_r1.pipeline.config import AgentConfig
    from imageedit_r1.testing.fake_servers import fake_openai_server, openai_text
    from imageedit_r1.testing.stand_ins import reply_in_kind

    key = "llm-test-SECRET-agent-key-4242"  # kept in a variable whose name says nothing of a key
    monkeypatch.setenv("LLM_SK", key)

    def echo_key(body):  # a server that quotes the caller's key back in its answers
        return reply_in_kind(openai_text(body)).replace("scarlet", f"scarlet (key {key})")

    with fake_openai_server(echo_key) as server:
        agent = AgentConfig(backend="openai", model="served-r1", base_url=server.url + "/v1", api_key_env="LLM_SK")
        config = PipelineConfig(mode="multi-turn", decomposer=agent)
        editor = InvertingEditor()
        svc = EditService(AppSettings(config=config, limits=LIMITS, upload_roots=[str(uploads)],
                                      output_dir=str(tmp_path / "out")), editor=editor)
        path = save(Image.new("RGB", (48, 32), (200, 0, 0)), uploads / "in.png")
        _, plan = svc.plan(path, "make the coat scarlet")
        outcome = svc.execute(path, plan.to_dict(), seed=1)
        assert server.requests[0].headers["authorization"] == f"Bearer {key}"  # the key did travel
    page = json.dumps(plan.to_dict()) + json.dumps(outcome.trace)
    download = outcome.trace_path.read_text()
    assert "scarlet (key [REDACTED])" in page and "[REDACTED]" in download
    assert key not in page and key not in download
    assert not any(key in instruction for _, instruction, _ in editor.calls)


def test_an_editor_that_cannot_start_is_a_clear_error(tmp_path, uploads, monkeypatch):
    from imageedit_r1.pipeline.config import EditorConfig

    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = PipelineConfig(editor=EditorConfig(name="nano-banana"))
    planner = ImageEditR1(decomposer=ScriptedDecomposer(DECOMPOSITION), sequencer=ScriptedSequencer(SUBS), config=config)
    svc = EditService(AppSettings(config=config, limits=LIMITS, upload_roots=[str(uploads)],
                                  output_dir=str(tmp_path / "out")), planner=planner)
    path = save(Image.new("RGB", (32, 32)), uploads / "in.png")
    _, plan = svc.plan(path, REQUEST)
    with pytest.raises(AppError, match="cannot run here.*(GEMINI|GOOGLE)"):
        svc.execute(path, plan)


def test_the_default_bind_is_loopback_and_no_share_link():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and is_loopback(args.host) and args.share is False
    assert not is_loopback("0.0.0.0") and is_loopback("::1") and is_loopback("localhost")
    assert args.queue_size > 0 and args.max_upload_mb > 0 and args.max_megapixels > 0


def test_logins_come_from_a_file_or_the_environment(tmp_path):
    path = tmp_path / "auth"
    path.write_text("# users\nalice:pass:with:colons-long\nbob:b0b-a-long-passphrase\n")
    assert read_auth(str(path), {}) == [("alice", "pass:with:colons-long"), ("bob", "b0b-a-long-passphrase")]
    env = {"IMAGEEDIT_R1_APP_AUTH": "carol:carol-long-passphrase, dave:dave-long-passphrase"}
    assert read_auth(None, env) == [("carol", "carol-long-passphrase"), ("dave", "dave-long-passphrase")]
    assert read_auth(None, {}) == []
    with pytest.raises(ValueError, match="user:password") as info:
        read_auth(None, {"IMAGEEDIT_R1_APP_AUTH": "nopassword"})
    assert "nopassword" not in str(info.value)


def test_in_the_auth_file_one_line_is_one_login_split_at_the_first_colon(tmp_path):
    """Commas belong to the password in the file: once read as separators, `alice:Tr0ub4dor,3x`
    was refused and `alice:one,two:three` became two accounts."""
    path = tmp_path / "auth"
    path.write_text("alice:Tr0ub4dor,3x-and-more\r\n  # a comment\n\nbob:one,two:three and four \n", encoding="utf-8")
    assert read_auth(str(path), {}) == [("alice", "Tr0ub4dor,3x-and-more"), ("bob", "one,two:three and four ")]
    # The variable separates entries by commas; a comma or backslash in a password is escaped.
    env = {"IMAGEEDIT_R1_APP_AUTH": r"alice:Tr0ub4dor\,3x-and-more,bob:back\\slash-passphrase"}
    assert read_auth(None, env) == [("alice", "Tr0ub4dor,3x-and-more"), ("bob", "back\\slash-passphrase")]


@pytest.mark.parametrize("entry", ["alice:x", "alice:fourteen-chars"])
def test_a_short_password_is_refused_without_showing_it(entry, tmp_path):
    path = tmp_path / "auth"
    path.write_text(entry + "\n")
    with pytest.raises(ValueError, match=r"password of 'alice' has \d+ characters; use at least 15") as info:
        read_auth(str(path), {})
    assert entry.split(":", 1)[1] not in str(info.value)


def test_a_short_password_stops_the_app_before_it_starts(tmp_path, capsys):
    from imageedit_r1.app.__main__ import main

    path = tmp_path / "auth"
    path.write_text("alice:x\n")
    with pytest.raises(SystemExit) as info:
        main(["--auth-file", str(path)])
    assert info.value.code == 2 and "use at least 15" in capsys.readouterr().err


def test_importing_the_app_package_and_the_pipeline_loads_no_gradio():
    import subprocess
    import sys

    code = ("import sys, imageedit_r1, imageedit_r1.pipeline, imageedit_r1.app, imageedit_r1.app.service; "
            "print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_help_names_the_safety_defaults():
    text = io.StringIO()
    build_parser().print_help(text)
    assert "127.0.0.1" in text.getvalue() and "--share" in text.getvalue() and "--queue-size" in text.getvalue()


def test_the_k8s_manifest_and_the_docker_entrypoint_start_the_app_with_a_login_from_a_secret():
    from pathlib import Path

    import yaml

    from imageedit_r1.app.__main__ import AUTH_ENV

    root = Path(__file__).resolve().parents[1]
    deployment, svc = yaml.safe_load_all((root / "recipes/k8s/app.yaml").read_text())
    assert (deployment["kind"], svc["kind"]) == ("Deployment", "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(["--host", "0.0.0.0", *container["args"]])  # the image's entrypoint adds --host
    assert args.config == "examples/configs/flux_kontext.yaml" and args.queue_size == 16
    assert all("=" in item for item in args.overrides)
    auth = next(env for env in container["env"] if env["name"] == AUTH_ENV)
    assert auth["valueFrom"]["secretKeyRef"] == {"name": "imageedit-r1-app-auth", "key": "auth"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert svc["spec"]["type"] == "ClusterIP"
    app_stage = (root / "Dockerfile").read_text().split(" AS app\n", 1)[1].split("\nFROM ", 1)[0]
    entry = json.loads(app_stage.split("ENTRYPOINT ", 1)[1].splitlines()[0])
    cmd = json.loads(app_stage.split("\nCMD ", 1)[1].splitlines()[0])
    assert entry[:3] == ["python", "-m", "imageedit_r1.app"] and "EXPOSE 7860" in app_stage
    parsed = build_parser().parse_args(entry[3:] + cmd)
    assert parsed.port == 7860 and parsed.config == "examples/configs/flux_kontext.yaml"


@pytest.mark.slow
def test_config_and_overrides_from_the_command_line_reach_the_service(tmp_path):
    from imageedit_r1.app.server import build_settings

    args = build_parser().parse_args(["--config", "examples/configs/nano_banana.yaml", "--max-upload-mb", "2",
                                      "--max-megapixels", "12", "--output-dir", str(tmp_path), "seed=5"])
    settings = build_settings(args, [("alice", "pw-123456-abcdefg")])
    assert settings.config.editor.name == "nano-banana" and settings.config.seed == 5
    assert settings.limits.max_bytes == 2 * 2**20 and settings.limits.max_pixels == 12_000_000
    assert settings.auth_passwords == ["pw-123456-abcdefg"] and settings.upload_roots
    assert EditService(settings).editor_name == "nano-banana"
    with pytest.raises(FileNotFoundError, match="config file not found"):
        build_settings(build_parser().parse_args(["--config", "nope.yaml"]), [])


def test_a_changed_plan_is_verified_with_one_verifier_for_every_edit(tmp_path, uploads, monkeypatch):
    """With a `verify` section the page's Edit runs the verify loop on the person's plan, and the
    verifier (a local VLM can be the decomposer's own model) is built once, not on every click."""
    import imageedit_r1.backends as backends
    from imageedit_r1.endpoints import JudgeConfig, RetryConfig
    from imageedit_r1.pipeline.config import VerifyConfig
    from imageedit_r1.testing import fake_servers as fakes

    built = []
    real_build = backends.build_backend
    monkeypatch.setattr(backends, "build_backend", lambda *a, **k: built.append(a) or real_build(*a, **k))
    verdict = json.dumps({"reasoning": "ok", "fulfillment": 4, "quality": 3, "preservation": 3, "unmet": []})
    with fakes.fake_openai_server(fakes.scripted(verdict)) as server:
        judge = JudgeConfig(backend="openai", model="judge-vlm", base_url=server.url + "/v1",
                            retry=RetryConfig(attempts=1), timeout=5)
        svc = service(tmp_path, uploads, verify=VerifyConfig(judge=judge))
        path = save(Image.new("RGB", (64, 48), (200, 0, 0)), uploads / "in.png")
        _, plan = svc.plan(path, REQUEST)
        plan.edit_sub_request(0, "Recolor the coat to deep blue")
        traces = [svc.execute(path, plan.to_dict(), seed=seed).trace for seed in (1, 2)]
    for trace in traces:
        assert trace["plan"]["changed"] is True
        assert trace["verify"]["attempts"][0]["plan"]["sub_requests"][0] == "Recolor the coat to deep blue"
        assert trace["verify"]["stop_reason"] == "threshold" and trace["models"]["verifier"] == "judge-vlm"
    assert len(built) == 1
