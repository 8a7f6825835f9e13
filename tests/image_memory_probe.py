"""One image through every stage that sizes it, in a process with a memory cap; prints its peak.

``python -m tests.image_memory_probe IMAGE MAX_PIXELS CAP_BYTES`` reads IMAGE as the app reads an
upload, fits it to the agents' image budget as every decomposer backend does, edits it with the
diffusion editor's sizing (a stand-in pipeline that checks the working area) and the hosted
editors' padding, and writes and hashes the result as the app does. The address space is capped
at CAP_BYTES above what the process holds after its imports, so an allocation past the bound
fails at once instead of growing until the kernel kills something. Prints one JSON line.
"""

import json
import resource
import sys
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from imageedit_r1.agents.editors.base import fit_to_size, restore_size, unletterbox
from imageedit_r1.agents.editors.diffusion import FluxKontextEditor
from imageedit_r1.app.uploads import UploadLimits, read_upload
from imageedit_r1.image_budget import DEFAULT_BUDGET
from imageedit_r1.images import fit_to_budget, image_sha256
from imageedit_r1.store import atomic_save_image

MAX_AREA = 1024 * 1024


class StandInKontext:
    """What FluxKontextPipeline is called with, answered at the size asked; records the sizes."""

    vae_scale_factor, _execution_device, num_timesteps = 8, "cpu", 2

    def __init__(self):
        self.sizes = []

    def __call__(self, image, prompt, height, width, max_area, _auto_resize, num_inference_steps, guidance_scale,
                 max_sequence_length, generator=None, callback_on_step_end=None):
        self.sizes.append((width, height, max_area, image.size))
        return SimpleNamespace(images=[Image.new("RGB", (width, height), (7, 7, 7))])


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main() -> None:
    image_path, max_pixels, cap = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    pipe = StandInKontext()
    editor = FluxKontextEditor.from_pipeline(pipe, max_area=MAX_AREA, min_area=512 * 512)
    baseline = _kib("VmRSS")
    resource.setrlimit(resource.RLIMIT_AS, (_kib("VmSize") + cap, resource.RLIM_INFINITY))

    image = read_upload(image_path, UploadLimits(max_pixels=max_pixels), [image_path.parent])
    seen = fit_to_budget(image, DEFAULT_BUDGET)  # the decomposition agent's view
    edited = editor.edit(image, "Recolor the coat to scarlet")  # the diffusion editor's sizing, back to the input size
    padded, box = fit_to_size(image, (1536, 1024))  # a hosted editor's upload
    hosted = restore_size(unletterbox(padded.resize((1024, 768)), box), image.size)
    digest = image_sha256(edited)
    atomic_save_image(edited, image_path.with_suffix(".out.png"), "PNG")
    peak = _kib("VmHWM")  # this process's own peak (ru_maxrss would also count its parent's, before exec)
    print(json.dumps({"baseline": baseline, "peak": peak, "size": list(image.size), "agent_view": list(seen.size),
                      "edited": list(edited.size), "hosted": list(hosted.size), "working": pipe.sizes,
                      "sha": digest[:8]}))


if __name__ == "__main__":
    main()
