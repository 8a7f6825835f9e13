"""The HTML report opened in headless Chromium: the gallery images must actually render.

The gallery shows solid-colour fixtures, so a rendered thumbnail is a large block of that exact
colour in the screenshot; a broken image would show an icon and alt text instead.
"""

import shutil
import subprocess

import pytest
from PIL import Image

from imageedit_r1.eval.config import BenchmarkConfig, MethodConfig
from imageedit_r1.eval.report import write_report
from imageedit_r1.eval.runner import EvalRunner
from tests.eval_fixtures import ScriptedJudge, config_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian package 'chromium')")]

RED, BLUE = (230, 20, 20), (20, 40, 230)


def to_blue(image, request, *, seed=0, sample=None):
    return Image.new("RGB", image.size, BLUE)


def _count_near(image, colour, tolerance=24):
    pixels = image.convert("RGB").getdata()
    return sum(1 for p in pixels if all(abs(a - b) <= tolerance for a, b in zip(p, colour, strict=True)))


def test_gallery_images_render_in_headless_chromium(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    Image.new("RGB", (96, 96), RED).save(folder / "0.png")
    (folder / "manifest.jsonl").write_text('{"id": "red-0", "image": "0.png", "request": "paint it blue"}\n')
    config = config_for(tmp_path, [BenchmarkConfig(name="A", source="manifest", manifest=str(folder / "manifest.jsonl"))],
                        methods=[MethodConfig(name="blue", label="Blue", kind="callable",
                                              target="tests.test_eval_report_browser:to_blue")])
    EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(
        cfg.name, cfg.model, lambda *a: '{"fulfillment": 4, "quality": 3, "preservation": 3}')).run()
    report = write_report(tmp_path / "run", tmp_path / "report.html", n_boot=20)

    shot = tmp_path / "shot.png"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
               "--window-size=1200,2600", "--virtual-time-budget=5000", report.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"chromium wrote no screenshot (rc {done.returncode}): {done.stderr[-2000:]}"
    image = Image.open(shot)
    # Each thumbnail is drawn at 208x208 CSS px with object-fit: contain on a square source.
    area = 208 * 208
    assert _count_near(image, RED) > 0.9 * area, "the original's thumbnail did not render"
    assert _count_near(image, BLUE) > 0.9 * area, "the edited thumbnail did not render"
