"""Reward curves from each trainer's real log formats, plotted to PNG (or the format the file name asks for)."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageStat

from imageedit_r1.train import curves
from imageedit_r1.train.__main__ import main

pytest.importorskip("matplotlib")

TRUTH = {"actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["scarlet or copper red"]}
GOOD = '<think>t</think><action>["Recoloring"]</action><subjects>["coat", "hair"]</subjects><goals>["scarlet or copper red"]</goals>'
HALF = '<think>t</think><action>["Recoloring"]</action><subjects>["coat"]</subjects><goals>["blue"]</goals>'


def _nest(flat: dict) -> dict:
    """EasyR1's file logger nests metric names on '/' before writing them."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def easyr1_log(path, steps=6):
    with open(path, "w") as f:
        f.write(json.dumps({"step": 0, **_nest({"val/reward_score": 0.2, "val/overall_reward": 0.2,
                                                "val/format_reward": 0.5, "val/goal_reward": 0.1,
                                                "val_response_length/mean": 80.0})}) + "\n")
        for step in range(1, steps + 1):
            flat = {f"reward/{c}": min(1.0, 0.1 * step + i * 0.05) for i, c in enumerate(curves.COMPONENTS)}
            flat.update({"actor/pg_loss": -0.1, "actor/kl_loss": 0.001, "timing_s/step": 30.0})
            f.write(json.dumps({"step": step, **_nest(flat)}) + "\n")
        f.write('{"step": 7, "reward": {"overall"')  # a run killed mid-write


def test_easyr1_file_logger_gives_train_and_val_series(tmp_path):
    log = tmp_path / "experiment_log.jsonl"
    easyr1_log(log)
    series = curves.load_metrics([log])
    assert list(series) == ["overall", "format", "action", "subject", "goal",
                            "val/overall", "val/format", "val/goal"]
    assert series["overall"].steps == [1, 2, 3, 4, 5, 6]
    assert series["goal"].values[0] == pytest.approx(0.3)
    # The checkpoint folder (where EasyR1 writes the log) works as well.
    assert curves.load_metrics([tmp_path])["overall"].points == series["overall"].points


def test_plot_writes_a_png_with_one_line_per_series(tmp_path):
    log = tmp_path / "experiment_log.jsonl"
    easyr1_log(log)
    out = tmp_path / "plots" / "curves.png"
    assert main(["curves", str(log), "--out", str(out), "--smooth", "2"]) == 0
    image = Image.open(out)
    image.load()
    assert out.stat().st_size > 10_000 and image.size[0] > 1000  # two panels side by side
    assert image.text["Series"].split(",") == ["overall", "format", "action", "subject", "goal",
                                               "val/overall", "val/format", "val/goal"]
    assert max(ImageStat.Stat(image.convert("L")).stddev) > 10  # not a blank canvas


