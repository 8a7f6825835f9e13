"""Evaluation of ImageEdit-R1 with the verify stage next to the plain pipeline: the runner, Table 1,
the estimate and the same-model warning, with the verifier's real openai client on a fake server."""

import json

import pytest
from PIL import Image

from imageedit_r1.eval import tables
from imageedit_r1.eval.config import MethodConfig, verifier_judge_overlaps
from imageedit_r1.eval.results import load_run
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.pipeline.verify import SEED_STRIDE
from imageedit_r1.store import read_jsonl
from imageedit_r1.testing import fake_servers as fakes
from tests.eval_fixtures import ScriptedJudge, config_for, make_benchmark
from tests.test_eval_integration import ScriptedBackend

pytest.importorskip("openai")


class SeedShadeEditor:
    """An editor whose output brightness is set by the seed: attempt k of the verify stage is brighter."""

    name = "seed-shade"
    model_id = "seed-shade-v1"
    seeds: list = []

    def __init__(self, **_):
        pass

    def edit(self, image, instruction, *, seed=None):
        SeedShadeEditor.seeds.append(seed)
        level = 60 + 60 * (seed // SEED_STRIDE)
        return Image.new("RGB", image.size, (level, level, level))


def brightness(image) -> int:
    return image.convert("L").getpixel((0, 0))


def verifier_reply(body):
    """Scores by brightness: 60 -> 5/10, 120 -> 7/10, 180 -> 9/10."""
    fulfillment = {60: 1, 120: 3, 180: 4}[brightness(fakes.openai_images(body)[1])]
    return json.dumps({"reasoning": "scripted", "fulfillment": fulfillment, "quality": 2, "preservation": 2,
                       "unmet": []})


def judge_reply(request, index, original, edited):
    level = brightness(edited)
    return json.dumps({"reasoning": "scripted", "fulfillment": min(4, level // 45), "quality": 2, "preservation": 2})


@pytest.fixture
def registered(monkeypatch):
    from imageedit_r1 import backends
    from imageedit_r1.agents import editors

    monkeypatch.setitem(editors.EDITORS, "seed-shade", "tests.test_eval_verify:SeedShadeEditor")
    backends.register_backend("scripted", ScriptedBackend)
    SeedShadeEditor.seeds = []
    yield


def methods(server, **verify):
    agent = {"backend": "scripted", "model": "scripted-vlm"}
    judge = {"backend": "openai", "model": "verifier-vlm", "base_url": server.url + "/v1", "retry": {"attempts": 1}}
    return [
        MethodConfig(name="orig", label="Original", group="Shade", kind="original", baseline=True, editor="seed-shade"),
        MethodConfig(name="r1", label="ImageEdit-R1", group="Shade", kind="pipeline", editor="seed-shade",
                     decomposer=agent),
        MethodConfig(name="r1-verify", label="ImageEdit-R1 + verify", group="Shade", kind="pipeline-verify",
                     editor="seed-shade", decomposer=agent,
                     verify={"judge": judge, "threshold": 10, "attempts": 3, "strategy": "seed", **verify}),
    ]


def test_table_1_shows_the_verified_method_next_to_the_plain_one(tmp_path, registered):
    with fakes.fake_openai_server(verifier_reply) as server:
        config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 2)], methods=methods(server))
        runner = EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model,
                                                                                               judge_reply))
        estimate = {row.what.split()[1]: row for row in runner.estimate()
                    if row.what.startswith(("edit", "verify"))}
        summary = runner.run()
        verifier_requests = len(server.requests)
    # --estimate counted the verifier: at most 3 attempts x 1 candidate for each of the 2 samples.
    verify_rows = [row for row in runner.estimate() if row.what.startswith("verify")]
    assert verify_rows[0].calls == 0  # nothing left to do after the run
    assert summary.edits["done"] == 6 and summary.judgments["scored"] == 6, summary.lines()
    assert verifier_requests == 6  # the verifier ran every attempt: the threshold (10) is never reached
    assert estimate["r1-verify"].calls == 6 and estimate["r1"].calls == 2
    edits = {(e["method"], e["sample_id"]): e for e in read_jsonl(tmp_path / "run" / "edits.jsonl")}
    verified = edits[("r1-verify", "A-0")]
    assert verified["trace"]["verify"]["result"]["attempt"] == 3
    assert brightness(Image.open(tmp_path / "run" / verified["edited_path"])) == 180
    assert brightness(Image.open(tmp_path / "run" / edits[("r1", "A-0")]["edited_path"])) == 60

    table = tables.build_table(load_run(tmp_path / "run"), n_boot=50)
    markdown = tables.to_markdown(table, ci=False)
    labels = [line.split("|")[2].strip() for line in markdown.splitlines() if line.startswith("| Shade")]
    assert labels == ["Original", "ImageEdit-R1", "ImageEdit-R1 + verify"]
    row_of = {row.label: row for row in table.rows}
    assert row_of["ImageEdit-R1 + verify"].average > row_of["ImageEdit-R1"].average


