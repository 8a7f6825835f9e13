"""Eval subsets (seeded, order-independent), the leakage guard, and the streaming export."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from imageedit_r1.data import ManifestLoader, PSRLoader, RealEditLoader, UltraEditLoader
from imageedit_r1.data.export import (
    ExportItem,
    decomposition_prompt,
    easyr1_problem,
    export_labelled,
    iter_rows,
    split_of,
    write_items,
)
from imageedit_r1.data.labels import LabelIndex, sample_key
from imageedit_r1.data.subsets import EvalGuard, LeakageError, draw_subset, read_subset, subset_ids
from imageedit_r1.decomposition import Decomposition
from imageedit_r1.store import append_jsonl
from tests.data_fixtures import ultraedit_idx, write_manifest, write_psr, write_realedit, write_ultraedit

GT = Decomposition(["Recoloring"], ["coat", "hair"], ["scarlet or copper red"]).to_json()


def _label_file(path, samples, ground_truth=GT):
    for sample in samples:
        append_jsonl(
            path,
            {
                "key": sample.id,
                "sample_key": sample_key(sample.image_sha256(), sample.request),
                "id": sample.id,
                "status": "ok",
                "ground_truth": ground_truth,
                "model": "teacher-x",
            },
        )
    return path


# ----------------------------------------------------------------------------- subsets


def test_psr_subset_takes_every_readable_request_and_round_trips(tmp_path):
    write_psr(tmp_path / "psr", ["rgb", "corrupt", "l", "p"], pairings=2)
    subset = draw_subset(PSRLoader(tmp_path / "psr"), "psr", None, seed=0, progress=False)
    assert sorted(subset.ids) == ["psr/p000", "psr/p002", "psr/p003"]
    assert subset.pool == 4 and [item[0] for item in subset.skipped] == ["psr/p001"]
    assert set(subset.image_sha256) == set(subset.ids)
    path = subset.write(tmp_path / "subsets")
    again = read_subset(path)
    assert again.ids == subset.ids and again.image_sha256 == subset.image_sha256
    assert subset_ids("psr", tmp_path / "subsets") == subset.ids


def test_draw_is_seeded_and_independent_of_row_order(tmp_path):
    kinds = ["rgb"] * 12
    write_realedit(tmp_path / "a", {"test": kinds})
    first = draw_subset(RealEditLoader(tmp_path / "a", "test"), "realedit", 5, seed=0, progress=False)
    again = draw_subset(RealEditLoader(tmp_path / "a", "test"), "realedit", 5, seed=0, progress=False)
    other = draw_subset(RealEditLoader(tmp_path / "a", "test"), "realedit", 5, seed=1, progress=False)
    assert first.ids == again.ids and len(first.ids) == 5
    assert first.ids != other.ids
    # The same rows in reverse order (another shard layout) give the same draw.
    table = pq.read_table(tmp_path / "a" / "data" / "test-00000-of-00001.parquet")
    (tmp_path / "b" / "data").mkdir(parents=True)
    pq.write_table(table.take(list(range(table.num_rows))[::-1]), tmp_path / "b" / "data" / "test-00000-of-00001.parquet")
    reversed_draw = draw_subset(RealEditLoader(tmp_path / "b", "test"), "realedit", 5, seed=0, progress=False)
    assert reversed_draw.ids == first.ids


def test_unreadable_images_are_replaced_by_spares(tmp_path):
    write_ultraedit(tmp_path, ["corrupt", "rgb"] * 10, shards=2)
    subset = draw_subset(UltraEditLoader(tmp_path, "FreeForm_0"), "ultraedit", 8, seed=0, progress=False)
    readable = {f"ultraedit/FreeForm_0/{ultraedit_idx(row)}" for row in range(1, 20, 2)}
    assert len(subset.ids) == 8 and set(subset.ids) <= readable


def test_max_rows_caps_the_pool(tmp_path):
    write_ultraedit(tmp_path, ["rgb"] * 10, shards=1)
    subset = draw_subset(UltraEditLoader(tmp_path, "FreeForm_0", max_rows=4), "ultraedit", 3, progress=False)
    first_rows = {f"ultraedit/FreeForm_0/{ultraedit_idx(row)}" for row in range(4)}
    assert subset.pool == 4 and set(subset.ids) <= first_rows


def test_a_psr_post_whose_rows_show_different_images_is_reported_by_the_draw(tmp_path):
    write_psr(tmp_path, ["rgb", "rgb", "rgb"], pairings=3, multi_image={1})
    loader = PSRLoader(tmp_path)
    subset = draw_subset(loader, "psr", None, progress=False)
    assert sorted(subset.ids) == ["psr/p000", "psr/p001", "psr/p002"]
    assert [item[0] for item in subset.conflicting_rows] == ["psr/p001"]
    assert read_subset(subset.write(tmp_path / "subsets")).conflicting_rows == subset.conflicting_rows
    assert "psr/p001" in loader.issues.summary()  # what the CLI prints


def test_a_repeated_idx_is_reported_and_the_draw_goes_on(tmp_path):
    write_ultraedit(tmp_path, ["rgb"] * 8, shards=2, idx=[1, 2, 3, 2, 4, 5, 6, 3])
    subset = draw_subset(UltraEditLoader(tmp_path, "FreeForm_0"), "ultraedit", None, progress=False)
    assert sorted(subset.ids) == [f"ultraedit/FreeForm_0/{i}" for i in range(1, 7)]
    assert subset.pool == 6
    assert subset.duplicates == {"ultraedit/FreeForm_0/2": [1, 3], "ultraedit/FreeForm_0/3": [2, 7]}
    assert read_subset(subset.write(tmp_path / "subsets")).duplicates == subset.duplicates
    # The id names the first row: its image is the one hashed for the leakage guard.
    first = next(iter(UltraEditLoader(tmp_path, "FreeForm_0", ids={"ultraedit/FreeForm_0/2"})))
    assert first.request == "What if the horse 1 wears a hat?"
    assert subset.image_sha256["ultraedit/FreeForm_0/2"] == first.image_sha256()


def test_read_subset_accepts_a_plain_id_list_and_rejects_garbage(tmp_path):
    (tmp_path / "x.json").write_text('["a", "b"]')
    assert read_subset(tmp_path / "x.json").ids == ["a", "b"]
    (tmp_path / "y.json").write_text('{"nope": 1}')
    with pytest.raises(ValueError, match="'ids' list"):
        read_subset(tmp_path / "y.json")
    with pytest.raises(FileNotFoundError, match="imageedit_r1.data subsets"):
        subset_ids("realedit", tmp_path / "none")


# ----------------------------------------------------------------------------- export


def test_export_writes_both_formats_with_the_contract_columns(tmp_path):
    write_realedit(tmp_path / "re", {"train": ["rgb", "exif", "cmyk", "rgba", "corrupt", "l"]})
    samples = list(RealEditLoader(tmp_path / "re", "train"))
    labels = _label_file(tmp_path / "labels.jsonl", samples[:4])  # one readable sample stays unlabelled
    report = export_labelled(
        [RealEditLoader(tmp_path / "re", "train")],
        LabelIndex.from_files([labels]),
        tmp_path / "out",
        progress=False,
        val_fraction=0.3,
        seed=0,
    )
    # The readable unlabelled sample and the unreadable one are both counted as left out, though
    # neither is decoded (no skip is recorded for the corrupt image).
    assert report.stats.total == 4 and report.unlabelled == 2
    assert report.skipped.skipped_count == 0
    ids = {s.id: s for s in samples}
    for split in ("train", "val"):
        easy = list(iter_rows(tmp_path / "out" / "easyr1" / f"{split}.parquet"))
        verl = list(iter_rows(tmp_path / "out" / "verl" / f"{split}.parquet"))
        assert len(easy) == len(verl) == report.stats.rows[split]
        for row_e, row_v in zip(easy, verl, strict=True):
            sample = ids[row_v["extra_info"]["id"]]
            assert split_of(sample.id, 0, 0.3) == split == row_v["extra_info"]["split"]
            assert row_e["problem"] == "<image>" + sample.request
            assert row_e["answer"] == GT and json.loads(row_e["answer"])["subjects"] == ["coat", "hair"]
            assert len(row_e["images"]) == 1 and row_e["images"][0]["bytes"].startswith(b"\x89PNG")
            assert row_v["data_source"] == "imageedit_r1/realedit"
            assert row_v["prompt"] == [{"role": "user", "content": decomposition_prompt(sample.request)}]
            assert row_v["prompt"][0]["content"].count("<image>") == len(row_v["images"]) == 1
            assert row_v["reward_model"] == {"style": "rule", "ground_truth": GT}
            assert row_v["ability"] == "image_edit_decomposition"
            assert row_v["extra_info"]["image_sha256"] == sample.image_sha256()
    manifest = json.loads((tmp_path / "out" / "export_manifest.json").read_text())
    assert manifest["rows"] == report.stats.rows and manifest["teacher_models"] == ["teacher-x"]
    assert sorted(manifest["ids"]["train"] + manifest["ids"]["val"]) == sorted(s.id for s in samples[:4])


def test_same_seed_same_split_and_content_lookup_catches_changed_requests(tmp_path):
    path = write_manifest(tmp_path / "m", ["rgb", "l", "p"])
    samples = list(ManifestLoader(path))
    labels = _label_file(tmp_path / "labels.jsonl", samples)
    # The request of req-1 changed after labelling: its label no longer applies.
    text = path.read_text().replace("make sky 1 a sunset", "make sky 1 purple")
    path.write_text(text)
    report = export_labelled([ManifestLoader(path)], LabelIndex.from_files([labels]), tmp_path / "o", progress=False)
    assert report.unlabelled == 1 and report.stats.total == 2


def test_leakage_guard_refuses_by_id_and_by_image_hash_and_writes_nothing(tmp_path):
    write_psr(tmp_path / "psr", ["rgb", "l", "p", "rgba"], pairings=1)
    samples = list(PSRLoader(tmp_path / "psr"))
    eval_subset = draw_subset(PSRLoader(tmp_path / "psr", ids={"psr/p000"}), "psr", None, progress=False)
    eval_subset.write(tmp_path / "subsets")
    # A manifest that reuses p002's image under a new id: caught by the image hash.
    samples[2].image.save(tmp_path / "copy.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "mine-1", "image": "copy.png", "request": "brighten it"}) + "\n")
    eval_subset.image_sha256["psr/p002"] = samples[2].image_sha256()
    eval_subset.ids.append("psr/p002")
    eval_subset.write(tmp_path / "subsets")

    loaders = [PSRLoader(tmp_path / "psr"), ManifestLoader(manifest)]
    labelled = samples + list(ManifestLoader(manifest))
    labels = LabelIndex.from_files([_label_file(tmp_path / "labels.jsonl", labelled)])
    guard = EvalGuard.from_paths([tmp_path / "subsets"])
    with pytest.raises(LeakageError) as info:
        export_labelled(loaders, labels, tmp_path / "out", guard=guard, progress=False)
    message = str(info.value)
    assert "3 RL samples overlap" in message
    assert "id psr/p000 is in eval subset psr" in message and "image of mine-1" in message
    assert not list((tmp_path / "out").rglob("*.parquet*"))  # nothing half-written

    report = export_labelled(
        [PSRLoader(tmp_path / "psr"), ManifestLoader(manifest)],
        labels,
        tmp_path / "out",
        guard=guard,
        drop_eval_overlap=True,
        progress=False,
    )
    assert report.stats.total == 2 and len(report.overlaps) == 3
    exported = sorted(report.stats.ids["train"] + report.stats.ids["val"])
    assert exported == ["psr/p001", "psr/p003"]


def test_easyr1_jsonl_references_image_files(tmp_path):
    path = write_manifest(tmp_path / "m", ["rgb", "exif"])
    samples = list(ManifestLoader(path))
    stats = write_items(
        [ExportItem(s, GT) for s in samples], tmp_path / "out", formats=["easyr1"], file_format="jsonl", val_fraction=0.0
    )
    assert stats.rows == {"train": 2, "val": 0}
    rows = [json.loads(line) for line in (tmp_path / "out" / "easyr1" / "train.jsonl").read_text().splitlines()]
    for row, sample in zip(rows, samples, strict=True):
        assert row["problem"] == easyr1_problem(sample.request)
        (image,) = row["images"]
        assert image == f"images/{sample.image_sha256()}.png"
        assert (tmp_path / "out" / "easyr1" / image).is_file()
    assert (tmp_path / "out" / "easyr1" / "val.jsonl").read_text() == ""
    with pytest.raises(ValueError, match="verl reads parquet"):
        write_items([], tmp_path / "x", formats=["verl"], file_format="jsonl")


def test_a_failing_source_leaves_no_files(tmp_path):
    path = write_manifest(tmp_path / "m", ["rgb"])
    sample = next(iter(ManifestLoader(path)))

    def items():
        yield ExportItem(sample, GT)
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError, match="source died"):
        write_items(items(), tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def _manifest_of_sizes(folder, sizes, request="add a cat"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (30 + i, 120, 200)).save(folder / f"{i}.png")
        text = request if isinstance(request, str) else request[i]
        lines.append(json.dumps({"id": f"s{i}", "image": f"{i}.png", "request": text}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return list(ManifestLoader(folder / "m.jsonl"))


def _stored_size(ref):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(ref["bytes"])).size


def test_images_are_written_at_the_budget_size(tmp_path):
    from imageedit_r1.image_budget import ImageBudget

    budget = ImageBudget(3_136, 10_000)
    (sample,) = _manifest_of_sizes(tmp_path / "m", [(400, 100)])
    stats = write_items([ExportItem(sample, GT)], tmp_path / "out", image_budget=budget, val_fraction=0.0)
    (row,) = list(iter_rows(tmp_path / "out" / "easyr1" / "train.parquet"))
    assert _stored_size(row["images"][0]) == budget.fit(400, 100).size == (196, 28)
    (verl,) = list(iter_rows(tmp_path / "out" / "verl" / "train.parquet"))
    image = verl["images"][0]
    assert _stored_size(image) == (196, 28)
    assert (image["min_pixels"], image["max_pixels"]) == (3_136, 10_000)  # what verl hands to fetch_image
    assert stats.resized == 1 and stats.padded == 0


@pytest.mark.slow
def test_rows_a_trainer_cannot_use_are_made_trainable_or_refused_with_a_reason(tmp_path):
    """A 4600x20 banner used to be written as is; Qwen's processor refuses it and verl drops the row."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from imageedit_r1.image_budget import DEFAULT_BUDGET

    sizes = [(4600, 20), (20, 4600), (5, 900), (900, 5), (1, 1), (28, 4200), (640, 480), (640, 480)]
    requests = ["add a cat"] * 7 + ["add a cat " * 400]  # the last one is too long for any prompt budget
    samples = _manifest_of_sizes(tmp_path / "m", sizes, requests)
    stats = write_items([ExportItem(s, GT) for s in samples], tmp_path / "out", val_fraction=0.0)
    assert stats.total == 7 and stats.dropped == {"prompt too long": ["s7"]}
    assert stats.padded == 2  # the two banners
    rows = list(iter_rows(tmp_path / "out" / "verl" / "train.parquet"))
    for row in rows:
        w, h = _stored_size(row["images"][0])
        # Qwen's processor takes the stored image (it raises on a ratio over 200) and keeps its size.
        assert smart_resize(h, w, 28, DEFAULT_BUDGET.min_pixels, DEFAULT_BUDGET.max_pixels) == (h, w)


