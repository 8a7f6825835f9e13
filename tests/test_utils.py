"""Shared plumbing: image intake, JSONL store, retries, config, prompts."""

import io
from dataclasses import dataclass, field

import pytest
from PIL import Image

from imageedit_r1.config import load_config
from imageedit_r1.images import ImageLoadError, image_sha256, load_image, to_png_bytes
from imageedit_r1.jsonl import JsonlStore, append_jsonl, content_key, read_jsonl
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


def test_sixteen_bit_gradients_are_scaled_not_clipped():
    image = Image.new("I;16", (2, 1))
    image.putpixel((0, 0), 1000)
    image.putpixel((1, 0), 60000)
    loaded = load_image(image)
    assert loaded.getpixel((0, 0)) == (0, 0, 0) and loaded.getpixel((1, 0)) == (255, 255, 255)


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


def test_jsonl_survives_a_torn_last_line_and_last_write_wins(tmp_path):
    path = tmp_path / "results.jsonl"
    store = JsonlStore(path)
    store.put("a", {"status": "failed"})
    store.put("b", {"status": "ok"})
    store.put("a", {"status": "ok", "score": 7})
    with open(path, "a") as handle:
        handle.write('{"key": "c", "status": "o')  # killed mid-write
    reopened = JsonlStore(path)
    assert len(reopened) == 2 and "c" not in reopened
    assert reopened.get("a") == {"key": "a", "status": "ok", "score": 7}
    append_jsonl(path, {"key": "d"})  # appending after a torn line still yields readable records
    assert [r["key"] for r in read_jsonl(path)][-1] == "d"


def test_content_key_is_order_independent_for_dicts():
    assert content_key({"a": 1, "b": 2}, "x") == content_key({"b": 2, "a": 1}, "x")
    assert content_key("x") != content_key("y")


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
    from imageedit_r1.decomposition import ACTIONS

    text = render_prompt("decompose", content="Remove the lamp")
    assert "Edit request: Remove the lamp" in text
    listed = text.split("canonical edit actions:")[1].split("\n")[1].rstrip(".").split(", ")
    assert listed == list(ACTIONS)
    assert len(prompt_sha256("decompose")) == 64
    with pytest.raises(Exception, match="content"):
        render_prompt("decompose")
    with pytest.raises(FileNotFoundError, match="available"):
        render_prompt("nope")
