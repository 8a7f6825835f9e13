"""Evaluation reads only its own files: a report embeds, and a judge is sent, only images inside
the run folder, whatever path a record names; a precomputed method's sample id names a file
inside its images_dir, never a path out of it."""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from imageedit_r1.eval.config import JudgeConfig, MethodConfig
from imageedit_r1.eval.methods import build_edit_fn
from imageedit_r1.eval.report import _thumbnail, render_report
from imageedit_r1.eval.results import load_run
from imageedit_r1.eval.runner import EvalRunner
from tests.eval_fixtures import ScriptedJudge, config_for, judge_reply_json, make_benchmark
from tests.test_eval_tables import _run

SECRET = (1, 2, 3)


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (64, 64), SECRET).save(path)
    return path


def _point_records_at(run_dir, names, keys=("original_path", "edited_path")):
    edits = run_dir / "edits.jsonl"
    records = [json.loads(line) for line in edits.read_text().splitlines() if line.strip()]
    for index, record in enumerate(records):
        for shift, key in enumerate(keys):
            record[key] = names[(index + shift) % len(names)]
    edits.write_text("".join(json.dumps(record) + "\n" for record in records))
    return records


def test_the_report_embeds_no_file_outside_the_run_folder(tmp_path, secret):
    run = _run(tmp_path)
    (run.run_dir / "inside-link.png").symlink_to(secret)  # a link inside the run that leads out
    _point_records_at(run.run_dir, [str(secret), "../secret.png", "inside-link.png", "edits/../../secret.png"])
    html = render_report(load_run(run.run_dir), max_items=5, n_boot=50)
    assert _thumbnail(secret, 256)[-200:] not in html
    assert "data:image/jpeg" not in html  # every record pointed out: nothing is embedded
    assert "missing" in html


def test_the_judge_is_sent_no_file_outside_the_run_folder(tmp_path, secret):
    benchmarks = [make_benchmark(tmp_path, "A", 4)]
    EvalRunner(config_for(tmp_path, benchmarks), judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model),
               progress=False).run()
    _point_records_at(tmp_path / "run", [str(secret), "../secret.png"], keys=("original_path",))
    seen = []

    def reply(request, index, original, edited):
        seen.extend([original.getpixel((0, 0)), edited.getpixel((0, 0))])
        return judge_reply_json(request, 0)

    # A second judge joins the run: it needs every edit, and reads the files the records name.
    config = config_for(tmp_path, benchmarks, judges=[JudgeConfig(name="J1", backend="openai", model="judge-model-1"),
                                                      JudgeConfig(name="J2", backend="openai", model="judge-model-2")])
    EvalRunner(config, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model, reply), progress=False).run()
    assert SECRET not in seen
    failed = [record for record in load_run(tmp_path / "run").results if record["judge"] == "J2"]
    assert failed and all(record["status"] != "scored" for record in failed)
    assert all("is not a file inside the run folder" in record["error"] for record in failed)


def test_a_precomputed_sample_id_never_leaves_images_dir(tmp_path, secret):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(images / "p1.png")
    edit = build_edit_fn(MethodConfig(name="closed", kind="precomputed", images_dir=str(images)))
    assert edit(SimpleNamespace(id="p1"), None).image.getpixel((0, 0)) == (200, 0, 0)
    for sample_id in ("../secret", str(secret.with_suffix("")), "images/../../secret", ".."):
        with pytest.raises(FileNotFoundError, match="no edited image for sample"):
            edit(SimpleNamespace(id=sample_id), None)
    # An id that is no plain file name is found by its safe name, inside the folder.
    from imageedit_r1.eval.benchmark_samples import safe_name

    Image.new("RGB", (8, 8), (0, 200, 0)).save(images / f"{safe_name('../secret')}.png")
    assert edit(SimpleNamespace(id="../secret"), None).image.getpixel((0, 0)) == (0, 200, 0)
