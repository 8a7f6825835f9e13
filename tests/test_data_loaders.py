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
    bytes_read,
    image_bytes,
    ultraedit_idx,
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
    # Only the allow-listed fields: no image, no per-edit field, no Reddit user name.
    assert set(by_id["psr/p000"].meta) == {"simplified_instruction", "split", "row"}
    assert by_id["psr/p002"].meta["row"] == 6  # the post's first row
    assert not loader.issues  # every post's rows show one source image


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
    assert len(samples) == 9 and loader.report.skipped_ids == [f"ultraedit/FreeForm_0/{ultraedit_idx(5)}"]
    assert samples[0].request == "What if the horse 0 wears a hat?"
    assert samples[0].meta["source_caption"] == "a horse 0 in a field"
    # The null-typed columns of the free-form splits are neither read nor kept.
    assert "mask_image" not in samples[0].meta and "edit_object" not in samples[0].meta
    _check_samples(samples, "ultraedit")
    assert len(list(UltraEditLoader(tmp_path, "FreeForm_0", limit=4))) == 4
    # records() decodes nothing: the corrupt row is still there, with its raw bytes.
    assert len(list(loader.records())) == 10


def test_ultraedit_ids_come_from_idx_and_do_not_depend_on_shard_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_ultraedit(tmp_path / "a", ["rgb"] * 6, shards=2)
    ids = [record.id for record in UltraEditLoader(tmp_path / "a", "FreeForm_0").records()]
    assert ids == [f"ultraedit/FreeForm_0/{ultraedit_idx(i)}" for i in range(6)]
    # The same rows in other shards, in reverse order: every request keeps its id.
    shards = sorted((tmp_path / "a" / "data").glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(path) for path in shards])
    (tmp_path / "b" / "data").mkdir(parents=True)
    reversed_table = table.take(list(range(table.num_rows))[::-1])
    for shard, rows in enumerate((range(0, 4), range(4, 6))):
        pq.write_table(reversed_table.take(list(rows)), tmp_path / "b" / "data" / f"FreeForm_0-{shard:05d}-of-00002.parquet")
    again = {r.id: r.request for r in UltraEditLoader(tmp_path / "b", "FreeForm_0").records()}
    first = {r.id: r.request for r in UltraEditLoader(tmp_path / "a", "FreeForm_0").records()}
    assert again == first
    # A copy without idx says so, and how to name another id column.
    pq.write_table(table.drop_columns(["idx"]), tmp_path / "noidx.parquet")
    with pytest.raises(MissingColumnError, match=r"no column 'idx'.*--column id="):
        list(UltraEditLoader(tmp_path / "noidx.parquet").records())


def test_repeated_ultraedit_idx_keeps_the_first_row_and_names_the_rows(tmp_path):
    write_ultraedit(tmp_path, ["rgb"] * 6, shards=2, idx=[5, 6, 5, 7, 8, 6])
    loader = UltraEditLoader(tmp_path, "FreeForm_0")
    samples = list(loader)
    assert [s.id.rsplit("/", 1)[1] for s in samples] == ["5", "6", "7", "8"]
    assert samples[0].request == "What if the horse 0 wears a hat?"  # the first row of idx 5
    assert loader.issues.duplicates == {"ultraedit/FreeForm_0/5": [0, 2], "ultraedit/FreeForm_0/6": [1, 5]}
    summary = loader.issues.summary()
    assert "ultraedit/FreeForm_0/5: rows 0, 2" in summary and "ultraedit/FreeForm_0/6: rows 1, 5" in summary


def test_realedit_train_with_one_row_per_output_keeps_one_row_per_request(tmp_path):
    write_realedit(tmp_path, {"train": ["rgb", "l", "rgba"]}, repeats={"train": 3})
    loader = RealEditLoader(tmp_path, "train")
    samples = list(loader)
    assert [s.id for s in samples] == [f"realedit/train/train_{i:04d}.jpg" for i in range(3)]
    assert [s.meta["row"] for s in samples] == [0, 3, 6]
    assert loader.issues.duplicates["realedit/train/train_0001.jpg"] == [3, 4, 5]
    assert "3 ids repeated" in loader.issues.summary()


def test_psr_reports_a_post_whose_rows_show_different_images(tmp_path):
    write_psr(tmp_path, ["rgb", "rgb", "rgb"], pairings=3, multi_image={1})
    loader = PSRLoader(tmp_path)
    samples = list(loader)
    assert [s.id for s in samples] == ["psr/p000", "psr/p001", "psr/p002"]  # the first row is still kept
    assert [item_id for item_id, _ in loader.issues.conflicts] == ["psr/p001"]
    assert "2 different source images over rows 3..5" in loader.issues.summary()


def test_loaders_read_only_the_columns_a_role_needs(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    write_psr(tmp_path / "psr", ["rgb", "rgb"], pairings=3)
    write_ultraedit(tmp_path / "ue", ["rgb"] * 4, shards=1)
    projections = []
    real_iter_batches = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        for batch in real_iter_batches(self, *args, **kwargs):
            projections.append((kwargs.get("columns"), batch.schema.names))
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)

    def pass_columns(records):
        projections.clear()
        list(records)
        asked = {tuple(columns) for columns, _ in projections}
        read = {tuple(names) for _, names in projections}
        assert len(asked) == 1 and asked == read, projections  # asked for, and nothing else came back
        return list(asked.pop())

    psr = PSRLoader(tmp_path / "psr")
    assert pass_columns(psr.records()) == ["post_id", "instruction", "simplified_instruction", "source_image"]
    assert pass_columns(psr.records(roles=("id",))) == ["post_id"]
    ue = UltraEditLoader(tmp_path / "ue", "FreeForm_0")
    expected = ["clip_sim_dir", "clip_sim_image", "clip_sim_source", "clip_sim_target", "dinov2_sim",
                "edit_prompt", "idx", "source_caption", "source_image", "ssim", "target_caption"]  # fmt: skip
    assert pass_columns(ue.records()) == expected
    assert pass_columns(ue.records(roles=("id",))) == ["idx"]


