"""Shared plumbing: image intake, retries, config, prompts."""

import io
from dataclasses import dataclass, field

import pytest
from PIL import Image

from imageedit_r1.config import load_config
from imageedit_r1.images import ImageLoadError, image_sha256, load_image, to_png_bytes
from imageedit_r1.prompts import prompt_sha256, render_prompt
from imageedit_r1.retry import RetriesExhausted, RetryableError, RetryPolicy, call_with_retries


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (8, 6), (255, 0, 0, 0)),  # fully transparent red -> white
        Image.new("LA", (8, 6), (0, 0)),
        Image.new("P", (8, 6), 3),
        Image.new("CMYK", (8, 6), (0, 255, 255, 0)),
        Image.new("L", (8, 6), 128),
        Image.new("1", (8, 6), 1),
        Image.new("I;16", (8, 6), 4000),
        Image.new("F", (8, 6), 0.5),
    ],
    ids=lambda im: im.mode,
)
def test_exotic_modes_become_rgb_of_the_same_size(image):
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == (8, 6)


def test_transparency_is_composited_on_white():
    assert load_image(Image.new("RGBA", (2, 2), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def _gray(image: Image.Image) -> list[int]:
    return [pixel[0] for pixel in load_image(image).getdata()]


def _high_depth_images(values: list[int]) -> list[tuple[str, bytes | Image.Image]]:
    """The same 16-bit samples in every form Pillow hands out: I;16 (PNG, TIFF), I;16B, I;16L, I (PPM, raw)."""
    import numpy as np

    array = np.array([values], dtype=np.uint16)
    forms = [
        ("png I;16", encoded(Image.fromarray(array), "PNG")),
        ("tiff I;16", encoded(Image.fromarray(array), "TIFF")),
        ("ppm I", encoded(Image.fromarray(array), "PPM")),
        ("I;16B", Image.frombytes("I;16B", (len(values), 1), array.astype(">u2").tobytes())),
        ("I;16L", Image.frombytes("I;16L", (len(values), 1), array.astype("<u2").tobytes())),
        ("I", Image.fromarray(array.astype(np.int32))),
    ]
    for name, form in forms:
        mode = form.mode if isinstance(form, Image.Image) else Image.open(io.BytesIO(form)).mode
        assert mode.startswith("I"), (name, mode)
    return forms


@pytest.mark.parametrize("values, expected", [
    ([65535, 65535], [255, 255]),  # uniform white: was black when stretched per image
    ([32768, 32768], [128, 128]),  # uniform mid-grey: was black
    ([1000, 1005, 1010], [4, 4, 4]),  # a dark scan stays dark: was stretched to 0..255
    ([0, 257, 65535], [0, 1, 255]),
])
def test_high_bit_depth_is_scaled_by_bit_depth_in_every_mode(values, expected):
    for name, form in _high_depth_images(values):
        assert _gray(form) == expected, name


def test_32_bit_and_float_images_are_scaled_by_their_range():
    import numpy as np

    tiff32 = encoded(Image.fromarray(np.array([[0, 2**31 - 1]], dtype=np.int32)), "TIFF")  # BitsPerSample 32
    assert _gray(tiff32) == [0, 255]
    big = Image.fromarray(np.array([[0, 2**20]], dtype=np.int32))  # beyond 16 bits: 32-bit scale
    assert _gray(big) == [0, 0]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0, 7.0, -1.0, np.nan]], dtype=np.float32))
    assert _gray(floats) == [0, 128, 255, 255, 0, 0]
    assert _gray(encoded(Image.fromarray(np.array([[0.25, 0.25]], dtype=np.float32)), "TIFF")) == [64, 64]


def test_malformed_exif_keeps_the_image_and_its_orientation():
    from PIL import ImageOps

    from tests.data_fixtures import image_bytes

    data = image_bytes("bad_exif", size=(40, 20))
    with pytest.raises(Exception) as info:  # what Pillow does with it: the whole kind we must survive
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    assert type(info.value).__name__ == "error"  # struct.error
    loaded = load_image(data)
    assert loaded.size == (20, 40)  # orientation 6 applied from the tag alone
    rotated = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270)
    assert loaded.tobytes() == rotated.convert("RGB").tobytes()


