"""The secret policy: every key a run can reach is masked by value, however it was named."""

from __future__ import annotations

import json
import logging

from imageedit_r1.config import load_config
from imageedit_r1.masking import MASK, MaskingFilter, mask, register_config, secret_values
from imageedit_r1.pipeline.config import PipelineConfig


def test_keys_are_masked_by_value_in_nested_records(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_value\n")  # a provider's conventional variable, read from a file
    monkeypatch.setenv("MY_SERVICE_API_KEY", "named-like-a-key-1")  # the name says key
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # neither: an ordinary setting
    monkeypatch.setenv("PLAIN_SETTING", "just-a-setting-123")
    record = {"error": "401 for hf_test_token_value", "raw": ["named-like-a-key-1", ("x", 3)],
              "named-like-a-key-1": None, "n": 2, "ok": "false just-a-setting-123"}
    assert mask(record) == {"error": f"401 for {MASK}", "raw": [MASK, ["x", 3]], MASK: None, "n": 2,
                            "ok": "false just-a-setting-123"}
    assert mask("login hunter2-pw", extra=["hunter2-pw"]) == f"login {MASK}"


def test_an_endpoints_key_variable_is_masked_whatever_its_name(monkeypatch):
    monkeypatch.setenv("GATEWAY_SK_FOR_THIS_TEST", "value-of-an-oddly-named-key")
    assert "value-of-an-oddly-named-key" not in secret_values()
    register_config(PipelineConfig(decomposer={"backend": "openai", "model": "m", "api_key_env": "GATEWAY_SK_FOR_THIS_TEST"}))
    assert mask("echo value-of-an-oddly-named-key") == f"echo {MASK}"


def test_values_a_config_reads_from_the_environment_are_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXY_ACCESS_WORD", "read-through-oc-env-42")
    path = tmp_path / "pipeline.yaml"
    path.write_text("editor:\n  name: openai-image\n  options:\n    extra_params:\n      user: ${oc.env:PROXY_ACCESS_WORD}\n")
    config = load_config(PipelineConfig, path)
    assert config.editor.options["extra_params"]["user"] == "read-through-oc-env-42"
    assert mask({"options": config.editor.options}) == {"options": {"extra_params": {"user": MASK}}}


def test_the_log_filter_masks_messages_arguments_and_tracebacks(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "vllm-served-key-77")
    try:
        raise RuntimeError("bad key vllm-served-key-77")
    except RuntimeError as exc:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed: %s", (exc,), (type(exc), exc, None))
    assert MaskingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "vllm-served-key-77" not in text and text.count(MASK) == 2


# ----------------------------------------------------------------------------- what the command lines write

SECRET = "sk-quoted-back-0123456789"  # as an error quotes it: a path, a URL or a server's echo holding a key


def test_a_batchs_records_and_its_dry_run_mask_what_an_error_quotes(tmp_path, monkeypatch, capsys):
    from imageedit_r1.pipeline.cli import main
    from imageedit_r1.store import read_jsonl

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "image": f"{SECRET}.png", "request": "make it red"}) + "\n")
    editor = ["--mode", "original", "--editor", "openai-image", "editor.options.base_url=http://127.0.0.1:9/v1"]
    assert main(["--manifest", str(manifest), "--out-dir", str(tmp_path / "run"), *editor]) == 1
    assert main(["--manifest", str(manifest), "--dry-run", *editor]) == 1
    (record,) = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert record["status"] == "failed" and f"{MASK}.png" in record["error"] and f"{MASK}.png" in record["image"]
    printed = capsys.readouterr()
    assert f"{MASK}.png" in printed.out
    for text in ((tmp_path / "run" / "results.jsonl").read_text(), printed.out, printed.err):
        assert SECRET not in text


def run_main(module: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(module).main(argv)


def test_every_command_lines_error_line_masks_a_key_it_quotes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    missing = str(tmp_path / f"{SECRET}.yaml")
    for module, argv in [
        ("imageedit_r1.pipeline.cli", ["--image", f"{SECRET}.png", "--request", "r", "--out", str(tmp_path / "o.png")]),
        ("imageedit_r1.eval.__main__", ["run", "--config", missing]),
        ("imageedit_r1.data.__main__", ["label", "--print-config", "--config", missing]),
        ("imageedit_r1.train.__main__", ["preflight", "verl", "--", "python", "-m", "verl.trainer.main_ppo", SECRET]),
        ("imageedit_r1.testing.__main__", ["config", "--models", str(tmp_path / SECRET)]),
    ]:
        assert run_main(module, argv) == 2, module
        err = capsys.readouterr().err
        assert err.startswith("error: ") and MASK in err and SECRET not in err, (module, err)
