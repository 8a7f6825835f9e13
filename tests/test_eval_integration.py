"""The runner over the project's own parts: ImageEditR1 methods and imageedit_r1.data subsets."""

import json

import pytest
from PIL import Image

from imageedit_r1.eval.config import BenchmarkConfig, MethodConfig
from imageedit_r1.eval.runner import EvalRunner
from imageedit_r1.store import read_jsonl
from tests.eval_fixtures import ScriptedJudge, config_for, make_benchmark

pytest.importorskip("imageedit_r1.pipeline", reason="needs the ImageEdit-R1 pipeline")
pytest.importorskip("imageedit_r1.backends", reason="needs the chat backends")
pytest.importorskip("imageedit_r1.data", reason="needs the data loaders")

DECOMPOSITION = ('<think>a hat and light</think><action>["Addition", "Enhancement"]</action>'
                 '<subjects>["hat", "image"]</subjects><goals>["red hat", "brighter"]</goals>')


class ScriptedBackend:
    """A chat backend answering the decomposer with tags and the sequencer with sub-requests."""

    name = "scripted"
    supports_json_schema = True

    def __init__(self, model="scripted-vlm", **_):
        self.model = model
        self.calls = 0

    def chat(self, messages, *, json_schema=None, schema_name="response", temperature=0.0, max_tokens=1024, seed=None):
        from imageedit_r1.backends import ChatResponse

        self.calls += 1
        text = messages[-1].text()
        if "sub-request" in text.lower() or "sub_requests" in json.dumps(json_schema or {}):
            answer = json.dumps({"sub_requests": ["Add a red hat", "Brighten the image"]})
        else:
            answer = DECOMPOSITION
        return ChatResponse(text=answer, model=self.model, prompt_tokens=10, completion_tokens=10)


class DarkenEditor:
    """An editor that records its instructions and darkens the image once per call."""

    name = "darken"
    model_id = "darken-v1"
    instructions: list = []

    def __init__(self, **_):
        pass

    def edit(self, image, instruction, *, seed=None):
        DarkenEditor.instructions.append(instruction)
        return Image.eval(image.convert("RGB"), lambda v: int(v * 0.8))


@pytest.fixture
def registered(monkeypatch):
    from imageedit_r1 import backends
    from imageedit_r1.agents import editors

    monkeypatch.setitem(editors.EDITORS, "darken", "tests.test_eval_integration:DarkenEditor")
    backends.register_backend("scripted", ScriptedBackend)
    DarkenEditor.instructions = []
    yield


def test_original_and_pipeline_methods_run_through_imageedit_r1(tmp_path, registered):
    agent = {"backend": "scripted", "model": "scripted-vlm"}
    config = config_for(tmp_path, [make_benchmark(tmp_path, "A", 2)], methods=[
        MethodConfig(name="orig", label="Original", group="Darken", kind="original", baseline=True, editor="darken"),
        MethodConfig(name="single", label="ImageEdit-R1", group="Darken", kind="pipeline", editor="darken",
                     decomposer=agent, mode="single-turn"),
        MethodConfig(name="multi", label="ImageEdit-R1 multi-turn", group="Darken", kind="pipeline", editor="darken",
                     decomposer=agent, mode="multi-turn"),
    ])
    summary = EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model)).run()
    assert summary.edits["done"] == 6 and summary.judgments["scored"] == 6, summary.lines()
    edits = {(e["method"], e["sample_id"]): e for e in read_jsonl(tmp_path / "run" / "edits.jsonl")}
    original = edits[("orig", "A-0")]["trace"]
    assert original["mode"] == "original" and original["instructions"] == ["[A-0] make it brighter and add a hat"]
    single = edits[("single", "A-0")]["trace"]
    assert single["sub_requests"] == ["Add a red hat", "Brighten the image"]
    assert single["instructions"] == ["Add a red hat. Brighten the image."]
    assert single["seeds"] == [0]
    multi = edits[("multi", "A-0")]["trace"]
    assert multi["instructions"] == ["Add a red hat", "Brighten the image"]
    # Multi-turn applied the editor twice: its image is darker than the single-turn one.
    single_img = Image.open(tmp_path / "run" / edits[("single", "A-0")]["edited_path"]).getpixel((0, 0))
    multi_img = Image.open(tmp_path / "run" / edits[("multi", "A-0")]["edited_path"]).getpixel((0, 0))
    assert sum(multi_img) < sum(single_img)


def test_benchmark_from_a_data_subset_file(tmp_path):
    bench = make_benchmark(tmp_path, "A", 5)
    subset = tmp_path / "subsets" / "a.json"
    subset.parent.mkdir()
    subset.write_text(json.dumps({"benchmark": "a", "source": f"manifest:{bench.manifest}", "seed": 0,
                                  "ids": ["A-3", "A-1"]}))
    config = config_for(tmp_path, [BenchmarkConfig(name="A", subset=str(subset))],
                        methods=[MethodConfig(name="id", label="Identity", kind="identity")])
    runner = EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model))
    assert [s.id for s in runner.samples()["A"]] == ["A-3", "A-1"]  # subset order, not file order
    summary = runner.run()
    assert summary.judgments["scored"] == 2
    missing = tmp_path / "subsets" / "b.json"
    missing.write_text(json.dumps({"source": f"manifest:{bench.manifest}", "ids": ["A-9"]}))
    config.benchmarks = [BenchmarkConfig(name="B", subset=str(missing))]
    with pytest.raises(KeyError, match="subset ids not in the data"):
        EvalRunner(config, progress=False).samples()