@pytest.mark.parametrize("fault", [ValueError("bad"), TypeError("bad"), KeyError(282), ZeroDivisionError()])
def test_any_exif_fault_keeps_the_pixels(fault, monkeypatch):
    from PIL import ImageOps

    data = encoded(Image.new("RGB", (40, 20), "red"), "JPEG")

    def broken(image, **kwargs):
        raise fault

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    monkeypatch.setattr(Image.Image, "getexif", lambda self: (_ for _ in ()).throw(fault))
    assert load_image(data).size == (40, 20)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    loaded = load_image(encoded(image, "JPEG", exif=exif.tobytes()))
    assert loaded.size == (20, 40)


def test_sources_path_bytes_dict(tmp_path):
    image = Image.new("RGB", (5, 4), "blue")
    path = tmp_path / "x.png"
    image.save(path)
    data = path.read_bytes()
    for source in (path, str(path), data, {"bytes": data}, {"path": str(path), "bytes": None}):
        assert image_sha256(load_image(source)) == image_sha256(image)


def test_corrupt_missing_and_oversized_images_are_clear_errors(tmp_path):
    good = encoded(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(ImageLoadError, match="unreadable"):
        load_image(good[: len(good) // 2])
    with pytest.raises(ImageLoadError, match="unreadable"):
        load_image(b"not an image at all")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(good, max_pixels=100)
    with pytest.raises(ImageLoadError, match="neither 'bytes' nor 'path'"):
        load_image({"other": 1})


def test_png_bytes_round_trip():
    image = Image.new("RGB", (3, 3), (1, 2, 3))
    assert load_image(to_png_bytes(image)).getpixel((1, 1)) == (1, 2, 3)


def test_retries_are_bounded_and_only_for_transient_errors():
    calls = []
    sleeps = []

    def flaky():
        calls.append(1)
        raise RetryableError("429", retry_after=2.0)

    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(flaky, RetryPolicy(attempts=3, base_delay=0.5, jitter=0.0), sleep=sleeps.append)
    assert len(calls) == 3 and info.value.attempts == 3
    assert sleeps == [2.0, 2.0]  # Retry-After respected over the shorter backoff

    def permanent():
        calls.append(1)
        raise ValueError("bad request")

    calls.clear()
    with pytest.raises(ValueError):
        call_with_retries(permanent, RetryPolicy(attempts=5), sleep=sleeps.append)
    assert len(calls) == 1


def test_retry_succeeds_after_transient_failures():
    outcomes = iter([RetryableError("500"), RetryableError("500"), "ok"])

    def sometimes():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert call_with_retries(sometimes, RetryPolicy(attempts=3, base_delay=0.0), sleep=lambda s: None) == "ok"


@dataclass
class Inner:
    steps: int = 28
    guidance: float = 2.5


@dataclass
class Outer:
    name: str = "flux-kontext"
    inner: Inner = field(default_factory=Inner)


def test_config_layers_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  steps: 10\n")
    config = load_config(Outer, path, ["inner.guidance=4.0"])
    assert isinstance(config, Outer) and config.inner.steps == 10 and config.inner.guidance == 4.0
    with pytest.raises(Exception, match="stesp"):
        load_config(Outer, None, ["inner.stesp=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(Outer, None, ["inner.steps"])
    with pytest.raises(FileNotFoundError):
        load_config(Outer, tmp_path / "nope.yaml")


def test_decompose_prompt_renders_with_content_and_lists_the_taxonomy():
    from imageedit_r1.taxonomy import ACTIONS

    text = render_prompt("decompose", content="Remove the lamp")
    assert "Edit request: Remove the lamp" in text
    listed = text.split("canonical edit actions:")[1].split("\n")[1].rstrip(".").split(", ")
    assert listed == list(ACTIONS)
    assert len(prompt_sha256("decompose")) == 64
    with pytest.raises(Exception, match="content"):
        render_prompt("decompose")
    with pytest.raises(FileNotFoundError, match="available"):
        render_prompt("nope")
