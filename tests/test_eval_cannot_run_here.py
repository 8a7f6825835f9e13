"""``eval run`` with a method that cannot run on this machine: the method stops, its items stay pending."""

import json

import pytest

from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import make_benchmark

fakes = pytest.importorskip("imageedit_r1.testing.fake_servers", reason="needs the loopback fake API servers")
pytest.importorskip("openai")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # the transformers backend is loaded to find that the agent cannot start

JUDGE_REPLY = json.dumps({"reasoning": "scripted", "fulfillment": 3, "quality": 2, "preservation": 2})


def test_an_agent_that_cannot_start_stops_its_method_instead_of_failing_every_item(tmp_path, monkeypatch, capsys):
    """The decomposition agent names a model folder without weights: the checks before work see a
    folder, loading it finds nothing, so the agent cannot start. That stops the method with one setup
    error; no item gets a failed (retryable) record, so a later run still has all of them to do.
    The other method of the run is edited and judged as usual."""
    from imageedit_r1.agents import editors
    from imageedit_r1.eval.__main__ import main

    monkeypatch.setitem(editors.EDITORS, "darken", "tests.test_eval_integration:DarkenEditor")
    no_weights = tmp_path / "checkpoint"
    no_weights.mkdir()
    bench = make_benchmark(tmp_path, "A", 3)
    with fakes.fake_openai_server(lambda body: JUDGE_REPLY) as server:
        path = tmp_path / "eval.yaml"
        path.write_text(f"""
out_dir: {tmp_path / 'run'}
benchmarks: [{{name: A, source: manifest, manifest: {bench.manifest}}}]
methods:
  - {{name: r1, kind: pipeline, editor: darken, decomposer: {{backend: transformers, model: {no_weights}}}}}
  - {{name: id, kind: identity}}
judges: [{{name: J, backend: openai, model: judge-model, base_url: "{server.url}/v1"}}]
""")
        code = main(["run", "--config", str(path), "--no-progress"])
        out = capsys.readouterr().out
        assert code == 1, out
        not_run = [line for line in out.splitlines() if line.startswith("not run:")]
        assert len(not_run) == 1 and "method r1" in not_run[0] and "cannot start" in not_run[0], out
        edits = list(read_jsonl(tmp_path / "run" / "edits.jsonl"))
        assert {e["method"] for e in edits} == {"id"} and all(e["status"] == "ok" for e in edits)
        results = list(read_jsonl(tmp_path / "run" / "results.jsonl"))
        assert len(results) == 3 and all(r["method"] == "id" and r["status"] == "scored" for r in results)

        # Its items are still pending: the next run (here its estimate) has all three to do.
        assert main(["run", "--config", str(path), "--no-progress", "--estimate"]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        assert ["edit", "r1", "3", "0", "0", "0.00"] in rows, rows
