"""The secret policy: every key a run can reach is masked by value, however it was named."""

from __future__ import annotations

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
