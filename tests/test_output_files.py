"""Output images by the name the user chose: any extension Pillow writes, a mode the format holds,
an extension it cannot write refused before any work, and a finished edit never lost to a writing error."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageOps

from imageedit_r1.images import ImageFormatError, keeps_alpha, output_format, writable_extensions
from imageedit_r1.pipeline.cli import main
from imageedit_r1.store import atomic_save_image, read_jsonl
from imageedit_r1.testing.fake_image_servers import fake_openai_images_server


def half_transparent(size=(32, 32)) -> Image.Image:
    """Left half transparent over black pixels (as services send a cleared field), right half red."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((200, 30, 40, 255), (size[0] // 2, 0, size[0], size[1]))
    return image


@pytest.mark.parametrize("ext", writable_extensions())
def test_every_extension_pillow_writes_is_written_and_transparency_never_turns_black(tmp_path, ext):
    path = atomic_save_image(half_transparent(), tmp_path / f"edited{ext}")
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*.tmp"))
    try:
        back = Image.open(path)
        back.load()
    except Exception:  # noqa: BLE001 - formats Pillow writes but cannot read (PDF, EPS, Palm)
        return
    pixel = back.convert("RGBA").getpixel((1, 1))
    if keeps_alpha(output_format(path)):
        assert pixel[3] == 0, f"{ext}: the transparency was dropped"
    else:
        assert pixel[:3] == (255, 255, 255) and pixel[3] == 255, f"{ext}: the transparent field became {pixel}"


def test_the_extension_picks_the_format_and_an_unwritable_one_is_refused():
    assert output_format("a/edited.tif") == "TIFF" and output_format("x.JPG") == "JPEG"
    assert output_format("x.webp") == "WEBP" and output_format("no_suffix") == "PNG"
    for name in ("edited.xyz", "edited.psd", "edited.bufr"):  # unknown; read-only; handler not installed
        with pytest.raises(ImageFormatError, match=r"cannot write edited\.\w+: .*use one of \.png, \.jpg"):
            output_format(name)


@pytest.mark.slow
def test_the_offline_demo_writes_a_tif(tmp_path, capsys):
    out = tmp_path / "edited.tif"
    assert main(["--demo", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "TIFF" and image.size == (320, 240)
    trace = json.loads((tmp_path / "edited.tif.trace.json").read_text())
    assert trace["status"] == "ok" and trace["output"]["file"] == "edited.tif"
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.fixture()
def images_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-output-files")
    with fake_openai_images_server(lambda image, prompt, request: ImageOps.invert(image)) as server:
        yield server


def openai_editor(server) -> list[str]:
    return ["--mode", "original", "--editor", "openai-image", f"editor.options.base_url={server.url}/v1"]


@pytest.mark.parametrize(("ext", "fmt"), [(".tif", "TIFF"), (".jpg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"),
                                          (".gif", "GIF"), (".ppm", "PPM")])
def test_pipeline_out_writes_the_extensions_format(tmp_path, images_server, ext, fmt):
    Image.new("RGB", (48, 36), (20, 90, 200)).save(tmp_path / "in.png")
    out = tmp_path / f"edited{ext}"
    assert main(["--image", str(tmp_path / "in.png"), "--request", "invert it", "--out", str(out),
                 *openai_editor(images_server)]) == 0
    with Image.open(out) as image:
        assert image.format == fmt and image.size == (48, 36)
    assert json.loads((tmp_path / f"edited{ext}.trace.json").read_text())["output"]["file"] == out.name


@pytest.mark.parametrize("name", ["edited.xyz", "edited.psd"])
def test_an_extension_pillow_cannot_write_is_refused_before_any_work(tmp_path, images_server, capsys, name):
    Image.new("RGB", (48, 36)).save(tmp_path / "in.png")
    assert main(["--image", str(tmp_path / "in.png"), "--request", "invert it", "--out", str(tmp_path / name),
                 *openai_editor(images_server)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out: cannot write {name}") and ".png" in err[0]
    assert not images_server.requests and sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_the_demo_refuses_an_unwritable_extension_before_building_anything(tmp_path, capsys):
    assert main(["--demo", "--out", str(tmp_path / "edited.tiff2")]) == 2
    captured = capsys.readouterr()
    assert "OFFLINE DEMO" not in captured.out and "cannot write edited.tiff2" in captured.err
    assert not list(tmp_path.iterdir())


def test_an_edit_the_format_cannot_hold_is_kept_as_png_with_one_line(tmp_path, images_server, capsys):
    # WebP holds at most 16383 pixels a side: known only once the edit is there.
    Image.new("RGB", (16400, 8), (20, 90, 200)).save(tmp_path / "wide.png")
    out = tmp_path / "edited.webp"
    assert main(["--image", str(tmp_path / "wide.png"), "--request", "invert it", "--out", str(out),
                 *openai_editor(images_server)]) == 0
    err = capsys.readouterr().err
    assert f"could not write {out}" in err and f"wrote {tmp_path / 'edited.png'} instead" in err
    assert not out.exists()
    with Image.open(tmp_path / "edited.png") as image:
        assert image.size == (16400, 8)
    trace = json.loads((tmp_path / "edited.webp.trace.json").read_text())
    assert trace["status"] == "ok" and trace["output"]["file"] == "edited.png"
    assert "WebP" in trace["output"]["not_written"]["reason"]


def two_item_manifest(tmp_path):
    """Two small images and the manifest that asks to invert each (ids item0, item1)."""
    for index in range(2):
        Image.new("RGB", (40, 30), (90 * index, 60, 10)).save(tmp_path / f"{index}.png")
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"item{i}", "image": f"{i}.png", "request": "invert it"}) + "\n"
                                for i in range(2)))
    return manifest


