"""Every way into a config goes through ``imageedit_r1.config``: one unknown-key line everywhere,
before any work (the command lines are covered through their processes in test_cli_first_hour)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from imageedit_r1.config import ConfigError, load_config
from imageedit_r1.pipeline import ImageEditR1, PipelineConfig, load_pipeline_config

PACKAGE = Path(__file__).resolve().parents[1] / "imageedit_r1"
TYPO = "unknown config key 'on_decompose_failur' (did you mean 'on_decompose_failure'?)"


@pytest.mark.parametrize("config", [PipelineConfig(), {"mode": "multi-turn"}], ids=["dataclass", "mapping"])
def test_from_config_reports_a_typo_in_an_override_as_one_line(config):
    with pytest.raises(ConfigError) as caught:
        ImageEditR1.from_config(config, ["on_decompose_failur=keywords"])
    assert str(caught.value) == TYPO


def test_from_config_reports_a_typo_in_the_mapping_and_merges_a_good_one():
    with pytest.raises(ConfigError, match=r"^unknown config key 'editor\.optoins' \(did you mean 'editor\.options'\?\)$"):
        ImageEditR1.from_config({"editor": {"name": "flux-kontext", "optoins": {}}})
    pipe = ImageEditR1.from_config({"mode": "multi-turn", "editor": {"options": {"steps": 2}}}, ["seed=3"])
    assert (pipe.config.mode, pipe.config.seed, pipe.config.editor.options) == ("multi-turn", 3, {"steps": 2})
    with pytest.raises(ValueError, match="on_sequence_failure must be one of"):
        ImageEditR1.from_config(PipelineConfig(), ["on_sequence_failure=keywords"])  # checked, not just merged


def test_the_app_demo_config_stops_at_a_typo_before_building_any_model(tmp_path):
    from imageedit_r1.app.server import demo_config

    with pytest.raises(ConfigError) as caught:
        demo_config(tmp_path, ["on_decompose_failur=keywords"])
    assert str(caught.value) == TYPO
    assert list(tmp_path.iterdir()) == []  # no tiny model was built for a run that cannot start


def test_the_demo_config_is_the_pipeline_schema_with_its_overrides(tmp_path):
    from imageedit_r1.pipeline.demo import demo_pipeline_config

    config = demo_pipeline_config(tmp_path, ["mode=multi-turn", "editor.options.num_inference_steps=2"])
    assert isinstance(config, PipelineConfig) and config.mode == "multi-turn"
    assert config.editor.options["num_inference_steps"] == 2
    assert config.decomposer.model == str(tmp_path / "tiny-qwen25vl")


def test_an_eval_method_verify_section_with_a_typo_is_one_line():
    from imageedit_r1.eval.config import MethodConfig

    with pytest.raises(ConfigError, match=r"^verify: unknown config key 'thresold' \(did you mean 'threshold'\?\)$"):
        MethodConfig(name="m", kind="pipeline-verify", verify={"thresold": 7})
    method = MethodConfig(name="m", kind="pipeline-verify", verify={"threshold": 7, "judge": {"model": "j"}})
    assert method.verify.threshold == 7 and method.verify.judge.model == "j"


def test_unreadable_yaml_is_one_line_naming_the_file(tmp_path):
    from imageedit_r1.config import read_config_file
    from imageedit_r1.eval.config import load_eval_config

    path = tmp_path / "eval.yaml"
    path.write_text("methods: [\n  - name: a\n")
    with pytest.raises(ConfigError) as caught:
        load_eval_config(str(path))
    assert str(caught.value).startswith(f"{path}: cannot read the YAML: ") and "\n" not in str(caught.value)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="a config file holds a mapping of keys, got a list"):
        read_config_file(path)


def test_the_easyr1_preflight_reads_its_file_and_overrides_through_the_door(tmp_path):
    from imageedit_r1.train.preflight import PreflightError, load_easyr1_config

    config = tmp_path / "easyr1.yaml"
    config.write_text("data:\n  rollout_batch_size: 8\n  max_prompt_length: ${data.rollout_batch_size}\n")
    loaded = load_easyr1_config([f"config={config}", "data.rollout_batch_size=16"])
    assert loaded["data"] == {"rollout_batch_size": 16, "max_prompt_length": 16}
    with pytest.raises(PreflightError, match="config file not found"):
        load_easyr1_config([f"config={tmp_path / 'missing.yaml'}"])
    with pytest.raises(PreflightError, match="cannot parse the override"):
        load_easyr1_config(["data.rollout_batch_size=[1,"])


def test_configs_written_by_the_tools_load_back_through_the_door(tmp_path):
    from imageedit_r1.config import to_yaml
    from imageedit_r1.data.teacher import LabelConfig
    from imageedit_r1.testing.__main__ import offline_config

    labels = load_config(LabelConfig, overrides=["teacher.model=gpt-4.1"])
    path = tmp_path / "label.yaml"
    path.write_text(to_yaml(labels))
    assert load_config(LabelConfig, path) == labels
    path.write_text(offline_config(tmp_path / "models", 8765))
    assert load_pipeline_config(path).on_decompose_failure == "keywords"


def test_no_module_but_the_door_merges_or_loads_with_omegaconf():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "OmegaConf":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} OmegaConf.{node.attr}")
    assert found == [], "read configs through imageedit_r1.config (load_config / apply_overrides):\n" + "\n".join(found)


# ----------------------------------------------------------------------------- named list items, dotted dict keys


def test_judges_benchmarks_and_methods_are_overridden_by_name_or_position(tmp_path, capsys):
    from imageedit_r1.eval.__main__ import main as eval_main
    from imageedit_r1.eval.config import load_eval_config
    from tests.eval_fixtures import make_benchmark

    bench = make_benchmark(tmp_path, "Mine", 3)
    config = tmp_path / "eval.yaml"
    config.write_text(f"""
