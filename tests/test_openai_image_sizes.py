"""openai-image meets each model's size rule exactly for any input shape, and gives the input back.

The real ``openai`` client talks to a loopback fake that enforces the documented rules on its own
(``openai_size_problem``): gpt-image-2 free sizes (multiples of 16, 1:3..3:1, 655,360-8,294,400 px,
longest edge <= 3,840), gpt-image-1 / 1.5 fixed sizes, dall-e-2 squares (square PNG upload, base64
only on request). The grid runs from 1:20 to 20:1, from 1x1 to a 12 MP photo and a 20:1 panorama.
"""

import io
import math

import pytest
from PIL import Image, ImageOps

from imageedit_r1.agents.editors import EditorError, build_editor
from imageedit_r1.agents.editors.openai_sizes import SIZE_RULES, size_rule
from imageedit_r1.retry import RetryPolicy
from imageedit_r1.testing.fake_image_servers import fake_openai_images_server, openai_size_problem

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, jitter=0.0)
MODELS = ["gpt-image-2", "gpt-image-1", "gpt-image-1.5", "dall-e-2"]
# 1:20 .. 20:1 on a log grid, plus the exact limits and the 3:1 case the service refused before.
ASPECTS = sorted({*(20 ** (k / 8) for k in range(-8, 9)), 3.0, 1 / 3, 3.01, 1 / 3.01, 1500 / 500})


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")


def shape(aspect, area):
    width = max(1, round(math.sqrt(area * aspect)))
    return width, max(1, round(width / aspect))