def test_the_estimate_counts_verifier_calls_and_tokens_before_any_work(tmp_path, registered):
    with fakes.fake_openai_server(verifier_reply) as server:
        config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 4)],
                            methods=methods(server, candidates=2, attempts=2, max_calls=7))
        rows = {row.what: row for row in EvalRunner(config, progress=False).estimate()}
        assert server.requests == []
    verify = next(row for what, row in rows.items() if what.startswith("verify r1-verify"))
    edit = next(row for what, row in rows.items() if what.startswith("edit   r1-verify"))
    assert verify.calls == 4 * 4 and edit.calls == 4 * 4  # 2 attempts x 2 candidates each (max_calls 7 allows 4)
    assert verify.prompt_tokens > verify.calls * 2 * 85  # two images a call
    assert verify.cost_usd is None  # no price for verifier-vlm in the config: shown as "no price"
    from imageedit_r1.costs import Price

    config.prices = {"verifier-vlm": Price(1.0, 2.0)}
    priced = next(r for r in EvalRunner(config, progress=False).estimate() if r.what.startswith("verify"))
    assert priced.cost_usd == pytest.approx((priced.prompt_tokens * 1.0 + priced.completion_tokens * 2.0) / 1e6)
    assert "verify r1-verify" in EvalRunner.format_estimate(list(rows.values()))