@pytest.mark.slow
def test_hub_style_parquet_is_projected_through_datasets(tmp_path, monkeypatch):
    """A hub repository (here its snapshot, opened the way a hub name is) gets the builder's ``columns``."""
    import datasets

    from imageedit_r1.data.rows import _datasets_stream

    write_psr(tmp_path, ["rgb", "l"], pairings=2)
    asked = []
    real_load = datasets.load_dataset

    def spy(*args, **kwargs):
        asked.append(kwargs.get("columns"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    stream = _datasets_stream(str(tmp_path), tmp_path, "test", None, "psr snapshot")
    assert "post_owner" in stream.columns and asked == [None]
    rows = list(stream.read(["post_id", "source_image"]))
    assert asked[-1] == ["post_id", "source_image"]
    assert len(rows) == 4 and all(set(row) == {"post_id", "source_image"} for row in rows)
    assert isinstance(rows[0]["source_image"]["bytes"], bytes)  # still encoded


@pytest.mark.skipif(bytes_read() is None, reason="needs /proc/self/io")
def test_psr_pass_reads_a_fraction_of_the_bytes_and_stops_after_the_wanted_posts(tmp_path):
    from imageedit_r1.data.rows import open_rows

    # 12 posts x 4 rows of incompressible 160x160 images, row groups of 4 rows (one post each).
    write_psr(tmp_path, ["rgb"] * 12, pairings=4, image_size=(160, 160), row_group_size=4)

    def measure(consume) -> int:
        before = bytes_read()
        consume()
        return bytes_read() - before

    everything = measure(lambda: list(open_rows(tmp_path, "test")))  # every column, as a naive reader does
    full_pass = measure(lambda: list(PSRLoader(tmp_path).records()))
    id_pass = measure(lambda: list(PSRLoader(tmp_path).records(roles=("id",))))
    two_posts = measure(lambda: list(PSRLoader(tmp_path, ids={"psr/p000", "psr/p001"}).records()))
    assert full_pass < 0.34 * everything  # one image column of three (stored once per row group)
    assert id_pass < 0.03 * everything  # the id column and the files' footers
    assert two_posts < 0.5 * full_pass  # the pass ended with the rows of psr/p001


@pytest.mark.skipif(bytes_read() is None, reason="needs /proc/self/io")
def test_a_pass_over_wanted_ids_reads_only_the_row_groups_that_hold_them(tmp_path):
    # 24 rows in row groups of 4; the wanted ids sit in the third group and the last one.
    write_ultraedit(tmp_path, ["rgb"] * 24, shards=1, image_size=(160, 160), row_group_size=4)
    wanted = {f"ultraedit/FreeForm_0/{ultraedit_idx(row)}": row for row in (9, 10, 22)}

    before = bytes_read()
    full = list(UltraEditLoader(tmp_path, "FreeForm_0").records())
    full_bytes = bytes_read() - before
    before = bytes_read()
    chosen = list(UltraEditLoader(tmp_path, "FreeForm_0", ids=wanted).records())
    chosen_bytes = bytes_read() - before

    assert [record.meta["row"] for record in chosen] == [9, 10, 22]  # row numbers stay true
    by_id = {record.id: record for record in full}
    assert all(record.image == by_id[record.id].image for record in chosen)
    assert chosen_bytes < 0.45 * full_bytes  # two row groups of six, and the id column


def test_revision_is_parsed_passed_to_the_hub_and_refused_for_a_local_copy(tmp_path, monkeypatch):
    import datasets

    from imageedit_r1.data import parse_source

    assert parse_source("ultraedit@FreeForm_0#abc123") == ("ultraedit", None, "FreeForm_0", "abc123")
    assert parse_source("psr:PSRDataset/PSR-328@test#v1.0") == ("psr", "PSRDataset/PSR-328", "test", "v1.0")
    assert parse_source_spec("ultraedit@FreeForm_0#abc123") == ("ultraedit", None, "FreeForm_0")
    loader = build_loader("ultraedit@FreeForm_0#abc123")
    assert loader.revision == "abc123" and loader.describe() == "ultraedit (BleachNick/UltraEdit@FreeForm_0#abc123)"
    calls = []

    def offline(*args, **kwargs):  # stands in for the hub: record the request, reach nothing
        calls.append((args, kwargs))
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataSourceError, match="at revision abc123"):
        list(loader.records())
    assert calls[0][0] == ("BleachNick/UltraEdit",) and calls[0][1]["revision"] == "abc123"
    assert calls[0][1]["split"] == "FreeForm_0"
    monkeypatch.undo()
    write_psr(tmp_path, ["rgb"], pairings=1)
    with pytest.raises(DataSourceError, match="revision 'abc' given for the local copy"):
        list(build_loader(f"psr:{tmp_path}#abc").records())


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
