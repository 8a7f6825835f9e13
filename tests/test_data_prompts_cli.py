"""The decomposition and teacher prompts list the taxonomy; the data CLI end to end (no teacher)."""

from __future__ import annotations

import json
import re

import jinja2

from imageedit_r1.data.__main__ import main
from imageedit_r1.data.export import decomposition_prompt, easyr1_problem, iter_rows
from imageedit_r1.data.teacher import teacher_prompt
from imageedit_r1.prompts import template_path
from imageedit_r1.taxonomy import ACTIONS
from tests.data_fixtures import write_psr, write_realedit, write_ultraedit


def _listed_actions(text: str, heading: str) -> list[str]:
    after = text.split(heading, 1)[1].strip().splitlines()[0]
    return [label.strip() for label in after.rstrip(".").split(",")]


def test_decompose_prompt_lists_exactly_the_taxonomy_in_order():
    text = decomposition_prompt("recolor the coat")
    assert _listed_actions(text, "from this list of canonical edit actions:") == list(ACTIONS)


def test_teacher_prompt_lists_every_label_with_synonyms():
    text = teacher_prompt("Change the color of her coat to red")
    listed = re.findall(r"^- ([A-Z][\w ]+): ", text, flags=re.MULTILINE)
    assert listed == list(ACTIONS)
    assert "Edit request: Change the color of her coat to red" in text


def test_easyr1_renders_our_problem_into_the_same_prompt_verl_gets():
    # EasyR1: Template(format_prompt_file.strip()).render(content=problem), then split at "<image>".
    template = jinja2.Template(template_path("decompose").read_text(encoding="utf-8").strip())
    request = "Change the color of her coat and possibly hair to scarlet or copper red"
    rendered = template.render(content=easyr1_problem(request))
    assert rendered == decomposition_prompt(request)
    assert rendered.count("<image>") == 1
    assert easyr1_problem("look at <image> this") == "<image>look at  this"  # one slot per image, always


