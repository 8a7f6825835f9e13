"""A judge named by an alias (gpt-4o) answers from whichever snapshot the provider maps it to that day:
every judgment stores the model the provider reports, and a Table 1 column whose scores come from
more than one snapshot is flagged in `eval table` (markdown and CSV) and in the report. The real
openai client against a loopback fake that reports the snapshot it served, as the service does."""

from __future__ import annotations

import csv
import io
import re

import pytest

from imageedit_r1.endpoints import JudgeConfig, RetryConfig
from imageedit_r1.eval.__main__ import main as eval_main
from imageedit_r1.eval.report import render_report
from imageedit_r1.eval.results import load_run
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.store import read_jsonl
from imageedit_r1.testing import fake_servers as fakes
from tests.eval_fixtures import config_for, judge_reply_json, make_benchmark

pytest.importorskip("openai")

REQUEST_RE = re.compile(r'\*\*Edit Request:\*\* "(.*)"')


@pytest.fixture()
def run_dir(tmp_path, monkeypatch):
    """Day 1 judges Original with gpt-4o-2024-08-06; day 2 adds ImageEdit-R1, judged by the alias's
    new snapshot gpt-4o-2024-11-20. The second judge is pinned to one snapshot throughout."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-snapshots")
    day = {"snapshot": "gpt-4o-2024-08-06"}

    def served(model: str) -> str:
        return day["snapshot"] if model == "gpt-4o" else model

    def reply(body):
        return judge_reply_json(REQUEST_RE.search(fakes.openai_text(body)).group(1))

    bench = make_benchmark(tmp_path, "A", 3)
    with fakes.fake_openai_server(reply, snapshots=served) as server:
        judges = [JudgeConfig(name="GPT-4o", model="gpt-4o", base_url=f"{server.url}/v1",
                              retry=RetryConfig(attempts=1)),
                  JudgeConfig(name="Pinned", model="gpt-4o-2024-08-06", base_url=f"{server.url}/v1",
                              retry=RetryConfig(attempts=1))]
        config = config_for(tmp_path, [bench], judges=judges)
        methods = config.methods
        config.methods = methods[:1]
        assert EvalRunner(config, progress=False).run().judgments == {"scored": 6}
        day["snapshot"] = "gpt-4o-2024-11-20"
        config.methods = methods
        assert EvalRunner(config, progress=False).run().judgments == {"scored": 6, "cached": 6}
    return tmp_path / "run"


def test_every_judgment_stores_the_snapshot_the_provider_served(run_dir):
    served = {(r["method"], r["judge"]): r["served_model"] for r in read_jsonl(run_dir / "results.jsonl")}
    assert served[("base", "GPT-4o")] == "gpt-4o-2024-08-06" and served[("r1", "GPT-4o")] == "gpt-4o-2024-11-20"
    assert {served[(m, "Pinned")] for m in ("base", "r1")} == {"gpt-4o-2024-08-06"}


def test_eval_table_flags_the_column_that_mixes_snapshots(run_dir, capsys):
    assert eval_main(["table", "--run-dir", str(run_dir), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Edit model"))
    assert "A · GPT-4o ‡" in header and "A · Pinned |" in header
    (note,) = [line for line in out.splitlines() if line.startswith("‡")]
    assert note.startswith("‡ A · GPT-4o mixes judge snapshots: gpt-4o-2024-08-06 judged Original (3); "
                           "gpt-4o-2024-11-20 judged ImageEdit-R1 (3).")
    assert "Pinned mixes" not in out


def test_the_csv_names_each_cells_snapshots_and_warns(run_dir, capsys):
    assert eval_main(["table", "--run-dir", str(run_dir), "--format", "csv", "--bootstrap", "50"]) == 0
    captured = capsys.readouterr()
    rows = {(r["method"], r["judge"]): r for r in csv.DictReader(io.StringIO(captured.out))}
    assert rows[("base", "GPT-4o")]["served_models"] == "gpt-4o-2024-08-06:3"
    assert rows[("r1", "GPT-4o")]["served_models"] == "gpt-4o-2024-11-20:3"
    assert rows[("r1", "GPT-4o")]["mixed_snapshots"] == "true" and rows[("r1", "Pinned")]["mixed_snapshots"] == "false"
    assert captured.err.count("warning: ‡ A · GPT-4o mixes judge snapshots") == 1


def test_the_report_flags_it_too(run_dir):
    html = render_report(load_run(run_dir), n_boot=50)
    assert "A · GPT-4o ‡" in html and "mixes judge snapshots: gpt-4o-2024-08-06 judged Original (3)" in html
    assert "GPT-4o = gpt-4o (served as gpt-4o-2024-08-06, gpt-4o-2024-11-20)" in html


def table_notes(run_dir, capsys) -> list[str]:
    assert eval_main(["table", "--run-dir", str(run_dir), "--bootstrap", "20"]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("‡")]


def test_the_advice_for_a_mixed_column_works_whether_the_judge_is_an_alias_or_already_pinned(tmp_path, monkeypatch,
                                                                                            capsys):
    """An alias's note names the pin that judges every method afresh, and following it unmixes the
    column. A judge already asked for one id (a proxy answering as another model the next day) is
    told that running again changes nothing, and what does."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-snapshots")
    day = {"snapshot": "gpt-4o-2024-08-06"}

    def served(model: str) -> str:
        return day["snapshot"] if model in ("gpt-4o", "gpt-4o-2024-08-06") else model

    def reply(body):
        return judge_reply_json(REQUEST_RE.search(fakes.openai_text(body)).group(1))

    bench = make_benchmark(tmp_path, "A", 2)
    with fakes.fake_openai_server(reply, snapshots=served) as server:
        def judge(name, model):
            return JudgeConfig(name=name, model=model, base_url=f"{server.url}/v1", retry=RetryConfig(attempts=1))

        config = config_for(tmp_path, [bench], judges=[judge("GPT-4o", "gpt-4o"), judge("Dated", "gpt-4o-2024-08-06")])
        methods = config.methods
        config.methods = methods[:1]
        EvalRunner(config, progress=False).run()
        day["snapshot"] = "gpt-4o-2024-11-20"
        config.methods = methods
        EvalRunner(config, progress=False).run()
        alias, dated = table_notes(tmp_path / "run", capsys)
        assert alias.startswith("‡ A · GPT-4o mixes") and alias.endswith(
            "pin the judge's model to one of them (judges.GPT-4o.model=gpt-4o-2024-11-20) and run `eval run` again: "
            "the pinned judge judges every method afresh.")
        assert dated.startswith("‡ A · Dated mixes") and "pin" not in dated
        assert ("the judge already asks for gpt-4o-2024-08-06, and the service answered as more than one, so running "
                "again keeps these judgments") in dated

        # Following the alias's advice: every method judged again by the pinned snapshot; that column is one model's.
        config.judges[0].model = "gpt-4o-2024-11-20"
        assert EvalRunner(config, progress=False).run().judgments == {"scored": 4, "cached": 4}
    (left,) = table_notes(tmp_path / "run", capsys)
    assert left.startswith("‡ A · Dated mixes")
