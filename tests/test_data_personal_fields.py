"""No personal field of a dataset (PSR's Reddit user names) reaches anything the project writes or sends.

A PSR copy in the card's layout, with a user name in every row, goes through every command that
writes: inspect, subsets, label (a teacher API on 127.0.0.1), export (EasyR1 and verl), and an
evaluation run with its results, traces and HTML report. Every file written, every line printed
and every request sent to the teacher is searched for the names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imageedit_r1.data.__main__ import main
from imageedit_r1.testing.fake_servers import fake_openai_server
from tests.data_fixtures import PSR_COMMENT_OWNER, PSR_POST_OWNER, write_psr

pytestmark = pytest.mark.slow  # every command that writes, end to end

GOOD = {"rationale": "a recolor", "actions": ["recolor"], "subjects": ["coat"], "goals": ["scarlet or copper red"]}
POSTS = 4
PAIRINGS = 3
USER_NAMES = [PSR_POST_OWNER.format(i) for i in range(POSTS)] + [
    PSR_COMMENT_OWNER.format(i, j) for i in range(POSTS) for j in range(PAIRINGS)
]


def _text_of(path: Path) -> str:
    """A written file as text; parquet decoded (its pages are compressed), images skipped."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return json.dumps(pq.read_table(path).to_pylist(), default=repr)
    if path.suffix in (".png", ".jpg", ".jpeg", ".webp"):
        return ""
    return path.read_bytes().decode("utf-8", errors="replace")


def _assert_no_user_name(texts: dict[str, str]) -> None:
    assert texts, "nothing was written"
    for where, text in texts.items():
        found = [name for name in USER_NAMES if name in text]
        assert not found, f"{where} holds user names {found}"


def test_no_user_name_in_any_export_trace_or_report(tmp_path, capsys):
    from imageedit_r1.eval.config import BenchmarkConfig, MethodConfig
    from imageedit_r1.eval.report import write_report
    from imageedit_r1.eval.runner import EvalRunner
    from tests.eval_fixtures import ScriptedJudge, config_for

    data = tmp_path / "psr"
    write_psr(data, ["rgb", "l", "p", "rgba"], pairings=PAIRINGS)
    out = tmp_path / "out"
    printed: dict[str, str] = {}

    # The inspect printout, the eval subset (all of PSR, as the paper) and the RL export of the same
    # posts (for the test's sake; --no-leakage-guard).
    assert main(["-q", "inspect", "--source", f"psr:{data}"]) == 0
    assert main(["-q", "subsets", "--benchmark", "psr", "--source", f"psr:{data}", "--out", str(out / "subsets")]) == 0
    with fake_openai_server(lambda request: json.dumps(GOOD)) as server:
        assert main(["-q", "label", "--source", f"psr:{data}", "--out", str(out / "labels.jsonl"),
                     f"teacher.base_url={server.url}/v1", "teacher.model=my-vlm"]) == 0  # fmt: skip
        sent = {f"teacher request {n}": json.dumps(r.json) for n, r in enumerate(server.requests)}
    assert len(sent) == POSTS
    for file_format, formats in (("parquet", ["easyr1", "verl"]), ("jsonl", ["easyr1"])):
        assert main(["-q", "export", "--source", f"psr:{data}", "--labels", str(out / "labels.jsonl"),
                     "--out", str(out / f"rl-{file_format}"), "--no-leakage-guard", "--file-format", file_format,
                     *[arg for name in formats for arg in ("--format", name)]]) == 0  # fmt: skip
    captured = capsys.readouterr()
    printed["stdout"], printed["stderr"] = captured.out, captured.err
    assert "psr/p000" in captured.out  # the printout did show the samples, with their metadata

    # An evaluation of the PSR subset: results, edit traces, judgments, the HTML report.
    config = config_for(
        out,
        [BenchmarkConfig(name="PSR", subset=str(out / "subsets" / "psr.json"))],
        methods=[MethodConfig(name="orig", label="Original", kind="identity", baseline=True)],
    )
    summary = EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model)).run()
    assert summary.judgments["scored"] == POSTS, summary.lines()
    write_report(out / "run", out / "run" / "report.html", n_boot=10)

    written = {str(path.relative_to(out)): _text_of(path) for path in sorted(out.rglob("*")) if path.is_file()}
    assert {"subsets/psr.json", "labels.jsonl", "rl-parquet/verl/train.parquet", "rl-jsonl/easyr1/train.jsonl",
            "rl-parquet/export_manifest.json", "run/report.html"} <= set(written)  # fmt: skip
    assert any(name.startswith("run/") and name.endswith(".jsonl") for name in written)
    _assert_no_user_name({**written, **printed, **sent})
    # The fixture does carry the names, so the search above could have found them.
    assert PSR_POST_OWNER.format(0).encode() in _text_of(data / "data" / "test-00000-of-00001.parquet").encode()
