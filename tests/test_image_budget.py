"""The image budget's arithmetic matches Qwen's processors, and every fitted size is one they keep."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest

from imageedit_r1 import image_budget
from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, ImageBudgetError

SIDES = [1, 5, 13, 14, 20, 27, 28, 29, 55, 300, 480, 640, 1080, 1920, 3024, 4032, 4600, 6000]


def test_default_is_the_easyr1_recipe_budget():
    assert (DEFAULT_BUDGET.min_pixels, DEFAULT_BUDGET.max_pixels) == (262_144, 1_003_520)
    assert DEFAULT_BUDGET.max_image_tokens == 1_280


def test_module_is_stdlib_only():
    code = (
        "import sys, imageedit_r1.image_budget; "
        "bad = [m for m in ('PIL', 'numpy', 'torch', 'transformers', 'jinja2', 'omegaconf') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("budget", [DEFAULT_BUDGET, ImageBudget(3_136, 12_845_056), ImageBudget(3_136, 12_544)])
@pytest.mark.slow
def test_smart_resize_equals_qwen_vl_utils_and_transformers(budget):
    qwen = pytest.importorskip("qwen_vl_utils.vision_process")
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    for h, w in itertools.product(SIDES, SIDES):
        if max(h, w) / min(h, w) > 200:
            continue
        ours = image_budget.smart_resize(h, w, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels)
        theirs = qwen.smart_resize(h, w, 28, budget.min_pixels, budget.max_pixels)
        if 0 not in theirs:  # qwen_vl_utils floors a thin side to 0 px (an image it then cannot make); we keep 28
            assert ours == theirs, (h, w)
        if h >= 28 and w >= 28:  # transformers' arithmetic differs from qwen_vl_utils' only below 28 px
            assert ours == hf_smart_resize(h, w, 28, budget.min_pixels, budget.max_pixels), (h, w)


@pytest.mark.parametrize("budget", [DEFAULT_BUDGET, ImageBudget(3_136, 12_845_056), ImageBudget(50_176, 200_704)])
@pytest.mark.slow
def test_every_fit_is_accepted_and_kept_by_the_processor(budget):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    shapes = list(itertools.product(SIDES, SIDES)) + [(20, 4600), (4600, 20), (100, 20000), (1, 100000), (28, 4200)]
    for h, w in shapes:
        fit = budget.fit(w, h)
        fw, fh = fit.size
        assert fw % 28 == 0 and fh % 28 == 0
        # The processor accepts the fitted image and keeps its size: no second resize anywhere.
        assert hf_smart_resize(fh, fw, 28, budget.min_pixels, budget.max_pixels) == (fh, fw), (w, h)
        assert fit.tokens == fw * fh // 784 <= budget.max_image_tokens
        if max(h, w) / min(h, w) <= 100 and not fit.padded:
            assert fit.size == budget.resized_size(w, h)


def test_extreme_aspect_ratios_are_padded_not_refused():
    fit = DEFAULT_BUDGET.fit(4600, 20)  # ratio 230: Qwen's processor raises on the original
    assert fit.padded and fit.canvas[0] == 4600 and fit.canvas[1] > 20
    assert max(fit.size) / min(fit.size) < 200
    assert not DEFAULT_BUDGET.fit(4200, 28).padded  # 1:150 is within the processor's limit


def test_photo_token_counts():
    # The figures the budget exists for: a 12 MP phone photo and a small one cost what training saw.
    assert DEFAULT_BUDGET.image_tokens(4032, 3024) == 1_230
    assert DEFAULT_BUDGET.image_tokens(400, 300) == 352
    assert ImageBudget(3_136, 12_845_056).image_tokens(4032, 3024) == 15_552  # the processor's own bounds


def test_bad_budgets_are_refused():
    for kwargs in ({"min_pixels": 0}, {"max_pixels": 100}, {"min_pixels": 2_000_000}, {"max_pixels": 1.5e6}):
        with pytest.raises(ImageBudgetError):
            ImageBudget(**kwargs)
    with pytest.raises(ImageBudgetError, match="unknown image budget keys"):
        ImageBudget.from_mapping({"max_pixel": 5})
    with pytest.raises(ImageBudgetError, match="widen"):
        ImageBudget(1_003_520, 1_003_520).fit(4032, 3024)


def test_max_prompt_length_covers_the_largest_image_and_request():
    length = DEFAULT_BUDGET.max_prompt_length(template_bytes=1_100)
    assert length % 128 == 0
    assert length >= 1_280 + 1_100 + image_budget.MAX_REQUEST_BYTES + image_budget.CHAT_TEMPLATE_TOKENS


@pytest.mark.parametrize("layout", ["preprocessor_config", "processor_config"])
def test_budget_travels_in_a_processor_config(tmp_path, layout):
    bounds = {"min_pixels": 3136, "max_pixels": 12845056}
    if layout == "preprocessor_config":  # the released Qwen checkpoints
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(bounds))
    else:  # transformers 5's combined file
        (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": bounds, "processor_class": "x"}))
    assert image_budget.read_budget(tmp_path) is None
    assert image_budget.resolve("auto", tmp_path) == DEFAULT_BUDGET
    budget = ImageBudget(200_704, 802_816)
    (written,) = image_budget.write_budget(tmp_path, budget)
    config = json.loads(written.read_text())
    section = config if layout == "preprocessor_config" else config["image_processor"]
    assert section["size"] == {"shortest_edge": 200_704, "longest_edge": 802_816}
    assert (section["min_pixels"], section["max_pixels"]) == (200_704, 802_816)
    assert image_budget.read_budget(tmp_path) == budget
    assert image_budget.resolve(None, tmp_path) == budget
    assert image_budget.resolve("off", tmp_path) is None
    assert image_budget.resolve({"max_pixels": 500_000}) == ImageBudget(max_pixels=500_000)
    with pytest.raises(FileNotFoundError):
        image_budget.write_budget(tmp_path / "nowhere")