@pytest.mark.parametrize(("name", "fmt"), [("curves.tif", "TIFF"), ("curves.jpg", "JPEG"), ("curves.webp", "WEBP")])
def test_the_figure_takes_the_format_its_extension_asks_for(tmp_path, name, fmt):
    log = tmp_path / "experiment_log.jsonl"
    easyr1_log(log)
    assert main(["curves", str(log), "--out", str(tmp_path / name)]) == 0
    with Image.open(tmp_path / name) as image:
        assert image.format == fmt and image.size[0] > 1000
    assert main(["curves", str(log), "--out", str(tmp_path / "curves.svg")]) == 0
    assert (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")


def test_an_extension_matplotlib_cannot_write_is_refused_before_any_log_is_read(tmp_path, capsys):
    assert main(["curves", str(tmp_path / "not-read.jsonl"), "--out", str(tmp_path / "curves.xyz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write curves.xyz: matplotlib writes ") and ".png" in err
    assert not list(tmp_path.iterdir())


def test_verl_file_logger_and_console_output(tmp_path):
    file_log = tmp_path / "metrics.jsonl"
    with open(file_log, "w") as f:
        for step in (1, 2, 3):
            data = {"critic/score/mean": 0.2 * step, "critic/score/max": 1.0, "actor/pg_loss": 0.0}
            if step == 3:
                data.update({"val-core/imageedit/reward/mean@1": 0.7, "val-aux/imageedit/goal/mean@1": 0.4,
                             "val-aux/imageedit/format/mean@1": 0.9, "val-aux/imageedit/format/std@1": 0.1})
            f.write(json.dumps({"step": step, "data": data}) + "\n")
    series = curves.load_metrics([file_log])
    assert series["overall"].values == pytest.approx([0.2, 0.4, 0.6])
    assert series["val/overall"].points == {3: 0.7} and series["val/goal"].points == {3: 0.4}

    console = tmp_path / "train.out"
    console.write_text(
        "INFO ray started\n"
        "(TaskRunner pid=4242) step:1 - critic/score/mean:0.25 - val-aux/imageedit/goal/mean@1:0.125"
        " - val-aux/imageedit/goal/mean@4:0.5 - timing_s/gen:3.5\n"
        "(TaskRunner pid=4242) step:2 - critic/score/mean:0.5 - actor/entropy:1.2\n"
    )
    series = curves.load_metrics([console])
    assert series["overall"].points == {1: 0.25, 2: 0.5}
    assert series["val/goal"].points == {1: 0.5}  # the largest @k is verl's headline number


def test_verl_rollout_dumps_are_rescored_into_components(tmp_path):
    from imageedit_r1.rewards import score

    rollouts = tmp_path / "rollouts"
    rollouts.mkdir()
    truth = json.dumps(TRUTH)
    for step, outputs in ((1, [HALF, "no tags"]), (2, [GOOD, HALF])):
        with open(rollouts / f"{step}.jsonl", "w") as f:
            for i, output in enumerate(outputs):
                f.write(json.dumps({"input": "user ...", "output": output, "gts": truth,
                                    "score": score(output, truth)["overall"], "step": step, "uid": f"u{i}"}) + "\n")
    series = curves.load_metrics([rollouts])
    assert set(series) == set(curves.COMPONENTS)
    for name in curves.COMPONENTS:
        expected = (score(GOOD, truth)[name] + score(HALF, truth)[name]) / 2
        assert series[name].points[2] == pytest.approx(expected)
    assert series["goal"].points[1] < series["goal"].points[2]
    assert set(curves.load_metrics([rollouts], rescore=False)) == {"overall"}


def test_unreadable_logs_fail_clearly(tmp_path, capsys):
    empty = tmp_path / "notes.txt"
    empty.write_text("nothing here\n")
    with pytest.raises(curves.MetricLogError, match="neither a JSONL metric log"):
        curves.load_metrics([empty])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 1, "reward": {"overall": 0.1}}\n{"reward": {"overall": 0.2}}\n')
    with pytest.raises(curves.MetricLogError, match="broken.jsonl:2: a metric record without 'step'"):
        curves.load_metrics([broken])
    assert main(["curves", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.png")]) == 2
    assert "log not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def _trl_record(step: int, prefix: str = "") -> dict:
    """One log_history entry as TRL's GRPOTrainer.log writes it (train keys bare, eval keys prefixed)."""
    components = {name: min(1.0, 0.1 * step + 0.05 * i) for i, name in enumerate(curves.COMPONENTS[1:])}
    record = {f"{prefix}rewards/{name}/mean": value for name, value in components.items()}
    record.update({f"{prefix}rewards/{name}/std": 0.1 for name in components})
    record.update({f"{prefix}reward": sum(components.values()) / 4, f"{prefix}reward_std": 0.2, f"{prefix}kl": 0.01,
                   f"{prefix}completions/mean_length": 90.0, "epoch": step / 10, "step": step})
    if not prefix:
        record.update({"loss": 0.01, "grad_norm": 0.5, "learning_rate": 1e-6})
    return record


def test_trl_trainer_state_metrics_file_and_output_folder(tmp_path, capsys):
    out = tmp_path / "run"
    history = [_trl_record(step) for step in (1, 2, 3, 4)] + [_trl_record(4, "eval_")]
    history.append({"train_runtime": 100.0, "train_loss": 0.01, "epoch": 0.4, "step": 4})  # the end-of-train record
    for step in (2, 4):
        (out / f"checkpoint-{step}").mkdir(parents=True)
        state = {"global_step": step, "log_history": [r for r in history if r["step"] <= step]}
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state, indent=2))

    series = curves.load_metrics([out])  # the newest checkpoint's state
    assert list(series) == ["overall", "format", "action", "subject", "goal", "val/overall", "val/format",
                            "val/action", "val/subject", "val/goal"]
    assert series["overall"].steps == [1, 2, 3, 4] and series["val/goal"].steps == [4]
    assert series["format"].points[3] == pytest.approx(0.3)
    assert series["overall"].points[4] == pytest.approx(history[3]["reward"])
    assert curves.load_metrics([out / "checkpoint-2" / "trainer_state.json"])["overall"].steps == [1, 2]

    # The launcher's metrics file (one JSON line per log) wins over checkpoints when the folder has one.
    with open(out / "metrics.jsonl", "w") as handle:
        for record in history[:3]:
            handle.write(json.dumps(record) + "\n")
    assert curves.load_metrics([out])["overall"].steps == [1, 2, 3]
    assert main(["curves", str(out), "--out", str(tmp_path / "c.png")]) == 0
    assert "goal: 3 points" in capsys.readouterr().out

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trainer_state.json").write_text('{"global_step": 3}')
    with pytest.raises(curves.MetricLogError, match="no log_history"):
        curves.load_metrics([tmp_path / "bad"])


def test_a_torn_metrics_line_costs_neither_the_next_record_nor_the_plot(tmp_path, capsys, caplog):
    from transformers import TrainerControl, TrainerState

    from imageedit_r1.train.trl_grpo import metrics_callback

    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"

    def train(steps):  # one trainer process: the launcher's metrics callback, as TRL calls it
        callback, control = metrics_callback(metrics), TrainerControl()
        state = TrainerState()
        callback.on_train_begin(None, state, control)
        for step in steps:
            state.global_step = step
            callback.on_log(None, state, control, logs=_trl_record(step))
        callback.on_train_end(None, state, control)

    train(range(1, 6))
    with open(metrics, "a") as handle:  # killed in the middle of writing step 6
        handle.write(json.dumps(_trl_record(6))[:40])
    train(range(6, 9))  # resumed from the step-5 checkpoint

    with caplog.at_level("WARNING", logger="imageedit_r1.store"):
        assert main(["curves", str(out), "--out", str(tmp_path / "c.png")]) == 0
    assert "overall: 8 points, steps 1..8" in capsys.readouterr().out  # the resumed step 6 is kept
    assert [r.getMessage() for r in caplog.records] == [
        f"{metrics}: skipped 1 unreadable line (line 6); the other records are kept"]
    assert curves.load_metrics([metrics])["goal"].points[6] == pytest.approx(_trl_record(6)["rewards/goal/mean"])


def test_a_second_training_on_the_same_metrics_file_stops_at_its_start(tmp_path):
    from transformers import TrainerControl, TrainerState

    from imageedit_r1.store import RunBusy
    from imageedit_r1.train.trl_grpo import metrics_callback
    from tests.store_fixtures import lock_held_elsewhere

    metrics = tmp_path / "run" / "metrics.jsonl"
    with lock_held_elsewhere(metrics, single_file=True) as pid:
        with pytest.raises(RunBusy, match=rf"metrics.jsonl is in use by another run \(pid {pid} on "):
            metrics_callback(metrics).on_train_begin(None, TrainerState(), TrainerControl())
    assert not metrics.exists()
