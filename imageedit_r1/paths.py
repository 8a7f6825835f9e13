"""Names from outside (a record, a sample id, a request) mapped to files inside one folder, never beyond.

``is_within(path, folder)`` compares resolved paths (symlinks followed), so neither ``..`` nor a
link leads out. ``inside(folder, name)`` is the file a relative name means within ``folder``,
or ``OutsideFolder``. ``file_name(text)`` says whether a text is a single plain file name.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutsideFolder(ValueError):
    """A name points outside the folder it must stay in."""


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    resolved, root = Path(path).resolve(), Path(folder).resolve()
    return resolved == root or root in resolved.parents


def inside(folder: str | os.PathLike, name: str | os.PathLike) -> Path:
    """``folder / name`` when that lies inside ``folder`` (resolved); else ``OutsideFolder``.
    An absolute ``name`` is refused, not joined."""
    if not str(name) or Path(name).is_absolute():
        raise OutsideFolder(f"{str(name)!r} is not a name inside {folder}")
    path = Path(folder) / name
    if not is_within(path, folder):
        raise OutsideFolder(f"{str(name)!r} leads outside {folder}")
    return path


def file_name(text: str) -> bool:
    """Whether ``text`` is one plain file name: no folder separator, not ``.`` or ``..``, no NUL."""
    return bool(text) and text not in (".", "..") and not any(sep in text for sep in ("/", "\\", "\0"))
