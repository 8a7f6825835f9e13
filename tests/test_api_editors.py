"""nano-banana and openai-image with the real google-genai and openai clients against loopback fakes."""

import pytest
from PIL import Image, ImageOps

from imageedit_r1.agents.editors import EditorError, EditRefusedError, build_editor
from imageedit_r1.retry import RetriesExhausted, RetryPolicy
from imageedit_r1.testing.fake_image_servers import (
    GeminiImageReply,
    fake_gemini_image_server,
    fake_openai_images_server,
    gemini_image_request,
    openai_refusal,
    png_b64,
)
from imageedit_r1.testing.fake_servers import FakeResponse

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, jitter=0.0)


def photo(width=67, height=45):
    image = Image.new("RGB", (width, height), (30, 140, 220))
    image.paste((250, 250, 0), (0, 0, width // 3, height))
    return image


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key")


def invert_at(size):
    def edit(image, prompt, request):
        return ImageOps.invert(image).resize(size)

    return edit


# ----------------------------------------------------------------------------- nano-banana


def nano(server, **options):
    return build_editor("nano-banana", base_url=server.url, retry=FAST, timeout=5, **options)


def test_nano_banana_round_trips_the_image_as_inline_data_and_keeps_the_input_size():
    # The service answers at its own resolution (here 2x); the editor maps it back to 67x45.
    with fake_gemini_image_server(lambda img, prompt, req: ImageOps.invert(img).resize((img.width * 2, img.height * 2))) as server:
        out = nano(server).edit(photo(), "Recoloring coat to scarlet", seed=9)
    assert out.size == (67, 45)
    assert out.getpixel((5, 20))[2] > 200 and out.getpixel((60, 20))[0] > 200  # inverted: yellow->blue, blue->orange
    (request,) = server.requests
    assert request.path.endswith("/models/gemini-2.5-flash-image:generateContent")
    assert request.headers["x-goog-api-key"] == "test-gemini-key"
    prompt, sent = gemini_image_request(request.json)
    assert prompt == "Recoloring coat to scarlet"
    config = request.json["generationConfig"]
    assert config["seed"] == 9 and config["imageConfig"]["aspectRatio"] == "3:2"
    assert abs(sent.width / sent.height - 1.5) < 0.02  # padded to the ratio it asked for


@pytest.mark.parametrize("fault", ["429", "503"])
def test_nano_banana_retries_transient_errors_within_bounds(fault):
    with fake_gemini_image_server(invert_at((67, 45)), faults=[fault, fault]) as server:
        out = nano(server).edit(photo(), "make it red")
    assert out.size == (67, 45) and len(server.requests) == 3
    with fake_gemini_image_server(invert_at((67, 45)), faults=[fault] * 5) as server:
        with pytest.raises(RetriesExhausted, match="gave up after 3 attempts"):
            nano(server).edit(photo(), "make it red")
    assert len(server.requests) == 3


@pytest.mark.parametrize("model", ["gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"])
def test_thinking_image_models_give_the_final_image_not_the_draft_among_their_thoughts(model):
    # Gemini 3 image models send thought parts (a note and a grey draft image, thought: true) first.
    with fake_gemini_image_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        out = nano(server, model=model).edit(photo(), "Invert the colours")
    parts = server_reply_parts(server, model)
    assert [bool(p.get("thought")) for p in parts] == [True, True, False, False]  # note, draft, text, image
    assert "inlineData" in parts[1] and "thoughtSignature" in parts[-1]
    assert out.size == (67, 45)
    r, g, b = out.getpixel((5, 20))  # yellow inverted is blue; the grey draft would have r == g == b
    assert b > 200 and r < 60


def server_reply_parts(server, model):
    """The parts the fake answered with, rebuilt with the same helper (the fake sends exactly these)."""
    from imageedit_r1.testing.fake_image_servers import GeminiImageReply, draft_of, gemini_image_candidate

    image = Image.new("RGB", (8, 8))
    reply = GeminiImageReply(text="Here is the edited image.", image=image)
    assert server.requests[0].path.endswith(f"/models/{model}:generateContent")
    return gemini_image_candidate(reply, thinking=True, draft=draft_of(image))["content"]["parts"]


def test_the_last_of_several_answer_images_is_the_edit():
    first, last = Image.new("RGB", (67, 45), (255, 0, 0)), Image.new("RGB", (67, 45), (0, 255, 0))

    def two_images(img, prompt, req):
        return FakeResponse(200, {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
            {"inlineData": {"mimeType": "image/png", "data": png_b64(first)}},
            {"text": "A second take:"},
            {"inlineData": {"mimeType": "image/png", "data": png_b64(last)}}]}}]})

    with fake_gemini_image_server(two_images) as server:
        assert nano(server).edit(photo(), "make it green").getpixel((30, 20)) == (0, 255, 0)


