"""Table 1, the per-criterion breakdown, human alignment and the HTML report, from a real run dir."""

import csv
import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from imageedit_r1.eval import alignment, tables
from imageedit_r1.eval.config import JudgeConfig
from imageedit_r1.eval.report import render_report
from imageedit_r1.eval.results import load_run
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.eval.stats import bootstrap_ci, pearson, rankdata, spearman
from imageedit_r1.retry import RetriesExhausted
from tests.eval_fixtures import ScriptedJudge, config_for, expected_scores, make_benchmark, seed_of


def _run(tmp_path, fail_request=None):
    config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 6), make_benchmark(tmp_path, "B", 4)], judges=[
        JudgeConfig(name="J1", backend="openai", model="m1"), JudgeConfig(name="J2", backend="gemini", model="m2")])

    def reply(request, index, original, edited):
        if fail_request and fail_request in request:
            return RetriesExhausted(3, RuntimeError("HTTP 500"))
        f, q, p = expected_scores(request, seed_of(original, edited))
        return json.dumps({"fulfillment": f, "quality": q, "preservation": p, "reasoning": "r <b>"})

    judges = {}

    def factory(cfg):
        return judges.setdefault(cfg.name, ScriptedJudge(cfg.name, cfg.model, reply))

    EvalRunner(config, judge_factory=factory, progress=False).run()
    return load_run(tmp_path / "run")


def _expected_cell(method_seed, bench, n):
    return np.mean([sum(expected_scores(f"[{bench}-{i}] make it brighter and add a hat", method_seed))
                    for i in range(n)])


def test_table1_cells_average_and_delta(tmp_path):
    run = _run(tmp_path)
    table = tables.build_table(run, n_boot=200)
    assert table.columns == [("A", "J1"), ("A", "J2"), ("B", "J1"), ("B", "J2")]
    base, r1 = table.rows
    for row, seed in ((base, 0), (r1, 1)):
        for (bench, _judge), cell in row.cells.items():
            assert cell.mean == pytest.approx(_expected_cell(seed, bench, 6 if bench == "A" else 4))
            assert cell.low <= cell.mean <= cell.high
            assert cell.failed == 0 and cell.missing == 0
        # The paper's Average: the mean of the cells, not of the items.
        assert row.average == pytest.approx(np.mean([c.mean for c in row.cells.values()]))
    assert base.delta is None
    assert r1.delta == pytest.approx(r1.average - base.average)
    assert r1.delta_ci[0] <= r1.delta <= r1.delta_ci[1]

    markdown = tables.to_markdown(table)
    assert "| Tint | Original |" in markdown and "A · J1" in markdown and "Δ vs Original" in markdown
    assert f"{r1.delta:+.2f}" in markdown
    rows = list(csv.DictReader(io.StringIO(tables.to_csv(table))))
    average = [r for r in rows if r["benchmark"] == "Average" and r["method"] == "r1"][0]
    assert float(average["mean"]) == pytest.approx(r1.average, abs=1e-4)
    assert float(average["delta_vs_baseline"]) == pytest.approx(r1.delta, abs=1e-4)
    assert len(rows) == 2 * (4 + 1)


def test_failures_are_counted_not_averaged(tmp_path):
    run = _run(tmp_path, fail_request="[A-0]")
    table = tables.build_table(run, n_boot=50)
    base = table.rows[0]
    cell = base.cells[("A", "J1")]
    assert cell.failed == 1 and len(cell.values) == 5
    assert cell.mean == pytest.approx(np.mean([sum(expected_scores(f"[A-{i}] make it brighter and add a hat", 0))
                                               for i in range(1, 6)]))
    assert base.failed == 2  # A-0 by each of the two judges
    base_line = [line for line in tables.to_markdown(table).splitlines() if "| Original |" in line][0]
    assert base_line.endswith("| 2 | 0 | 0 |")  # Failed, Refused, Missing


def test_criteria_breakdown(tmp_path):
    run = _run(tmp_path)
    rows = tables.criteria_breakdown(run)
    assert len(rows) == 4  # 2 methods x 2 judges
    first = rows[0]
    fulfil = [np.mean([expected_scores(f"[{b}-{i}] make it brighter and add a hat", 0)[0] for i in range(n)])
              for b, n in (("A", 6), ("B", 4))]
    assert first["fulfillment"] == pytest.approx(np.mean(fulfil))
    assert first["total"] == pytest.approx(first["fulfillment"] + first["quality"] + first["preservation"])
    assert "Fulfillment (0–4)" in tables.breakdown_markdown(rows)


def test_stale_records_are_left_out(tmp_path):
    _run(tmp_path)
    manifest_path = tmp_path / "run" / "run.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["judges"][1]["model"] = "m2-newer"  # the judge model changed since those scores
    manifest_path.write_text(json.dumps(manifest))
    run = load_run(tmp_path / "run")
    assert {r["judge"] for r in run.results} == {"J1"}