def test_cli_subsets_then_export_with_leakage_guard(tmp_path, capsys):
    write_psr(tmp_path / "psr", ["rgb", "l", "p"], pairings=2)
    write_realedit(tmp_path / "re", {"train": ["rgb", "rgba", "l"], "test": ["rgb", "p", "cmyk", "l"]})
    subsets = tmp_path / "subsets"
    code = main(["-q", "subsets", "--benchmark", "psr", "--source", f"psr:{tmp_path / 'psr'}",
                 "--size", "all", "--benchmark", "realedit", "--source", f"realedit:{tmp_path / 're'}@test", "--size", "2",
                 "--out", str(subsets)])
    assert code == 0
    assert len(json.loads((subsets / "psr.json").read_text())["ids"]) == 3
    assert len(json.loads((subsets / "realedit.json").read_text())["ids"]) == 2
    out = capsys.readouterr().out
    assert "psr: 3 of 3 requests (seed 0)" in out and "realedit: 2 of 4 requests" in out

    # Label the RL source (train) and, by mistake, the PSR eval requests too.
    from imageedit_r1.data import PSRLoader, RealEditLoader
    from tests.test_data_subsets_export import _label_file

    labels = _label_file(tmp_path / "labels.jsonl", list(RealEditLoader(tmp_path / "re", "train")) + list(PSRLoader(tmp_path / "psr")))
    common = ["-q", "export", "--source", f"realedit:{tmp_path / 're'}@train", "--source", f"psr:{tmp_path / 'psr'}",
              "--labels", str(labels), "--out", str(tmp_path / "rl"), "--subsets", str(subsets)]
    assert main(common) == 3
    err = capsys.readouterr().err
    assert "refusing to export: 3 RL samples overlap" in err and "psr/p000" in err
    assert not (tmp_path / "rl" / "verl" / "train.parquet").exists()

    assert main(common + ["--drop-eval-overlap", "--val-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "exported 3 samples: 3 train, 0 val" in out
    rows = list(iter_rows(tmp_path / "rl" / "verl" / "train.parquet"))
    assert sorted(r["extra_info"]["id"] for r in rows) == [f"realedit/train/train_000{i}.jpg" for i in range(3)]


def test_cli_repeated_ids_are_reported_and_every_benchmark_is_drawn(tmp_path, capsys):
    write_ultraedit(tmp_path / "ue", ["rgb"] * 6, shards=1, idx=[10, 11, 10, 12, 13, 14])
    write_realedit(tmp_path / "re", {"test": ["rgb", "l", "p"]}, repeats={"test": 2})
    subsets = tmp_path / "subsets"
    code = main(["-q", "subsets", "--benchmark", "ultraedit", "--source", f"ultraedit:{tmp_path / 'ue'}@FreeForm_0",
                 "--benchmark", "realedit", "--source", f"realedit:{tmp_path / 're'}@test", "--size", "all",
                 "--out", str(subsets)])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "ultraedit: 5 of 5 requests (seed 0)" in captured.out and "1 repeated ids" in captured.out
    assert "realedit: 3 of 3 requests" in captured.out and "3 repeated ids" in captured.out
    assert "ultraedit/FreeForm_0/10: rows 0, 2" in captured.err
    assert "realedit/test/test_0002.jpg: rows 4, 5" in captured.err
    assert json.loads((subsets / "ultraedit.json").read_text())["duplicates"] == {"ultraedit/FreeForm_0/10": [0, 2]}


def test_cli_export_without_subsets_is_a_clear_error(tmp_path, capsys):
    write_psr(tmp_path / "psr", ["rgb"], pairings=1)
    from imageedit_r1.data import PSRLoader
    from tests.test_data_subsets_export import _label_file

    labels = _label_file(tmp_path / "l.jsonl", list(PSRLoader(tmp_path / "psr")))
    assert main(["export", "--source", f"psr:{tmp_path / 'psr'}", "--labels", str(labels), "--out",
                 str(tmp_path / "o"), "--subsets", str(tmp_path / "missing")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: eval subsets not found at") and "leakage guard needs them" in line


def test_cli_inspect_and_missing_column_message(tmp_path, capsys):
    write_psr(tmp_path / "psr", ["rgb", "corrupt"], pairings=1)
    assert main(["inspect", "--source", f"psr:{tmp_path / 'psr'}"]) == 0
    captured = capsys.readouterr()
    assert "psr/p000\t40x24\t" in captured.out and "psr/p001: unreadable image" in captured.err
    assert main(["inspect", "--source", f"psr:{tmp_path / 'psr'}", "--column", "request=prompt"]) == 2
    assert "no column 'prompt' (needed for the request); columns present: [" in capsys.readouterr().err


def test_training_prompt_is_the_inference_prompt():
    """What the trainers see (our export) is what the decomposer sends at inference, image in the same place."""
    from PIL import Image

    from imageedit_r1.agents.decomposer import decomposition_messages

    image = Image.new("RGB", (8, 8))
    request = "Remove the <image> tag and add a hat"
    (message,) = decomposition_messages(image, request)
    text = "".join(part if isinstance(part, str) else "<image>" for part in message.parts())
    assert text == decomposition_prompt(request)


def test_cli_passes_over_malformed_exif_and_16_bit_rows(tmp_path, capsys):
    """One malformed EXIF tag used to end `inspect` (and label, subsets, export) at that row."""
    write_psr(tmp_path / "psr", ["bad_exif", "i16", "rgb"], pairings=1)
    assert main(["inspect", "--source", f"psr:{tmp_path / 'psr'}"]) == 0
    captured = capsys.readouterr()
    assert "psr/p000\t24x40\t" in captured.out  # read, and turned upright by its orientation tag
    assert "psr/p001\t40x24\t" in captured.out and "psr/p002\t40x24\t" in captured.out
    assert "unreadable" not in captured.err
