"""The one record every loader yields: an image, the request about it, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class EditSample:
    """One edit request on one image.

    ``id`` is unique within the whole project (benchmark loaders prefix it with the source and
    split, e.g. ``psr/1abc23`` or ``realedit/test/417``), so eval subsets and RL data can be
    compared by id. ``image`` is a decoded RGB image, upright per its EXIF orientation.
    ``meta`` keeps the source's allow-listed columns (``Loader.metadata_fields``: captions, scores,
    the other instruction; never a personal field such as a user name), the split and the row index.
    """

    id: str
    image: Image.Image
    request: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    _sha256: str | None = field(default=None, repr=False, compare=False)

    def image_sha256(self) -> str:
        """Content hash of the decoded pixels, cached: the key for caches and the leakage guard."""
        if self._sha256 is None:
            from imageedit_r1.images import image_sha256

            self._sha256 = image_sha256(self.image)
        return self._sha256


@dataclass
class RawRecord:
    """A row before its image is decoded: cheap to filter, count and sample."""

    id: str
    image: Any  # bytes, {"bytes": ...}/{"path": ...} dict, path or PIL image
    request: str
    meta: dict[str, Any] = field(default_factory=dict)
