"""Configs in the old endpoint spelling load as the new one, with one deprecation line per load."""

import pytest

from imageedit_r1.config import load_config
from imageedit_r1.data.teacher import LabelConfig
from imageedit_r1.eval.config import load_eval_config
from imageedit_r1.pipeline.config import load_pipeline_config

OLD_EVAL = """
out_dir: runs/old
benchmarks: [{name: A, source: manifest, manifest: m.jsonl}]
methods:
  - {name: r1, kind: pipeline, editor: flux-kontext,
     decomposer: {backend: openai, model: served, base_url: "http://127.0.0.1:9/v1", retry_attempts: 2}}
  - name: r1-verify
    kind: pipeline-verify
    editor: flux-kontext
    verify:
      judge: {backend: openai, model: judge-vlm, base_url: "http://127.0.0.1:9/v1", retry_attempts: 1}
      structured: false
      max_image_side: 512
      invalid_reply_attempts: 3
      prices: {input: 1.5, output: 2.5}
judges:
  - {name: Open, backend: openai-compatible, model: open-vlm, base_url: "http://127.0.0.1:9/v1", attempts: 2,
     retry_base_delay: 0.5, retry_max_delay: 5, invalid_reply_attempts: 1, structured: false}
  - {name: GPT-4o, backend: openai, model: gpt-4o-2024-08-06}
prices:
  gpt-4o-2024-08-06: {input: 2.5, output: 10}
"""

NEW_EVAL = """
out_dir: runs/old
benchmarks: [{name: A, source: manifest, manifest: m.jsonl}]
methods:
  - {name: r1, kind: pipeline, editor: flux-kontext,
     decomposer: {backend: openai, model: served, base_url: "http://127.0.0.1:9/v1", retry: {attempts: 2}}}
  - name: r1-verify
    kind: pipeline-verify
    editor: flux-kontext
    verify:
      judge: {backend: openai, model: judge-vlm, base_url: "http://127.0.0.1:9/v1", retry: {attempts: 1},
              structured: false, max_image_side: 512, reasks: 2}
      prices: {input_per_mtok: 1.5, output_per_mtok: 2.5}
judges:
  - {name: Open, backend: openai, model: open-vlm, base_url: "http://127.0.0.1:9/v1",
     retry: {attempts: 2, base_delay: 0.5, max_delay: 5}, reasks: 0, structured: false}
  - {name: GPT-4o, backend: openai, model: gpt-4o-2024-08-06}
prices:
  gpt-4o-2024-08-06: {input_per_mtok: 2.5, output_per_mtok: 10}
"""


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "deprecated" in line]


def test_an_eval_config_in_the_old_spelling_loads_the_same_values_with_one_deprecation_line(tmp_path, capsys):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_EVAL)
    new.write_text(NEW_EVAL)
    overrides_old = ["judges[1].retry_max_delay=7", "judges.1.invalid_reply_attempts=4",
                     "methods.r1.decomposer.retry_attempts=3", "methods.r1-verify.verify.invalid_reply_attempts=2"]
    overrides_new = ["judges[1].retry.max_delay=7", "judges.1.reasks=3",
                     "methods.r1.decomposer.retry.attempts=3", "methods.r1-verify.verify.judge.reasks=1"]
    assert load_eval_config(str(old), overrides_old) == load_eval_config(str(new), overrides_new)
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 1, lines  # the new spelling printed nothing; the old one, one line
    line = lines[0]
    for old_key, new_key in [("judges[0].attempts", "judges[0].retry.attempts"),
                             ("judges[0].invalid_reply_attempts", "judges[0].reasks"),
                             ("judges[0].backend=openai-compatible", "judges[0].backend=openai"),
                             ("methods[1].verify.structured", "methods[1].verify.judge.structured"),
                             ("methods[1].verify.prices.input", "methods[1].verify.prices.input_per_mtok"),
                             ("prices[gpt-4o-2024-08-06].output", "prices[gpt-4o-2024-08-06].output_per_mtok"),
                             ("judges.1.invalid_reply_attempts", "judges.1.reasks"),
                             ("methods.r1.decomposer.retry_attempts", "methods.r1.decomposer.retry.attempts")]:
        assert f"{old_key} -> {new_key}" in line, (old_key, line)
    config = load_eval_config(str(old), overrides_old)
    judge = config.judges[0]
    assert (judge.backend, judge.retry.attempts, judge.retry.base_delay, judge.reasks) == ("openai", 2, 0.5, 0)
    assert config.methods[1].verify.judge.reasks == 1  # two asks in all, as the override said


def test_label_and_pipeline_configs_in_the_old_spelling(tmp_path, capsys):
    old = tmp_path / "label.yaml"
    old.write_text("teacher: {model: gpt-4o-mini, attempts: 2, base_delay: 0.1, max_delay: 1, invalid_retries: 2}\n"
                   "prices: {gpt-4o-mini: {input: 0.15, output: 0.6}}\n")
    new = tmp_path / "label-new.yaml"
    new.write_text("teacher: {model: gpt-4o-mini, retry: {attempts: 2, base_delay: 0.1, max_delay: 1}, reasks: 2}\n"
                   "prices: {gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}}\n")
    loaded = load_config(LabelConfig, old, ["prices[gpt-5.1].input=1.25", "teacher.invalid_retries=3"])
    assert loaded == load_config(LabelConfig, new, ["prices[gpt-5.1].input_per_mtok=1.25", "teacher.reasks=3"])
    assert loaded.teacher.reasks == 3 and loaded.prices["gpt-5.1"].input_per_mtok == 1.25
    assert len(warnings(capsys.readouterr().err)) == 1

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("decomposer: {backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', retry_attempts: 1}\n"
                        "verify: {judge: {backend: openai, model: j}, invalid_reply_attempts: 1}\n")
    config = load_pipeline_config(pipeline, ["verify.max_image_side=256"])
    assert config.decomposer.retry.attempts == 1 and config.verify.judge.reasks == 0
    assert config.verify.judge.max_image_side == 256
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "verify.max_image_side -> verify.judge.max_image_side" in lines[0]


def test_the_data_command_reads_old_overrides_and_says_so_once(capsys):
    from imageedit_r1.data.__main__ import main

    assert main(["label", "--print-config", "teacher.invalid_retries=3", "teacher.attempts=2"]) == 0
    captured = capsys.readouterr()
    assert "reasks: 3" in captured.out and "attempts: 2" in captured.out and "invalid_retries" not in captured.out
    lines = warnings(captured.err)
    assert len(lines) == 1 and "teacher.invalid_retries -> teacher.reasks" in lines[0]


def test_an_old_key_beside_its_new_spelling_is_a_clear_error(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("teacher: {attempts: 2, retry: {attempts: 3}}\n")
    with pytest.raises(ValueError, match="both 'attempts' and its new spelling 'retry.attempts'"):
        load_config(LabelConfig, path)
