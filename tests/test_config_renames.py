"""Configs in the old endpoint spelling load as the new one, with one deprecation line for the file
and one for the overrides."""

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


def test_an_eval_config_in_the_old_spelling_loads_the_same_values_with_a_line_for_the_file_and_the_overrides(
        tmp_path, capsys):
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD_EVAL)
    new.write_text(NEW_EVAL)
    overrides_old = ["judges[1].retry_max_delay=7", "judges.1.invalid_reply_attempts=4",
                     "methods.r1.decomposer.retry_attempts=3", "methods.r1-verify.verify.invalid_reply_attempts=2"]
    overrides_new = ["judges[1].retry.max_delay=7", "judges.1.reasks=3",
                     "methods.r1.decomposer.retry.attempts=3", "methods.r1-verify.verify.judge.reasks=1"]
    assert load_eval_config(str(old), overrides_old) == load_eval_config(str(new), overrides_new)
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 2, lines  # the new spelling printed nothing; the old one, a line per source
    in_file, in_overrides = lines
    assert in_file.startswith(f"warning: {old}: deprecated config spelling")
    assert in_overrides.startswith("warning: deprecated spelling in the overrides")
    for old_key, new_key in [("judges[0].attempts", "judges[0].retry.attempts"),
                             ("judges[0].invalid_reply_attempts", "judges[0].reasks"),
                             ("judges[0].backend=openai-compatible", "judges[0].backend=openai"),
                             ("methods[1].verify.structured", "methods[1].verify.judge.structured"),
                             ("methods[1].verify.prices.input", "methods[1].verify.prices.input_per_mtok"),
                             ("prices[gpt-4o-2024-08-06].output", "prices[gpt-4o-2024-08-06].output_per_mtok")]:
        assert f"{old_key} -> {new_key}" in in_file and old_key not in in_overrides, (old_key, lines)
    for old_key, new_key in [("judges.1.invalid_reply_attempts", "judges.1.reasks"),
                             ("methods.r1.decomposer.retry_attempts", "methods.r1.decomposer.retry.attempts")]:
        assert f"{old_key} -> {new_key}" in in_overrides and old_key not in in_file, (old_key, lines)
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
    assert len(warnings(capsys.readouterr().err)) == 2  # the file's, the overrides'

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("decomposer: {backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1', retry_attempts: 1}\n"
                        "verify: {judge: {backend: openai, model: j}, invalid_reply_attempts: 1}\n")
    config = load_pipeline_config(pipeline, ["verify.max_image_side=256"])
    assert config.decomposer.retry.attempts == 1 and config.verify.judge.reasks == 0
    assert config.verify.judge.max_image_side == 256
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 2 and "verify.max_image_side -> verify.judge.max_image_side" in lines[1]


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


# ----------------------------------------------------------------------------- through the command lines


def pipeline_cli(*argv: str) -> int:
    from imageedit_r1.pipeline.cli import main as pipeline_main

    return pipeline_main(list(argv))


@pytest.fixture()
def photo(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 30, 30)).save(tmp_path / "photo.png")
    return str(tmp_path / "photo.png")


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


EVAL_JUDGES = """
out_dir: {out}
benchmarks: [{{name: A, source: manifest, manifest: m.jsonl}}]
methods: [{{name: orig, kind: original, editor: nano-banana}}]
judges:
  - {{name: Fake, backend: openai, model: fake-judge, base_url: "http://127.0.0.1:9/v1"}}
  - {judge}
"""


def eval_cli(tmp_path, judge: str, *overrides: str) -> int:
    from imageedit_r1.eval.__main__ import main as eval_main

    config = tmp_path / "eval.yaml"
    config.write_text(EVAL_JUDGES.format(out=tmp_path / "run", judge=judge))
    return eval_main(["run", "--config", str(config), "--estimate", *overrides])