def test_cli_export_reports_reasons_and_fails_when_nothing_is_kept(tmp_path, capsys):
    from imageedit_r1.data.__main__ import main

    samples = _manifest_of_sizes(tmp_path / "m", [(64, 64), (4600, 20)], ["add a cat " * 400, "add a dog"])
    labels = _label_file(tmp_path / "labels.jsonl", samples)
    args = ["-q", "export", "--source", f"manifest:{tmp_path / 'm' / 'm.jsonl'}", "--labels", str(labels),
            "--no-leakage-guard"]
    assert main([*args, "--out", str(tmp_path / "o1")]) == 0
    out = capsys.readouterr().out
    assert "exported 1 samples" in out and "1 padded" in out and "dropped, prompt too long: 1 (e.g. s0)" in out
    manifest = json.loads((tmp_path / "o1" / "export_manifest.json").read_text())
    assert manifest["image_budget"] == {"min_pixels": 262_144, "max_pixels": 1_003_520}
    assert manifest["dropped"] == {"prompt too long": ["s0"]} and manifest["padded"] == 1

    only_long = _manifest_of_sizes(tmp_path / "m2", [(64, 64)], ["add a cat " * 400])
    labels2 = _label_file(tmp_path / "labels2.jsonl", only_long)
    code = main(["-q", "export", "--source", f"manifest:{tmp_path / 'm2' / 'm.jsonl'}", "--labels", str(labels2),
                 "--no-leakage-guard", "--out", str(tmp_path / "o2")])
    assert code == 1 and "nothing was exported" in capsys.readouterr().err