def test_a_verifier_that_is_also_a_judge_is_warned_about(tmp_path, registered, capsys):
    from imageedit_r1.endpoints import JudgeConfig
    from imageedit_r1.eval.__main__ import main

    bench = make_benchmark(tmp_path, "A", 1)
    method = MethodConfig(name="v", kind="pipeline-verify", editor="seed-shade",
                          verify={"judge": {"backend": "openai", "model": "gpt-4o"}})
    config = config_for(tmp_path, [bench], methods=[method],
                        judges=[JudgeConfig(name="GPT-4o", backend="openai", model="gpt-4o-2024-08-06"),
                                JudgeConfig(name="Gemini", backend="gemini", model="gemini-2.5-flash")])
    warnings = verifier_judge_overlaps(config)
    assert len(warnings) == 1 and "'GPT-4o'" in warnings[0] and "biased" in warnings[0]
    config.judges = config.judges[1:]
    assert verifier_judge_overlaps(config) == []

    path = tmp_path / "eval.yaml"
    path.write_text(f"""
out_dir: {tmp_path / 'cli-run'}
benchmarks: [{{name: A, source: manifest, manifest: {bench.manifest}}}]
methods:
  - {{name: v, kind: pipeline-verify, editor: seed-shade, verify: {{judge: {{backend: openai, model: gpt-4o}}}}}}
judges: [{{name: GPT-4o, backend: openai, model: gpt-4o-2024-08-06}}]
""")
    assert main(["run", "--config", str(path), "--estimate", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "warning: method 'v' verifies with gpt-4o" in captured.err
    assert "verify v (gpt-4o, at most)" in captured.out


def test_bad_verify_settings_in_a_method_fail_before_any_work(tmp_path):
    bench = make_benchmark(tmp_path, "A", 1)
    config = config_for(tmp_path, [bench], methods=[MethodConfig(name="v", kind="pipeline-verify",
                                                                  verify={"strategy": "twice"})])
    with pytest.raises(ValueError, match="verify.strategy"):
        config.validate()
    with pytest.raises(Exception, match="atempts"):
        MethodConfig(name="v", kind="pipeline-verify", verify={"atempts": 2})
    for method, message in ((MethodConfig(name="p", kind="pipeline", verify={"attempts": 2}),
                             "need kind 'pipeline-verify'"),
                            (MethodConfig(name="v", kind="pipeline-verify"), "needs a 'verify' section")):
        with pytest.raises(ValueError, match=message):
            config_for(tmp_path, [bench], methods=[method]).validate()
    # The verify settings change the edited pixels, so they are part of the method's hash.
    two, three = (MethodConfig(kind="pipeline-verify", verify={"attempts": n}) for n in (2, 3))
    assert two.config_hash() != three.config_hash()
    assert MethodConfig(kind="pipeline").config_hash() != MethodConfig(kind="pipeline-verify", verify={}).config_hash()


def test_run_with_a_verified_method_and_a_judge_checks_keys_before_any_work(tmp_path, registered, capsys,
                                                                             monkeypatch):
    """The estimate has a verifier row between the methods' and the judges' rows: the checks before
    work still find each judge's pending calls (a judge without its key stops the run, cleanly)."""
    from imageedit_r1.eval.__main__ import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    bench = make_benchmark(tmp_path, "A", 1)
    path = tmp_path / "eval.yaml"
    path.write_text(f"""
out_dir: {tmp_path / 'cli-run'}
benchmarks: [{{name: A, source: manifest, manifest: {bench.manifest}}}]
methods:
  - {{name: v, kind: pipeline-verify, editor: seed-shade, decomposer: {{backend: scripted, model: s}},
     verify: {{judge: {{backend: openai, model: local-vlm, base_url: "http://127.0.0.1:9/v1"}}}}}}
judges: [{{name: GPT-4o, backend: openai, model: gpt-4o-2024-08-06}}]
""")
    assert main(["run", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "judge 'GPT-4o': no API key: set the environment variable OPENAI_API_KEY" in err, err
    assert "zip()" not in err and not (tmp_path / "cli-run" / "edits.jsonl").exists()


def test_the_verifier_judge_warning_is_printed_once_by_the_command(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    bench = make_benchmark(tmp_path, "A", 1)
    path = tmp_path / "eval.yaml"
    path.write_text(f"""
out_dir: {tmp_path / 'cli-run'}
benchmarks: [{{name: A, source: manifest, manifest: {bench.manifest}}}]
methods:
  - {{name: v, kind: pipeline-verify, editor: flux-kontext, verify: {{judge: {{backend: openai, model: gpt-4o}}}}}}
judges: [{{name: GPT-4o, backend: openai, model: gpt-4o-2024-08-06}}]
""")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "imageedit_r1.eval", "run", "--config", str(path), "--estimate",
                           "--no-progress"], capture_output=True, text=True, cwd=root, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("verifies with gpt-4o") == 1, done.stderr
    assert done.stderr.startswith("warning: method 'v' verifies with gpt-4o")


def test_a_methods_results_survive_changes_to_how_its_endpoints_are_reached():
    """Timeouts, retries, key variables and concurrency never change the pixels: changing them keeps
    a method's results (its identity); changing the model does not."""
    base = MethodConfig(kind="pipeline-verify", verify={})
    reached = MethodConfig(
        kind="pipeline-verify",
        decomposer={"timeout": 5.0, "retry": {"attempts": 9}, "api_key_env": "MY_KEY",
                    "options": {"max_concurrency": 3}},
        editor={"options": {"retry": {"attempts": 2}, "timeout": 30}},
        verify={"judge": {"timeout": 7.0, "requests_per_minute": 10}},
    )
    assert reached.config_hash() == base.config_hash()
    other_model = MethodConfig(kind="pipeline-verify", verify={}, decomposer={"model": "other/model"})
    assert other_model.config_hash() != base.config_hash()
