"""The trace has one definition (``pipeline.trace.Trace``): the run's JSON, the plan's record and the
command line's summaries come from it, and traces of earlier versions still read."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from imageedit_r1.pipeline import Plan
from imageedit_r1.pipeline.outputs import print_plan, print_summary
from imageedit_r1.pipeline.trace import FIELDS, PLAN_FIELDS, RECORD_FIELDS, Trace
from tests.test_pipeline import REQUEST, SUBS, image, make

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pipeline.md"
OPTIONAL = {f.name for f in dataclasses.fields(Trace) if f.metadata["optional"]}


def test_a_run_trace_a_plan_record_and_a_planning_trace_hold_the_declared_fields_in_order():
    pipe = make(seed=3)
    plan = pipe.plan(image(), REQUEST)
    assert list(plan.record) == list(RECORD_FIELDS)
    assert list(plan.trace()) == [*RECORD_FIELDS, *PLAN_FIELDS]
    result = pipe.execute(image(), plan)
    assert list(result.trace) == [name for name in FIELDS if name not in OPTIONAL or name in ("plan", "planning")]
    json.dumps(result.trace)  # plain JSON for users and files
    assert result.trace["plan"]["changed"] is False and result.trace["seeds"] == [3]
    # The planning record reaches the run: the agents' seconds and model ids, the run's own input.
    assert result.trace["seconds"]["decompose"] == plan.record["seconds"]["decompose"]
    assert result.trace["started_at"] == plan.record["started_at"]


def test_the_trace_is_typed_a_misspelt_field_fails_at_once():
    trace = Trace.start(REQUEST, "single-turn")
    with pytest.raises(AttributeError):
        trace.fallback = []  # noqa: B010 - the field is "fallbacks"
    with pytest.raises(ValueError, match="not a trace: it has no request"):
        Trace.from_dict({"mode": "single-turn"})


# A planning trace as `--dry-run --json` printed it before the sequencer's repairs, raw answers and
# token counts were recorded, with a key this version does not define.
EARLIER_PLANNING_TRACE = {
    "input": {"width": 67, "height": 45, "sha256": "0" * 64},
    "repairs": [],
    "models": {"decomposer": "old-model", "sequencer": "old-model"},
    "seconds": {"decompose": 1.5, "sequence": 0.5, "total": 2.0},
    "fallbacks": [],
    "errors": [],
    "version": "0.0.9",
    "started_at": "2025-01-01T00:00:00+0000",
    "note": "kept by hand",
    "request": REQUEST,
    "mode": "multi-turn",
    "status": "planned",
    "decomposition": {"actions": ["Recoloring"], "subjects": ["coat", "hair"], "goals": ["red"], "think": ""},
    "sub_requests": SUBS,
    "instructions": SUBS,
    "plan": {"changed": False, "changed_by": [], "changes": [], "edits": [],
             "proposed": {"mode": "multi-turn", "sub_requests": SUBS, "decomposition": None}},
}


def test_a_planning_trace_of_an_earlier_version_reads_executes_and_prints(capsys):
    plan = Plan.from_json(json.dumps(EARLIER_PLANNING_TRACE))
    assert plan.sub_requests == SUBS and plan.mode == "multi-turn"
    result = make(seed=0).execute(image(), plan)
    trace = result.trace
    assert trace["status"] == "ok" and trace["models"]["decomposer"] == "old-model"
    assert trace["version"] == "0.0.9" and trace["tokens"] == {} and trace["sequence_repairs"] == []
    assert "note" not in trace and trace["input"]["width"] == 67 and trace["plan"]["image_matches"] is False
    print_plan(EARLIER_PLANNING_TRACE, "photo.jpg")
    out = capsys.readouterr().out
    assert out.startswith("plan for photo.jpg (multi-turn):\n  actions: Recoloring\n")
    assert f"editor instruction 2: {SUBS[1]}" in out and "tokens" not in out


def test_the_summary_reads_a_run_trace_of_an_earlier_version(capsys):
    earlier = {"request": REQUEST, "mode": "single-turn", "status": "ok", "sub_requests": SUBS,
               "fallbacks": [{"stage": "sequence", "used": "template", "reason": "no JSON"}],
               "seconds": {"edit": 1.25, "total": 2.5}}  # no tokens, no verify
    print_summary(earlier, "out.png", "out.png.trace.json")
    assert capsys.readouterr().out.splitlines() == [
        "wrote out.png and out.png.trace.json", "sub-requests:", f"  1. {SUBS[0]}", f"  2. {SUBS[1]}",
        "fallback: the sequence stage used 'template' (no JSON)", "seconds: edit 1.25s, total 2.50s"]


def test_the_docs_describe_every_field_of_the_trace():
    section = DOCS.read_text(encoding="utf-8").split("## The trace", 1)[1].split("\n## ", 1)[0]
    documented = {name for row in section.splitlines() if row.startswith("| `")
                  for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert documented == set(FIELDS)