def test_an_old_openai_compatible_backend_without_base_url_is_an_error_for_every_role(tmp_path, photo, capsys):
    # Read as backend openai, it would send the user's images to OpenAI with their key.
    config = tmp_path / "p.yaml"
    config.write_text("decomposer: {backend: openai-compatible, model: served}\n")
    assert pipeline_cli("--config", str(config), "--image", photo, "--request", "r", "--dry-run") == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: {config}: decomposer.backend=openai-compatible is the old spelling of decomposer.backend=openai "
        "with decomposer.base_url set, and decomposer.base_url is not set: set decomposer.base_url, or write "
        "decomposer.backend=openai"]
    assert pipeline_cli("--image", photo, "--request", "r", "--dry-run", "--mode", "original",
                        "--verify", "openai:j", "verify.judge.backend=openai-compatible") == 2
    assert "verify.judge.base_url is not set" in capsys.readouterr().err

    assert eval_cli(tmp_path, "{name: Old, backend: openai-compatible, model: old-judge}") == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "judges[1].backend=openai-compatible" in line and "judges[1].base_url is not set" in line
    assert eval_cli(tmp_path, "{name: Old, backend: gemini, model: g}", "judges.Fake.base_url=",
                    "judges.Fake.backend=openai-compatible") == 2
    assert "judges.Fake.base_url is not set" in capsys.readouterr().err

    from imageedit_r1.data.__main__ import main as data_main

    assert data_main(["label", "--print-config", "teacher.backend=openai-compatible"]) == 2
    assert "teacher.base_url is not set" in capsys.readouterr().err
    # With its base_url, in the file or in an override, the old spelling still reads as backend openai.
    assert pipeline_cli("--config", str(config), "--image", photo, "--request", "r", "--dry-run", "--mode", "original",
                        "decomposer.base_url=http://127.0.0.1:9/v1") == 0
    assert not error_lines(capsys.readouterr().err)


def test_a_converted_old_key_with_a_bad_value_names_the_key_the_user_wrote(tmp_path, photo, capsys):
    assert pipeline_cli("--image", photo, "--request", "r", "--dry-run", "verify.invalid_reply_attempts=0") == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: bad value for config key 'verify.invalid_reply_attempts': 0 (it counts the asks in all, the first "
        "included: at least 1)"]
    assert eval_cli(tmp_path, "{name: Old, backend: openai, model: o, invalid_reply_attempts: 0}") == 2
    assert "bad value for config key 'judges[1].invalid_reply_attempts': 0" in capsys.readouterr().err
    assert eval_cli(tmp_path, "{name: Old, backend: openai, model: o}", "judges.Old.reasks=-1") == 2
    assert "judge 'Old': judges[1].reasks must be >= 0" in capsys.readouterr().err


def test_an_unknown_key_suggests_the_new_spelling_of_an_old_key(tmp_path, photo, capsys):
    for override in ("decomposer.retry_atempts=2", "decomposer.attempts=3"):
        assert pipeline_cli("--image", photo, "--request", "r", "--dry-run", override) == 2
        key = override.partition("=")[0]
        assert error_lines(capsys.readouterr().err) == [
            f"error: unknown config key {key!r} (did you mean 'decomposer.retry.attempts'?)"]
    assert eval_cli(tmp_path, "{name: Old, backend: openai, model: o}", "judges[0].atempts=2") == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: unknown config key 'judges[0].atempts' (did you mean 'judges[0].retry.attempts'?)"]


def test_the_deprecation_lines_say_which_old_spellings_are_the_files_and_which_the_overrides(tmp_path, photo,
                                                                                           capsys):
    config = tmp_path / "echo.yaml"
    config.write_text("verify: {judge: {backend: openai, model: j, base_url: 'http://127.0.0.1:9/v1'}, "
                      "structured: false}\n")
    assert pipeline_cli("--config", str(config), "--image", photo, "--request", "r", "--dry-run", "--mode", "original",
                        "verify.judge.attempts=2") == 0
    lines = warnings(capsys.readouterr().err)
    assert lines == [
        f"warning: {config}: deprecated config spelling, read as the new one (update the config): "
        "verify.structured -> verify.judge.structured",
        "warning: deprecated spelling in the overrides, read as the new one: "
        "verify.judge.attempts -> verify.judge.retry.attempts"]
