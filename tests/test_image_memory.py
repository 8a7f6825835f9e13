"""Any image shape within the pixel limit is handled in bounded memory.

A 39,000,000 x 1 PNG of 5 KB, under the app's 40-megapixel limit, once asked for a 35 TB canvas
(the agents' image budget padded it at its own scale) and for FLUX at 98 times its working area.
Each example here is written as a PNG and read in a child process whose address space is capped
(``tests/image_memory_probe.py``): the app's upload reader, the agents' budget, the diffusion
editor's working size and its way back to the input size, a hosted editor's padding, and the
app's hash and save. The bound: the child's peak resident memory grows by at most
``BYTES_PER_PIXEL`` times the pixel limit (plus ``SLACK``), whatever the aspect and the mode.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from imageedit_r1.image_budget import DEFAULT_BUDGET

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 4_000_000  # pixels: the app's limit is 40 MP; the bound scales with the limit, the run time too
# Pillow keeps 8 bytes of row pointer per row of every image, so a 1-pixel-wide image costs about
# 12 bytes a pixel per RGB copy; the stages hold up to four such copies at once.
BYTES_PER_PIXEL = 64
SLACK = 64 * 2**20
MODES = ["1", "L", "P", "LA", "RGB", "RGBA", "I;16"]  # 1-bit to 16-bit, as PNG stores them


def probe(size, mode) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.png"
        Image.new(mode, size).save(path)
        bound = BYTES_PER_PIXEL * LIMIT + SLACK
        result = subprocess.run([sys.executable, "-m", "tests.image_memory_probe", str(path), str(LIMIT), str(bound)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                     "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, f"{size} {mode}: {result.stderr[-1500:]}"
    return json.loads(result.stdout)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide=st.booleans(), short=st.integers(1, 3), long=st.integers(1, LIMIT), mode=st.sampled_from(MODES))
@example(wide=True, short=1, long=LIMIT, mode="1")
@example(wide=False, short=1, long=LIMIT, mode="I;16")
@example(wide=True, short=1, long=LIMIT - 1, mode="RGBA")
@example(wide=False, short=2, long=LIMIT // 2, mode="P")
def test_any_shape_within_the_pixel_limit_is_handled_in_bounded_memory(wide, short, long, mode):
    long = min(long, LIMIT // short)
    size = (long, short) if wide else (short, long)
    found = probe(size, mode)
    grown = found["peak"] - found["baseline"]
    assert grown <= BYTES_PER_PIXEL * LIMIT + SLACK, f"{size} {mode}: grew {grown / 2**20:.0f} MiB"
    # Every stage answered at the size it should: the input's size back, the working area capped.
    assert tuple(found["size"]) == size and tuple(found["edited"]) == size and tuple(found["hosted"]) == size
    assert DEFAULT_BUDGET.resized_size(*found["agent_view"]) == tuple(found["agent_view"])
    for width, height, max_area, condition in found["working"]:
        assert width * height <= 1024 * 1024 and max_area == width * height and tuple(condition) == (width, height)