out_dir: {tmp_path / 'run'}
benchmarks: [{{name: Mine, source: manifest, manifest: {bench.manifest}}}]
methods: [{{name: orig, kind: original, editor: nano-banana}}]
judges: [{{name: Fake, backend: openai, model: fake-judge, base_url: "http://127.0.0.1:9/v1"}}]
""")
    by_name = ["judges.Fake.reasks=3", "benchmarks.Mine.limit=1", "methods.orig.seed=7"]
    loaded = load_eval_config(str(config), by_name)
    assert (loaded.judges[0].reasks, loaded.benchmarks[0].limit, loaded.methods[0].seed) == (3, 1, 7)
    assert loaded == load_eval_config(str(config), ["judges[0].reasks=3", "benchmarks.0.limit=1", "methods[0].seed=7"])
    assert eval_main(["run", "--config", str(config), "--estimate", *by_name]) == 0
    assert "error" not in capsys.readouterr().err

    assert eval_main(["run", "--config", str(config), "--estimate", "judges.Fak.reasks=3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: override 'judges.Fak.reasks=3': no judge named 'Fak' (did you mean 'Fake'?); "
        "write judges.NAME.KEY=VALUE")
    assert eval_main(["run", "--config", str(config), "--estimate", "benchmarks.Mine.limt=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown config key 'benchmarks.Mine.limt' (did you mean 'benchmarks.Mine.limit'?)")


def test_a_dict_key_with_dots_is_told_to_take_brackets(capsys):
    from imageedit_r1.data.__main__ import main as data_main

    assert data_main(["label", "--print-config", "prices.gpt-5.1.input_per_mtok=1.25"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown config key 'prices.gpt-5.1': names with dots need brackets: "
        "prices[gpt-5.1].input_per_mtok=1.25")
    assert data_main(["label", "--print-config", "prices[gpt-5.1].input_per_mtok=1.25"]) == 0
    assert "gpt-5.1:\n    input_per_mtok: 1.25" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        data_main(["label", "--help"])
    assert "'prices[gpt-5.1].input_per_mtok=1.25' (a model name with dots goes in brackets)" in " ".join(
        capsys.readouterr().out.split())


def test_a_name_the_config_lacks_in_a_selection_flag_is_one_line_exit_2(tmp_path, capsys):
    from imageedit_r1.eval.__main__ import main as eval_main

    config = tmp_path / "eval.yaml"
    config.write_text(f"""
out_dir: {tmp_path / 'run'}
benchmarks: [{{name: Mine, source: manifest, manifest: m.jsonl}}]
methods: [{{name: orig, kind: original, editor: nano-banana}}]
judges: [{{name: Fake, backend: openai, model: fake-judge, base_url: "http://127.0.0.1:9/v1"}}]
""")
    assert eval_main(["run", "--config", str(config), "--estimate", "--judges", "Fak"]) == 2
    assert capsys.readouterr().err == "error: --judges: no judge named 'Fak' (did you mean 'Fake'?); the config has ['Fake']\n"
    assert eval_main(["run", "--config", str(config), "--estimate", "--methods", "orig,r1"]) == 2
    assert capsys.readouterr().err.startswith("error: --methods: no method named 'r1'; the config has ['orig']")
    assert not (tmp_path / "run").exists()
