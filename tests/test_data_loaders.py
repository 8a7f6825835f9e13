"""Benchmark loaders over fixtures in the datasets' real column layouts."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from imageedit_r1.data import (
    EditSample,
    ManifestLoader,
    PSRLoader,
    RealEditLoader,
    UltraEditLoader,
    build_loader,
    parse_source_spec,
)
from imageedit_r1.data.rows import DataSourceError, MissingColumnError
from imageedit_r1.images import SkipReport, load_or_skip
from tests.data_fixtures import (
    image_bytes,
    write_manifest,
    write_parquet,
    write_psr,
    write_realedit,
    write_ultraedit,
)

EXOTIC = ["rgb", "exif", "rgba", "p", "cmyk", "i16", "l"]


def _check_samples(samples: list[EditSample], source: str) -> None:
    for sample in samples:
        assert isinstance(sample, EditSample)
        assert sample.source == source
        assert sample.image.mode == "RGB"
        assert sample.request


def test_psr_one_request_per_post_skips_corrupt_and_converts_modes(tmp_path):
    write_psr(tmp_path, EXOTIC + ["corrupt"], pairings=3)
    loader = PSRLoader(tmp_path)
    samples = list(loader)
    # 8 posts x 3 pairing rows -> 8 requests; the corrupt one skipped and reported by id.
    assert [s.id for s in samples] == [f"psr/p{i:03d}" for i in range(7)]
    _check_samples(samples, "psr")
    assert loader.report.loaded == 7
    assert loader.report.skipped_ids == ["psr/p007"]
    assert "unreadable image" in loader.report.skipped[0][1]
    assert "psr/p007" in loader.report.summary()
    by_id = {s.id: s for s in samples}
    # EXIF orientation 6: a 40x24 landscape is shown as a 24x40 portrait.
    assert by_id["psr/p001"].image.size == (24, 40)
    assert by_id["psr/p000"].image.size == (40, 24)
    assert by_id["psr/p000"].request.startswith("Please change the color")
    assert by_id["psr/p000"].meta["simplified_instruction"] == "Recolor coat 0 red"
    assert "source_image" not in by_id["psr/p000"].meta  # images never leak into meta


def test_psr_simplified_instruction_and_id_filter(tmp_path):
    write_psr(tmp_path, ["rgb", "rgb", "rgb"], pairings=2)
    loader = PSRLoader(tmp_path, request_field="simplified_instruction", ids={"psr/p002"})
    samples = list(loader)
    assert [(s.id, s.request) for s in samples] == [("psr/p002", "Recolor coat 2 red")]
    with pytest.raises(ValueError, match="request_field"):
        PSRLoader(tmp_path, request_field="prompt")


def test_realedit_train_and_test_from_a_snapshot_folder(tmp_path):
    write_realedit(tmp_path, {"train": ["rgb", "l", "rgba"], "test": ["rgb", "corrupt", "cmyk", "p"]})
    test = RealEditLoader(tmp_path, "test")
    samples = list(test)
    assert [s.id for s in samples] == ["realedit/test/test_0000.jpg", "realedit/test/test_0002.jpg", "realedit/test/test_0003.jpg"]
    assert test.report.skipped_ids == ["realedit/test/test_0001.jpg"]
    _check_samples(samples, "realedit")
    train = list(RealEditLoader(tmp_path, "train"))
    assert len(train) == 3 and all(s.id.startswith("realedit/train/") for s in train)
    assert train[0].meta["subreddit"] == "PhotoshopRequest"
    with pytest.raises(DataSourceError, match="no parquet shard of split 'validation'"):
        list(RealEditLoader(tmp_path, "validation"))


def test_ultraedit_streams_shards_and_limits(tmp_path):
    write_ultraedit(tmp_path, ["rgb"] * 5 + ["corrupt"] + ["i16"] * 4, shards=3)
    loader = UltraEditLoader(tmp_path, "FreeForm_0")
    samples = list(loader)
    assert len(samples) == 9 and loader.report.skipped_ids == ["ultraedit/FreeForm_0/5"]
    assert samples[0].request == "What if the horse 0 wears a hat?"
    assert samples[0].meta["source_caption"] == "a horse 0 in a field"
    _check_samples(samples, "ultraedit")
    assert len(list(UltraEditLoader(tmp_path, "FreeForm_0", limit=4))) == 4
    # records() decodes nothing: the corrupt row is still there, with its raw bytes.
    assert len(list(loader.records())) == 10


def test_single_parquet_file_and_hub_style_spec(tmp_path):
    path = write_psr(tmp_path, ["rgb", "l"], pairings=1)
    loader = build_loader(f"psr:{path}")
    assert [s.id for s in loader] == ["psr/p000", "psr/p001"]
    assert parse_source_spec("ultraedit:/x/y@FreeForm_3") == ("ultraedit", "/x/y", "FreeForm_3")
    with pytest.raises(ValueError, match="unknown source"):
        parse_source_spec("magicbrush")


def test_missing_column_names_it_and_lists_present(tmp_path):
    import datasets

    features = datasets.Features({"post_id": datasets.Value("string"), "prompt": datasets.Value("string"), "source_image": datasets.Image()})
    write_parquet(tmp_path / "x.parquet", [{"post_id": "a", "prompt": "hi", "source_image": {"bytes": image_bytes("rgb"), "path": None}}], features)
    with pytest.raises(MissingColumnError) as info:
        list(PSRLoader(tmp_path / "x.parquet"))
    message = str(info.value)
    assert "'instruction'" in message and "['post_id', 'prompt', 'source_image']" in message
    # Naming the column fixes it.
    samples = list(PSRLoader(tmp_path / "x.parquet", columns={"request": "prompt"}))
    assert samples[0].request == "hi"


def test_manifest_resolves_relative_paths_and_reports_bad_lines(tmp_path):
    path = write_manifest(tmp_path / "m", ["rgb", "exif", "cmyk"])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "gone", "image": "missing.png", "request": "x"}) + "\n")
    loader = ManifestLoader(path)
    samples = list(loader)
    assert [s.id for s in samples] == ["req-0", "req-1", "req-2"]
    assert samples[1].image.size == (24, 40)
    assert samples[0].meta["tag"] == "t"
    assert loader.report.skipped_ids == ["gone"] and "not found" in loader.report.skipped[0][1]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "image": "x.png"}\n', encoding="utf-8")
    with pytest.raises(MissingColumnError, match=r"bad.jsonl:1: no field 'request' or 'instruction'.*\['id', 'image'\]"):
        list(ManifestLoader(bad))
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:1: not valid JSON"):
        list(ManifestLoader(bad))


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataSourceError, match="not found"):
        list(PSRLoader(str(tmp_path / "nope.parquet")))


def test_load_or_skip_counts_and_never_raises():
    report = SkipReport()
    assert load_or_skip("a", image_bytes("rgb"), report) is not None
    assert load_or_skip("b", b"junk", report) is None
    assert load_or_skip("c", Image.new("RGB", (100, 100)), report, max_pixels=50) is None
    assert report.loaded == 1 and report.skipped_ids == ["b", "c"]
    assert "over the limit" in report.skipped[1][1]


def test_data_package_imports_no_heavy_library():
    import subprocess
    import sys

    code = (
        "import imageedit_r1.data, imageedit_r1.data.export, imageedit_r1.data.teacher, imageedit_r1.data.subsets\n"
        "import sys; print(','.join(m for m in ('datasets', 'pyarrow', 'torch', 'openai', 'google.genai', 'transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_image_folder_with_metadata_jsonl(tmp_path):
    """A folder of image files plus metadata.jsonl (the `imagefolder` layout) reads like the parquet shards."""
    (tmp_path / "test").mkdir()
    names = {"a.png": "rgb", "b.png": "corrupt", "c.jpg": "exif"}
    with open(tmp_path / "test" / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for name, kind in names.items():
            (tmp_path / "test" / name).write_bytes(image_bytes(kind))
            handle.write(json.dumps({"file_name": name, "instruction": f"fix {name}", "input_image_name": name}) + "\n")
    loader = RealEditLoader(tmp_path, "test")
    samples = list(loader)
    assert [(s.id, s.image.size) for s in samples] == [("realedit/test/a.png", (40, 24)), ("realedit/test/c.jpg", (24, 40))]
    assert loader.report.skipped_ids == ["realedit/test/b.png"]