def test_stats_match_reference_definitions():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, 40).astype(float)
    y = x + rng.normal(0, 1.5, 40)
    assert pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0])
    assert list(rankdata([3, 1, 3, 2])) == [3.5, 1.0, 3.5, 2.0]
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    low, high = bootstrap_ci([5.0] * 10)
    assert low == high == 5.0


def _human_csv(tmp_path, run, noise=0.0):
    lines = ["benchmark,sample_id,method,annotator,fulfillment,quality,preservation"]
    rng = np.random.default_rng(0)
    for record in run.scored():
        if record["judge"] != "J1":
            continue
        for annotator in ("a", "b"):
            jitter = rng.choice([-1, 0, 1]) if noise else 0
            f = min(4, max(0, record["fulfillment"] + jitter))
            lines.append(f"{record['benchmark']},{record['sample_id']},{record['method']},{annotator},{f},"
                         f"{record['quality']},{record['preservation']}")
    path = tmp_path / "human.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_alignment_means_and_correlations(tmp_path):
    run = _run(tmp_path)
    results, unmatched = alignment.align(run, _human_csv(tmp_path, run), judges=["J1"])
    assert unmatched == 0
    (j1,) = results
    assert j1.n == 20
    for criterion in ("fulfillment", "quality", "preservation", "total"):
        assert j1.pearson[criterion] == pytest.approx(1.0)
        assert j1.spearman[criterion] == pytest.approx(1.0)
        assert j1.human_means[criterion] == pytest.approx(j1.judge_means[criterion])
    text = alignment.to_markdown(results)
    assert "Pearson r" in text and "Spearman ρ" in text and "Fulfillment (0–4)" in text

    noisy, _ = alignment.align(run, _human_csv(tmp_path, run, noise=1.0))
    assert [a.judge for a in noisy] == ["J1", "J2", "all judges (mean)"]
    assert noisy[0].pearson["fulfillment"] < 1.0
    assert noisy[0].pearson["quality"] == pytest.approx(1.0)


def test_alignment_rejects_bad_human_files(tmp_path):
    run = _run(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,fulfillment,quality\nA-0,3,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        alignment.align(run, bad)
    bad.write_text("sample_id,fulfillment,quality,preservation\nA-0,5,2,2\n")
    with pytest.raises(ValueError, match="outside 0-4"):
        alignment.align(run, bad)
    bad.write_text("benchmark,sample_id,fulfillment,quality,preservation\nA,A-0,3,2,2\n")
    with pytest.raises(ValueError, match="add a 'method' column"):
        alignment.align(run, bad)


def test_report_is_self_contained_and_escapes_text(tmp_path):
    run = _run(tmp_path)
    html = render_report(run, max_items=5, n_boot=50)
    assert html.count('<div class="item">') == 5
    # Thumbnails: original + 2 methods per item; plots: 2.
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) == 15
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 2
    assert not re.search(r'(?:src|href)="(?!data:)', html)
    assert "r &lt;b&gt;" in html and "r <b>" not in html
    assert "<li>add a hat</li>" in html  # sub-requests of the edit
    assert "Main results" in html and "Per-criterion breakdown" in html


@pytest.mark.slow
def test_cli_table_alignment_report(tmp_path, capsys):
    from imageedit_r1.eval.__main__ import main

    run = _run(tmp_path)
    human = _human_csv(tmp_path, run)
    root = str(tmp_path / "run")
    assert main(["table", "--run-dir", root, "--bootstrap", "50"]) == 0
    assert "| Tint | ImageEdit-R1 |" in capsys.readouterr().out
    assert main(["table", "--run-dir", root, "--format", "csv", "--criterion", "quality"]) == 0
    assert capsys.readouterr().out.startswith("group,method,label,benchmark,judge,criterion")
    assert main(["alignment", "--run-dir", root, "--human", str(human), "--judge", "J1"]) == 0
    assert "| J1 | Pearson r |" in capsys.readouterr().out
    assert main(["report", "--run-dir", root, "--max-items", "3"]) == 0
    assert (tmp_path / "run" / "report.html").stat().st_size > 1000


@pytest.mark.slow
def test_cli_without_a_run_exits_2_naming_run_json(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "imageedit_r1.eval", "table", "--run-dir", str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "run.json" in missing.stderr


@pytest.mark.slow
def test_each_method_keeps_one_colour_across_plots_and_legends_sit_beside_the_axes(tmp_path):
    import base64
    import io

    from PIL import Image

    from imageedit_r1.eval.report import method_colours, plots

    run = _run(tmp_path)
    colours = {name: tuple(round(c * 255) for c in rgba[:3]) for name, rgba in method_colours(run).items()}
    assert len(set(colours.values())) == len(colours) == 2
    for title, url in plots(run):
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        pixels = list(image.getdata())
        for name, rgb in colours.items():
            assert sum(1 for p in pixels if max(abs(a - b) for a, b in zip(p, rgb, strict=True)) <= 3) > 20, (
                title, name)
        # The legend is drawn to the right of the plot area: the figure is wider than its 8-inch axes box.
        assert image.width > 8 * 110
