"""One rule for transparency: composited onto white, unless the user asked for it and the output
format keeps it; never black. The real openai and google-genai clients against loopback fakes
answering RGBA PNGs, through the editors and the command line."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imageedit_r1.agents.editors import build_editor
from imageedit_r1.images import to_rgb
from imageedit_r1.pipeline.cli import main
from imageedit_r1.testing.fake_image_servers import fake_gemini_image_server, fake_openai_images_server

WHITE, RED = (255, 255, 255), (200, 30, 40)


def cut_out(image, prompt, request):
    """A "remove the background" answer: the left half cleared (transparent over black pixels, as
    services send it), the subject on the right kept opaque."""
    answer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    answer.paste((*RED, 255), (image.width // 2, 0, image.width, image.height))
    return answer


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-transparency")
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-transparency")


def photo():
    return Image.new("RGB", (64, 48), (30, 140, 220))


def test_an_openai_answer_with_alpha_nobody_asked_for_is_composited_onto_white():
    with fake_openai_images_server(cut_out) as server:  # background "auto": the service chose transparency
        edited = build_editor("openai-image", base_url=f"{server.url}/v1").edit(photo(), "remove the background")
    assert edited.mode == "RGB" and edited.getpixel((5, 24)) == WHITE and edited.getpixel((60, 24)) == RED
    assert "background" not in server.requests[0].multipart()  # auto: left to the service


def test_a_transparent_openai_answer_keeps_its_alpha_when_asked_for():
    with fake_openai_images_server(cut_out) as server:
        editor = build_editor("openai-image", base_url=f"{server.url}/v1", background="transparent")
        edited = editor.edit(photo(), "remove the background")
    assert server.requests[0].multipart()["background"][0].text == "transparent"
    assert edited.mode == "RGBA" and edited.size == (64, 48)
    assert edited.getpixel((5, 24))[3] == 0 and edited.getpixel((60, 24)) == (*RED, 255)


def test_transparency_needs_a_format_that_holds_it_before_any_call():
    with pytest.raises(ValueError, match="needs output_format png or webp"):
        build_editor("openai-image", background="transparent", extra_params={"output_format": "jpeg"})


def test_a_gemini_answer_with_alpha_is_composited_onto_white():
    with fake_gemini_image_server(cut_out) as server:
        edited = build_editor("nano-banana", base_url=server.url).edit(photo(), "remove the background")
    assert edited.mode == "RGB" and edited.getpixel((5, 24)) == WHITE and edited.getpixel((60, 24)) == RED


def run_cli(tmp_path, out_name: str, server, *options: str) -> int:
    photo().save(tmp_path / "in.png")
    return main(["--image", str(tmp_path / "in.png"), "--request", "remove the background", "--out",
                 str(tmp_path / out_name), "--mode", "original", "--editor", "openai-image",
                 f"editor.options.base_url={server.url}/v1", *options])


def test_asked_for_transparency_a_png_keeps_it(tmp_path):
    with fake_openai_images_server(cut_out) as server:
        assert run_cli(tmp_path, "cut.png", server, "editor.options.background=transparent") == 0
    with Image.open(tmp_path / "cut.png") as image:
        assert image.mode == "RGBA" and image.getpixel((5, 24))[3] == 0 and image.getpixel((60, 24)) == (*RED, 255)


def test_asked_for_transparency_a_jpeg_gets_white_and_one_line_saying_so(tmp_path, capsys):
    with fake_openai_images_server(cut_out) as server:
        assert run_cli(tmp_path, "cut.jpg", server, "editor.options.background=transparent") == 0
    assert ("cut.jpg cannot hold transparency; it is composited onto white (.png, .webp, .tif or .gif keep it)"
            in capsys.readouterr().err)
    with Image.open(tmp_path / "cut.jpg") as image:
        assert image.mode == "RGB" and min(image.getpixel((5, 24))) > 245  # white, not black


def test_not_asked_for_transparency_a_png_gets_white(tmp_path):
    with fake_openai_images_server(cut_out) as server:
        assert run_cli(tmp_path, "cut.png", server) == 0
    with Image.open(tmp_path / "cut.png") as image:
        assert image.mode == "RGB" and image.getpixel((5, 24)) == WHITE
    assert json.loads((tmp_path / "cut.png.trace.json").read_text())["editor"]["background"] is None


def png_with(image: Image.Image, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("image", [
    png_with(Image.new("RGB", (4, 4), (0, 0, 0)), transparency=(0, 0, 0)),  # an RGB PNG's tRNS colour key
    png_with(Image.new("L", (4, 4), 0), transparency=0),  # a grey PNG's key
    png_with(Image.new("I;16", (4, 4), 0), transparency=0),  # a 16-bit grey PNG's key
    Image.new("La", (4, 4)),  # premultiplied grey with alpha
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)),
], ids=["rgb-key", "grey-key", "16-bit-key", "La", "RGBA"])
def test_to_rgb_composites_every_kind_of_transparency_onto_white(image):
    assert to_rgb(image).getpixel((1, 1)) == WHITE
