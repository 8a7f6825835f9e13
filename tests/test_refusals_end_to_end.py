"""Refusals end to end: the real CLI, the real SDK clients, loopback fakes sending the documented
block shapes. A refusal is recorded as ``refusal`` with the provider's reason (edit records, the
pipeline trace, judgment records), is not paid for again by the next run, and is counted apart
in ``table``; ``--retry-failed`` asks again."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import make_benchmark

pytest.importorskip("openai")
pytest.importorskip("google.genai")
fakes = pytest.importorskip("imageedit_r1.testing.fake_servers", reason="needs the loopback fake API servers")
images = pytest.importorskip("imageedit_r1.testing.fake_image_servers")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"OPENAI_API_KEY": "sk-test-refusal-key-0000", "GEMINI_API_KEY": "test-gemini-refusal-key"}
FAST = {"attempts": 2, "base_delay": 0.01, "max_delay": 0.02}


def run_cli(*args):
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT), **KEYS)
    return subprocess.run([sys.executable, "-m", "imageedit_r1.eval", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def write_config(tmp_path, benchmark, methods, judges):
    config = {"out_dir": str(tmp_path / "run"), "concurrency": 2, "edit_concurrency": 2,
              "benchmarks": [{"name": benchmark.name, "source": "manifest", "manifest": benchmark.manifest}],
              "methods": methods, "judges": judges}
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config))
    return str(path)


def table_row(table_text, label):
    """{column: cell} of the markdown row whose Method is ``label``."""
    lines = [line for line in table_text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[1] == label:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no row {label!r} in:\n{table_text}")


def test_blocked_edits_are_refusals_recorded_once_and_counted_apart(tmp_path):
    bench = make_benchmark(tmp_path, "A", 3)
    blocked = images.GeminiImageReply(finish_reason="IMAGE_SAFETY")  # after thoughts with a draft
    with images.fake_gemini_image_server(lambda img, prompt, req: blocked) as gemini, \
            images.fake_openai_images_server(lambda img, prompt, req: images.openai_refusal()) as openai_images, \
            fakes.fake_openai_server(lambda body: '{"fulfillment": 4, "quality": 3, "preservation": 3}') as judge:
        methods = [
            {"name": "banana", "label": "Nano Banana Pro", "group": "Gemini", "kind": "original", "baseline": True,
             "editor": "nano-banana", "editor_options": {"model": "gemini-3-pro-image-preview",
                                                         "base_url": gemini.url, "retry": FAST}},
            {"name": "gpt", "label": "GPT Image", "group": "OpenAI", "kind": "original", "baseline": True,
             "editor": "openai-image", "editor_options": {"base_url": openai_images.url + "/v1", "retry": FAST}},
        ]
        judges = [{"name": "GPT", "backend": "openai", "model": "gpt-judge", "base_url": judge.url + "/v1",
                   "timeout": 5.0, "retry": {"base_delay": 0.01}}]
        config = write_config(tmp_path, bench, methods, judges)

        first = run_cli("run", "--config", config, "--no-progress")
        assert first.returncode == 0, first.stderr[-3000:]
        assert len(gemini.requests) == 3 and len(openai_images.requests) == 3
        assert "edit/refusal 6" in first.stdout

        second = run_cli("run", "--config", config, "--no-progress")
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(gemini.requests) == 3 and len(openai_images.requests) == 3  # no new editor request
        assert "cached 6" in second.stdout and judge.requests == []

        table = run_cli("table", "--run-dir", str(tmp_path / "run"), "--no-ci")
        assert table.returncode == 0, table.stderr[-3000:]

        again = run_cli("run", "--config", config, "--no-progress", "--retry-failed")
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(gemini.requests) == 6 and len(openai_images.requests) == 6  # asked again only when told to

    for label in ("Nano Banana Pro", "GPT Image"):
        row = table_row(table.stdout, label)
        assert (row["Refused"], row["Failed"], row["Missing"]) == ("3", "0", "0"), table.stdout
    edits = {(e["method"], e["sample_id"]): e for e in read_jsonl(tmp_path / "run" / "edits.jsonl")}
    banana, gpt = edits[("banana", "A-0")], edits[("gpt", "A-0")]
    for record, reason in ((banana, "IMAGE_SAFETY"), (gpt, "moderation_blocked")):
        assert record["status"] == "failed" and record["error_kind"] == "refusal" and record["retryable"] is False
        assert record["refusal"]["reason"] == reason
        trace = record["trace"]  # the pipeline's own trace says the same
        assert trace["status"] == "refused" and trace["refusal"]["reason"] == reason
        assert trace["refusal"]["stage"] == "edit" and trace["errors"][-1]["kind"] == "refusal"
    report = run_cli("report", "--run-dir", str(tmp_path / "run"))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "refusals (edits and judgments): 6" in html and "edit refused (IMAGE_SAFETY)" in html


REQUEST_RE = re.compile(r'\*\*Edit Request:\*\* "(.*)"')


def test_judge_refusals_carry_the_providers_reason_and_are_not_asked_again(tmp_path):
    bench = make_benchmark(tmp_path, "A", 2)
    gemini_block = fakes.ScriptedReply(block_reason="PROHIBITED_CONTENT")
    openai_refusal = fakes.ScriptedReply(refusal="I can't help with evaluating this image.")
    with fakes.fake_gemini_server(lambda body: gemini_block) as gemini, \
            fakes.fake_openai_server(lambda body: openai_refusal) as openai_judge:
        methods = [{"name": "tint", "label": "Tint", "group": "Tint", "kind": "callable", "baseline": True,
                    "target": "tests.eval_fixtures:tint"}]
        judges = [{"name": "Gemini", "backend": "gemini", "model": "gemini-judge", "base_url": gemini.url,
                   "timeout": 5.0, "retry": {"base_delay": 0.01}},
                  {"name": "GPT", "backend": "openai", "model": "gpt-judge", "base_url": openai_judge.url + "/v1",
                   "timeout": 5.0, "retry": {"base_delay": 0.01}}]
        config = write_config(tmp_path, bench, methods, judges)
        first = run_cli("run", "--config", config, "--no-progress")
        assert first.returncode == 0, first.stderr[-3000:]
        asked = (len(gemini.requests), len(openai_judge.requests))
        assert asked == (2, 2)  # a refusal is not re-asked like an unreadable reply
        second = run_cli("run", "--config", config, "--no-progress")
        assert (len(gemini.requests), len(openai_judge.requests)) == asked
        table = run_cli("table", "--run-dir", str(tmp_path / "run"), "--no-ci", "--format", "csv")

    results = {(r["judge"], r["sample_id"]): r for r in read_jsonl(tmp_path / "run" / "results.jsonl")}
    assert results[("Gemini", "A-0")]["refusal"]["reason"] == "PROHIBITED_CONTENT"
    assert results[("GPT", "A-0")]["refusal"]["reason"] == "refusal"
    assert all(r["error_kind"] == "refusal" and r["retryable"] is False for r in results.values())
    assert second.returncode == 0 and "judge/refusal" not in second.stdout
    rows = [line.split(",") for line in table.stdout.splitlines()]
    header = rows[0]
    cells = [dict(zip(header, row, strict=True)) for row in rows[1:] if row[header.index("benchmark")] == "A"]
    assert {(c["judge"], c["n_refused"], c["n_failed"]) for c in cells} == {("Gemini", "2", "0"), ("GPT", "2", "0")}