@pytest.mark.parametrize("finish", ["IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "PROHIBITED_CONTENT", "SAFETY"])
@pytest.mark.parametrize("thinking", [False, True])
def test_a_policy_finish_reason_without_an_image_is_a_refusal_carrying_the_reason(finish, thinking):
    # A thinking model may already have sent its draft among the thoughts: that draft is no answer.
    with fake_gemini_image_server(lambda img, prompt, req: GeminiImageReply(finish_reason=finish, thinking=thinking)) as server:
        with pytest.raises(EditRefusedError, match=f"withheld the image \\(finish reason {finish}\\)") as info:
            nano(server).edit(photo(), "make it red")
    assert info.value.reason == finish
    assert len(server.requests) == 1  # a refusal is not retried


def test_a_blocked_prompt_is_a_refusal_carrying_the_block_reason():
    with fake_gemini_image_server(lambda img, prompt, req: GeminiImageReply(block_reason="PROHIBITED_CONTENT")) as server:
        with pytest.raises(EditRefusedError, match="blocked the request: PROHIBITED_CONTENT") as info:
            nano(server).edit(photo(), "make it red")
    assert info.value.reason == "PROHIBITED_CONTENT" and len(server.requests) == 1


@pytest.mark.parametrize("thinking", [False, True])
def test_text_without_an_image_is_an_error_quoting_the_text_not_a_refusal(thinking):
    said = "Which of the two cars should I remove?"
    with fake_gemini_image_server(lambda img, prompt, req: GeminiImageReply(text=said, thinking=thinking)) as server:
        with pytest.raises(EditorError, match="answered with text but no image.*Which of the two cars") as info:
            nano(server).edit(photo(), "remove the car")
    assert not isinstance(info.value, EditRefusedError)
    assert "Planning the edit" not in str(info.value)  # thoughts are not the answer's text


def test_no_image_and_no_text_is_an_error_naming_the_finish_reason():
    with fake_gemini_image_server(lambda img, prompt, req: GeminiImageReply(finish_reason="NO_IMAGE")) as server:
        with pytest.raises(EditorError, match="returned no image \\(finish reason NO_IMAGE\\)") as info:
            nano(server).edit(photo(), "make it red")
    assert not isinstance(info.value, EditRefusedError)


def test_a_huge_panorama_is_sent_within_the_pixel_cap():
    with fake_gemini_image_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        out = nano(server).edit(photo(16000, 800), "make it red")
    assert out.size == (16000, 800)
    _, sent = gemini_image_request(server.requests[0].json)
    assert sent.width * sent.height <= 4 * 1024 * 1024 and abs(sent.width / sent.height - 21 / 9) < 0.01


def test_nano_banana_without_a_key_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(EditorError, match="set the environment variable GEMINI_API_KEY or GOOGLE_API_KEY"):
        build_editor("nano-banana").edit(photo(), "make it red")


# ----------------------------------------------------------------------------- openai-image


def openai_editor(server, **options):
    return build_editor("openai-image", base_url=server.url + "/v1", retry=FAST, timeout=5, **options)


def test_openai_image_round_trips_base64_and_asks_for_the_inputs_aspect():
    with fake_openai_images_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        out = openai_editor(server).edit(photo(), "Recoloring coat to scarlet")
    assert out.size == (67, 45)
    assert out.getpixel((5, 20))[2] > 200 and out.getpixel((60, 20))[0] > 200
    (request,) = server.requests
    fields = request.multipart()
    assert request.headers["authorization"] == "Bearer test-openai-key"
    assert fields["prompt"][0].text == "Recoloring coat to scarlet"
    assert fields["model"][0].text == "gpt-image-2"
    assert fields["size"][0].text == "1216x816"  # multiples of 16, aspect 1.490 for the input's 1.489
    sent = Image.open(__import__("io").BytesIO(fields["image"][0].data))
    assert sent.size == (1216, 816)  # the upload is exactly the requested size


def test_openai_image_pads_extreme_aspects_and_cuts_the_padding_off_the_answer():
    with fake_openai_images_server(lambda img, prompt, req: ImageOps.invert(img)) as server:
        out = openai_editor(server).edit(photo(400, 40), "make it red")
    assert out.size == (400, 40)
    sent = Image.open(__import__("io").BytesIO(server.requests[0].multipart()["image"][0].data))
    assert sent.size == (1776, 592)  # padded from 10:1 to the API's 3:1 limit
    assert out.getpixel((10, 20))[2] > 200  # the (inverted) yellow band: the crop took the right region


@pytest.mark.parametrize("fault", ["429", "500"])
def test_openai_image_retries_transient_errors_within_bounds(fault):
    with fake_openai_images_server(lambda img, prompt, req: img, faults=[fault]) as server:
        assert openai_editor(server).edit(photo(), "x").size == (67, 45)
    assert len(server.requests) == 2
    with fake_openai_images_server(lambda img, prompt, req: img, faults=[fault] * 5) as server:
        with pytest.raises(RetriesExhausted):
            openai_editor(server).edit(photo(), "x")
    assert len(server.requests) == 3


def test_openai_image_moderation_block_is_a_clear_refusal_and_not_retried():
    with fake_openai_images_server(lambda img, prompt, req: openai_refusal()) as server:
        with pytest.raises(EditRefusedError, match="refused the edit \\(moderation_blocked\\).*safety system"):
            openai_editor(server).edit(photo(), "x")
    assert len(server.requests) == 1


def test_openai_image_model_is_configuration():
    with fake_openai_images_server(lambda img, prompt, req: img) as server:
        openai_editor(server, model="gpt-image-2.5-flare", size="1024x1024", quality="high").edit(photo(), "x")
    fields = server.requests[0].multipart()
    assert fields["model"][0].text == "gpt-image-2.5-flare" and fields["size"][0].text == "1024x1024"
    assert fields["quality"][0].text == "high"
