"""Uploaded files, read within bounds, and only from the folders uploads are stored in.

The bounds (file size, pixel count, formats) are the served surfaces' own
(``imageedit_r1.request_limits``): every check runs on the file's header before any pixel is
decoded. Paths are accepted only inside the folders the web framework stores uploads in
(``allowed_roots``, symlinks resolved), so a request cannot make the server open a file it chose.
Every refusal is an ``UploadRefused`` whose message is safe to show in the page.
"""

from __future__ import annotations

import os
from pathlib import Path

from imageedit_r1.paths import is_within
from imageedit_r1.request_limits import UploadLimits, UploadRefused, read_image

__all__ = ["UploadLimits", "UploadRefused", "read_upload"]


def read_upload(value, limits: UploadLimits, allowed_roots: list[str | os.PathLike]):
    """Open an uploaded image file: bounded, format-checked, upright RGB.

    ``value`` is the path the framework stored the upload at. Raises ``UploadRefused`` for no
    image, a path outside ``allowed_roots``, a file deleted since (uploads are kept for a while,
    ``request_limits.UploadStore``), or any refusal of ``request_limits.read_image``.
    """
    if value is None or value == "":
        raise UploadRefused("no image: upload one (or pick a sample) first")
    if not isinstance(value, (str, os.PathLike)):
        raise UploadRefused(f"the image must be an uploaded file, got {type(value).__name__}")
    path = Path(value)
    if not any(is_within(path, root) for root in allowed_roots):
        raise UploadRefused("the image must be a file uploaded to this app; server paths are not accepted")
    if not path.is_file():
        raise UploadRefused("the uploaded image is no longer on the server (uploads are kept for a limited "
                            "time and space): upload it again")
    return read_image(path, limits)
