"""The HTML report opened in headless Chromium: the gallery images must actually render.

The gallery shows solid-colour fixtures, so a rendered thumbnail is a large block of that exact
colour in the screenshot; a broken image would show an icon and alt text instead.
"""

import shutil
import subprocess

import pytest
from PIL import Image

from imageedit_r1.eval.config import BenchmarkConfig, JudgeConfig, MethodConfig
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


def crash_on_second(image, request, *, seed=0, sample=None):
    if str(sample.id).endswith("-1"):
        raise RuntimeError("the editor ran out of memory on a 12 MP photo")
    return to_blue(image, request)


def _visible_text(dom: str) -> str:
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts, self.skip = [], 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("style", "script")

        def handle_endtag(self, tag):
            self.skip -= tag in ("style", "script")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(dom)
    return " ".join(" ".join(parser.parts).split())


def test_rendered_report_says_what_was_run(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    lines = []
    for index in range(3):
        Image.new("RGB", (64, 64), RED).save(folder / f"{index}.png")
        lines.append(f'{{"id": "red-{index}", "image": "{index}.png", "request": "paint it blue {index}"}}')
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    bench = BenchmarkConfig(name="A", source="manifest", manifest=str(folder / "manifest.jsonl"), limit=2)
    config = config_for(tmp_path, [bench], judges=[JudgeConfig(name="J1", model="m1"), JudgeConfig(name="J2", model="m2")],
                        methods=[
        MethodConfig(name="base", label="Original", group="G", kind="callable", baseline=True,
                     target="tests.test_eval_report_browser:to_blue"),
        MethodConfig(name="flaky", label="Flaky", group="G", kind="callable",
                     target="tests.test_eval_report_browser:crash_on_second"),
        MethodConfig(name="same", label="Unedited", group="Sanity", kind="identity"),
    ])

    def reply(request, index, original, edited):  # the unedited image scores best: a sanity row
        same = original.getpixel((0, 0)) == edited.getpixel((0, 0))
        return '{"fulfillment": 4, "quality": 3, "preservation": 3}' if same else \
            '{"fulfillment": 2, "quality": 2, "preservation": 1}'

    EvalRunner(config, progress=False, judge_factory=lambda cfg: ScriptedJudge(cfg.name, cfg.model, reply)).run()
    report = write_report(tmp_path / "run", tmp_path / "report.html", n_boot=20)
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           "--virtual-time-budget=5000", report.as_uri()], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert "<h1>" in dom, done.stderr[-2000:]
    text = _visible_text(dom)

    # The input column is "Input"; "Original" names only the baseline method.
    assert "Input" in text and '<div><b>Original</b></div>' not in dom and "G · Original" in text
    # One failed edit, two judges: the header and the table both count it once.
    assert "failures: 1 (1 edits, 0 judgments)" in text
    flaky_row = next(row for row in dom.split("<tr>") if "<td>Flaky</td>" in row)
    assert flaky_row.rstrip().endswith("<td>1</td><td>0</td><td>0</td></tr>")  # Failed 1, Refused 0, Missing 0
    # Why it failed, in the gallery and in the failure list.
    assert text.count("the editor ran out of memory on a 12 MP photo") == 2
    # n per cell against the benchmark's size (the run was limited to 2 of 3).
    assert "(n 2/3)" in text and "(n 1/3)" in text and "†" in text
    # The sanity row scores highest but is not bolded as the best.
    same_row = next(row for row in dom.split("<tr>") if "<td>Unedited</td>" in row)
    assert "10.00" in same_row and "<b>" not in same_row
    base_row = next(row for row in dom.split("<tr>") if "<td>Original</td>" in row)
    assert "<b>5.00" in base_row