def banded(width, height):
    """Blue with a yellow left third: where each colour lands shows the geometry survived."""
    image = Image.new("RGB", (width, height), (30, 140, 220))
    image.paste((250, 250, 0), (0, 0, max(1, width // 3), height))
    return image


def no_upload_problem(model, size):
    """The fake's own check of a size, with an upload that meets the upload rules."""
    width, height = (int(v) for v in size.split("x"))
    return openai_size_problem(model, size, Image.new("RGB", (width, height)), 1000)


def test_the_table_holds_the_documented_rules():
    free = SIZE_RULES["gpt-image-2"]
    assert (free.multiple, free.min_aspect, free.max_aspect) == (16, 1 / 3, 3.0)
    assert (free.min_pixels, free.max_pixels, free.max_edge) == (655_360, 8_294_400, 3840)
    for model in ("gpt-image-1", "gpt-image-1.5"):
        assert SIZE_RULES[model].sizes == ((1024, 1024), (1536, 1024), (1024, 1536))
    assert SIZE_RULES["dall-e-2"].sizes == ((256, 256), (512, 512), (1024, 1024))
    assert size_rule("gpt-image-2-2026-04-21") is free and size_rule("gpt-image-2.5-flare") is free


@pytest.mark.parametrize("model", [*MODELS, "gpt-image-1-mini", "gpt-image-2-2026-04-21"])
@pytest.mark.parametrize("area", [1, 400, 1024 * 1024, 12_000_000])
def test_every_aspect_and_scale_gets_a_size_the_service_takes(model, area):
    rule = size_rule(model)
    for aspect in ASPECTS:
        width, height = shape(aspect, area)
        for target in (256 * 256, 1024 * 1024, 4096 * 4096):
            w, h = rule.choose(width, height, area=target)
            assert rule.violation(w, h) is None
            assert no_upload_problem(model, f"{w}x{h}") is None, (model, width, height, target, w, h)
            if not rule.sizes:  # free sizes: the input's aspect exactly, up to 16-pixel rounding
                want = min(3.0, max(1 / 3, width / height))
                assert abs(math.log(w / h / want)) < 16 / min(w, h)


def test_3_to_1_is_asked_at_exactly_3_to_1():
    # Rounding each side down on its own asked for 1760x576 (3.056), which the service refuses.
    assert size_rule("gpt-image-2").choose(1500, 500) == (1776, 592)
    assert no_upload_problem("gpt-image-2", "1760x576") is not None


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.slow
def test_a_grid_of_aspects_round_trips_through_the_real_client(model):
    calls = []

    def invert(image, prompt, request):
        calls.append(image.size)
        return ImageOps.invert(image)

    with fake_openai_images_server(invert) as server:
        editor = build_editor("openai-image", model=model, base_url=server.url + "/v1", retry=FAST, timeout=10)
        for aspect in ASPECTS[::2]:
            width, height = shape(aspect, 60 * 60)
            out = editor.edit(banded(width, height), "Invert the colours")
            assert out.size == (width, height)
            if width >= 6:  # the yellow third and the blue rest come back inverted, where they were
                r, g, b = out.getpixel((0, height // 2))
                assert b > 150 and r < 100, (model, width, height)
                r, g, b = out.getpixel((width - 1, height // 2))
                assert r > 150 and b < 100, (model, width, height)
        for request in server.requests:
            fields = request.multipart()
            assert fields["model"][0].text == model
            size = fields["size"][0].text
            assert no_upload_problem(model, size) is None
            sent = Image.open(io.BytesIO(fields["image"][0].data))
            assert f"{sent.width}x{sent.height}" == size  # the upload is exactly the size asked for
    assert len(calls) == len(ASPECTS[::2])


@pytest.mark.parametrize("size", [(1, 1), (2, 40), (40, 2), (3, 3)])
@pytest.mark.parametrize("model", ["gpt-image-2", "dall-e-2"])
def test_tiny_images(model, size):
    with fake_openai_images_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        editor = build_editor("openai-image", model=model, base_url=server.url + "/v1", retry=FAST, timeout=10)
        out = editor.edit(Image.new("RGB", size, (250, 250, 0)), "Invert the colours")
    assert out.size == size and out.getpixel((0, 0))[2] > 200


@pytest.mark.slow
@pytest.mark.parametrize("size", [(4000, 3000), (16000, 800), (800, 16000)])
def test_huge_images_are_sent_at_the_requested_size_and_come_back_whole(size):
    with fake_openai_images_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        editor = build_editor("openai-image", base_url=server.url + "/v1", retry=FAST, timeout=60)
        out = editor.edit(banded(*size), "Invert the colours")
    assert out.size == size
    assert out.getpixel((0, size[1] // 2))[2] > 150 and out.getpixel((size[0] - 1, size[1] // 2))[0] > 150
    fields = server.requests[0].multipart()
    width, height = (int(v) for v in fields["size"][0].text.split("x"))
    assert width * height <= 1.1 * 1024 * 1024 and len(fields["image"][0].data) < 50 * 1024 * 1024


def test_dall_e_2_asks_for_base64_and_sends_a_square():
    with fake_openai_images_server(lambda img, prompt, req: img) as server:
        editor = build_editor("openai-image", model="dall-e-2", base_url=server.url + "/v1", retry=FAST, timeout=10)
        assert editor.edit(banded(300, 100), "x").size == (300, 100)
    fields = server.requests[0].multipart()
    assert fields["response_format"][0].text == "b64_json" and fields["size"][0].text == "1024x1024"


@pytest.mark.parametrize("model, size, message", [
    ("gpt-image-1.5", "1760x576", "not one of 1024x1024"),
    ("gpt-image-2", "1760x576", "aspect ratio must be within"),
    ("gpt-image-2", "512x512", "at least 655,360 pixels"),
    ("gpt-image-2", "4096x1376", "longest edge"),
    ("dall-e-2", "auto", "not available for dall-e-2"),
])
def test_an_explicit_size_the_model_does_not_take_fails_before_any_call(model, size, message):
    with pytest.raises(ValueError, match=message):
        build_editor("openai-image", model=model, size=size)


def test_the_fake_refuses_a_size_off_the_rule():
    # The editor's checks off: the service's own 400 comes back as a clear permanent error.
    with fake_openai_images_server(lambda img, prompt, req: img) as server:
        editor = build_editor("openai-image", model="gpt-image-2", base_url=server.url + "/v1", retry=FAST, timeout=10)
        editor.size = "1760x576"
        with pytest.raises(EditorError, match="Invalid size '1760x576'.*between 1:3 and 3:1"):
            editor.edit(banded(150, 50), "x")
    assert len(server.requests) == 1


@pytest.mark.slow
def test_auto_size_sends_a_huge_input_scaled_within_the_largest_output():
    with fake_openai_images_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        editor = build_editor("openai-image", size="auto", base_url=server.url + "/v1", retry=FAST, timeout=30)
        out = editor.edit(banded(4000, 2500), "Invert the colours")
    assert out.size == (4000, 2500)
    fields = server.requests[0].multipart()
    sent = Image.open(io.BytesIO(fields["image"][0].data))
    assert fields["size"][0].text == "auto" and sent.width * sent.height <= 8_294_400
    assert abs(sent.width / sent.height - 1.6) < 0.01