def test_manifest_outputs_take_the_out_format_and_resume(tmp_path, images_server, capsys):
    manifest = two_item_manifest(tmp_path)
    out_dir = tmp_path / "run"
    args = ["--manifest", str(manifest), "--out-dir", str(out_dir), *openai_editor(images_server)]
    assert main([*args, "--out-format", "tif"]) == 0
    for index in range(2):
        with Image.open(out_dir / f"item{index}.tif") as image:
            assert image.format == "TIFF" and image.size == (40, 30)
    assert {r["output"] for r in read_jsonl(out_dir / "results.jsonl")} == {"item0.tif", "item1.tif"}
    asked = len(images_server.requests)
    assert main([*args, "--out-format", "tif"]) == 0 and len(images_server.requests) == asked  # resumed: all done
    capsys.readouterr()
    assert main([*args, "--out-format", "xyz"]) == 2
    assert "error: --out-format: cannot write item.xyz" in capsys.readouterr().err
    assert len(images_server.requests) == asked


def test_the_png_fallback_never_writes_over_the_input_or_any_file(tmp_path, images_server, capsys):
    # The input is photo.png; photo.webp cannot hold 17000 pixels a side: the PNG goes to a free name.
    source = tmp_path / "photo.png"
    Image.new("RGB", (17000, 16), (20, 90, 200)).save(source)
    before = source.read_bytes()
    out = tmp_path / "photo.webp"
    assert main(["--image", str(source), "--request", "invert it", "--out", str(out),
                 *openai_editor(images_server)]) == 0
    assert source.read_bytes() == before
    written = tmp_path / "photo-1.png"
    assert f"could not write {out} (" in (err := capsys.readouterr().err) and f"; wrote {written} instead" in err
    with Image.open(written) as image:
        assert image.size == (17000, 16) and image.getpixel((0, 0)) == (235, 165, 55)  # the edit, inverted
    trace = json.loads((tmp_path / "photo.webp.trace.json").read_text())
    assert trace["output"]["file"] == "photo-1.png" and trace["output"]["not_written"]["file"] == "photo.webp"


def test_a_batchs_png_fallback_never_writes_over_an_input_beside_it(tmp_path, images_server, capsys):
    # Inputs kept in the output folder under their ids, as a user may: wide.webp fails, wide.png is the input.
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    Image.new("RGB", (17000, 8), (20, 90, 200)).save(out_dir / "wide.png")
    before = (out_dir / "wide.png").read_bytes()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "wide", "image": "run/wide.png", "request": "invert it"}) + "\n")
    assert main(["--manifest", str(manifest), "--out-dir", str(out_dir), "--out-format", "webp",
                 *openai_editor(images_server)]) == 0
    assert (out_dir / "wide.png").read_bytes() == before
    assert f"wrote {out_dir / 'wide-1.png'} instead" in capsys.readouterr().err
    (record,) = read_jsonl(out_dir / "results.jsonl")
    assert record["output"] == "wide-1.png"
    assert json.loads((out_dir / "wide.trace.json").read_text())["output"]["file"] == "wide-1.png"


def test_two_outputs_of_one_name_in_two_formats_keep_a_trace_each(tmp_path, images_server):
    Image.new("RGB", (40, 30), (20, 90, 200)).save(tmp_path / "in.png")
    for name, request in (("a.png", "invert it"), ("a.jpg", "invert it again")):
        assert main(["--image", str(tmp_path / "in.png"), "--request", request, "--out", str(tmp_path / name),
                     *openai_editor(images_server)]) == 0
    for name, request in (("a.png", "invert it"), ("a.jpg", "invert it again")):
        trace = json.loads((tmp_path / f"{name}.trace.json").read_text())
        assert trace["output"]["file"] == name and trace["request"] == request


def test_a_batch_rerun_in_another_format_says_the_items_done_earlier_are_kept(tmp_path, images_server, capsys):
    manifest = two_item_manifest(tmp_path)
    args = ["--manifest", str(manifest), "--out-dir", str(tmp_path / "run"), *openai_editor(images_server)]
    assert main([*args, "--out-format", "jpg"]) == 0
    capsys.readouterr()
    assert main(args) == 0  # png now: the .jpg items are not edited again, and the run says so
    out = capsys.readouterr().out
    assert "0 edited, 2 already done, 0 failed" in out
    assert ("note: 2 item(s) were finished earlier as another format (item0.jpg, item1.jpg), not .png: they are "
            "kept as they are; for .png files, write to another --out-dir") in out
    assert main([*args, "--out-format", "jpeg"]) == 0  # the same format by another name: nothing to say
    assert "note:" not in capsys.readouterr().out
