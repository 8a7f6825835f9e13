"""The run store: JSONL records that survive a killed run, atomic file writes, and the run lock.

- ``append_jsonl`` writes one record with one ``write`` call, flushed and fsynced, secrets masked
  (every record of every store goes through ``imageedit_r1.masking``). A run killed
  mid-write leaves at most one line without its newline; the next append starts a new line, so
  the record after it is never fused into the torn one.
- ``read_jsonl`` yields every readable record and skips unreadable lines wherever they are, with
  one warning per file that counts them: a torn line never costs the rest of the file.
- ``latest_by_key`` and ``JsonlStore`` read a store as a key → record map (the last record
  written for a key wins, so a success recorded later replaces a failure); ``compact_jsonl``
  rewrites a store with one line per key.
- ``atomic_write_*`` and ``AtomicFile`` write a file beside its target and rename it into place:
  a killed run leaves the old file or the new one, never half of one. ``atomic_save_image`` is the
  one image writer: any format Pillow writes, chosen by the file's extension. ``claim_free_path``
  picks a name beside one that is taken, for a file the user did not name (never over an existing one).
- ``run_lock`` gives one run at a time a run folder (or one output file, such as a labels file).
  Take it before reading any cache: a second run on the same output then says who holds it and
  waits (and resumes from what the first one wrote) or stops, and never pays twice for an item.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from imageedit_r1.masking import mask

log = logging.getLogger(__name__)

IF_BUSY = ("wait", "stop")


def content_key(*parts: Any) -> str:
    """A stable hex key for any JSON-serialisable parts (dict key order does not matter)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _json_line(record: Any) -> bytes:
    return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- JSONL


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a line of its own (after a torn tail too), flushed and fsynced, every
    secret in it masked (``imageedit_r1.masking``)."""
    _append_line(path, _json_line(mask(record)))


def _append_line(path: str | os.PathLike, line: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":  # a torn tail: end it, it is skipped on reading
                line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def numbered_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each readable JSON object of a JSONL file.

    A missing file yields nothing. A line that is not a JSON object (the torn line of a killed run,
    bytes that are not UTF-8) is skipped wherever it is; one warning per file counts them.
    """
    path = Path(path)
    if not path.exists():
        return
    skipped: list[int] = []
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                    record = None
                if isinstance(record, dict):
                    yield number, record
                else:
                    skipped.append(number)
    finally:
        if skipped:
            shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            log.warning("%s: skipped %d unreadable line%s (line %s); the other records are kept",
                        path, len(skipped), "" if len(skipped) == 1 else "s", shown)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The readable records of a JSONL file, in order (see ``numbered_jsonl``)."""
    for _, record in numbered_jsonl(path):
        yield record


def latest_by_key(records: str | os.PathLike | Iterable[dict[str, Any]], key_field: str = "key") -> dict[Any, dict[str, Any]]:
    """key → the last record written for it, from a JSONL file or an iterable of records."""
    if isinstance(records, (str, os.PathLike)):
        records = read_jsonl(records)
    latest: dict[Any, dict[str, Any]] = {}
    for record in records:
        latest[record.get(key_field)] = record
    return latest


def compact_jsonl(path: str | os.PathLike, key_field: str = "key") -> int:
    """Rewrite a store with one line per key (the last written) and no unreadable lines, atomically;
    returns the lines dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = sum(1 for raw in path.read_bytes().splitlines() if raw.strip())
    latest = latest_by_key(path, key_field)
    if lines == len(latest):
        return 0
    atomic_write_bytes(path, b"".join(_json_line(record) for record in latest.values()))
    return lines - len(latest)


class JsonlStore:
    """A thread-safe, append-only key → record map backed by one JSONL file.

    The last record written for a key wins, so a failure can later be overwritten by a success.
    Open it under the run's ``run_lock``: records another run appends later are not seen.
    """

    def __init__(self, path: str | os.PathLike, key_field: str = "key") -> None:
        self.path = Path(path)
        self.key_field = key_field
        self._lock = threading.Lock()
        self._records = {key: record for key, record in latest_by_key(self.path, key_field).items()
                         if isinstance(key, str)}

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def values(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Record ``record`` for ``key`` (secrets masked, as ``append_jsonl`` writes it); returns it as stored."""
        record = mask({self.key_field: key, **{k: v for k, v in record.items() if k != self.key_field}})
        with self._lock:
            _append_line(self.path, _json_line(record))
            self._records[key] = record
        return record


# ----------------------------------------------------------------------------- atomic files


class AtomicFile:
    """A file written at ``tmp`` and renamed onto ``path`` by ``commit`` (fsynced first); ``abort``
    removes it. As a context manager it commits on success and aborts on an exception."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process and thread: two writers of one target never share a temporary file.
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")

    def commit(self) -> Path:
        with open(self.tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with AtomicFile(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=str) + "\n"
    return atomic_write_text(path, text)


def atomic_save_image(image: Any, path: str | os.PathLike, format: str | None = None) -> Path:  # noqa: A002
    """Save a PIL image atomically, the one image writer of the project.

    The format is ``format``, else Pillow's for the file's extension (PNG without one; see
    ``images.output_format``, which raises ``ImageFormatError`` for an extension Pillow cannot
    write). The image is put in a mode the format holds (``images.for_format``): transparency
    kept where the format keeps it, composited onto white elsewhere.
    """
    from imageedit_r1.images import for_format, output_format, save_options

    path = Path(path)
    fmt = (format or output_format(path)).upper()
    ready = for_format(image, fmt)
    with AtomicFile(path) as tmp:
        ready.save(tmp, format=fmt, **save_options(fmt))
    return path


def claim_free_path(path: str | os.PathLike) -> Path:
    """The first of ``path``, ``<stem>-1<suffix>``, ``<stem>-2<suffix>``, ... that no file has,
    created empty, exclusively: a file already there (the user's input, an earlier output) is never
    written over, and two writers never take one name. The caller writes over the empty file (or
    removes it when it cannot)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in range(10_000):
        candidate = path if number == 0 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free name for {path}: {path.stem}-1{path.suffix} to -9999 are all taken")


def writable_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be written at ``path`` (a folder there, a folder that cannot be made or
    written to), or None; for checks before any work."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"cannot write {path}: {existing} is a file, not a folder"
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write {path}: no permission to write in {existing}"
    return None


# ----------------------------------------------------------------------------- the run lock


class RunBusy(RuntimeError):
    """Another run holds the output (``run_lock(..., if_busy="stop")``)."""


# (lock file, thread) -> [open handle, depth]: re-entrant in the thread that holds it; another
# thread of the same process opens the file again and meets the lock like another process would.
_held: dict[tuple[str, int], list] = {}
_held_lock = threading.Lock()


def lock_file_for(target: str | os.PathLike, *, single_file: bool = False) -> Path:
    """``<folder>/.lock`` for a run folder; ``.<name>.lock`` beside a single output file."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock") if single_file else target / ".lock"


def _holder(handle) -> str:
    handle.seek(0)
    text = handle.read().strip()
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunLock:
    """One run at a time on ``target`` (a run folder, or one output file): see ``run_lock``."""

    def __init__(self, target: str | os.PathLike, *, single_file: bool = False, if_busy: str = "wait",
                 say: Callable[[str], None] = _say) -> None:
        if if_busy not in IF_BUSY:
            raise ValueError(f"if_busy must be one of {IF_BUSY}, got {if_busy!r}")
        self.target = Path(target)
        self.if_busy = if_busy
        self.say = say
        self.path = lock_file_for(self.target, single_file=single_file)

    def _key(self) -> tuple[str, int]:
        return str(self.path.resolve()), threading.get_ident()

    def acquire(self) -> None:
        key = self._key()
        with _held_lock:
            if key in _held:
                _held[key][1] += 1
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                if self.if_busy == "stop":
                    raise RunBusy(f"{self.target} is in use by another run ({holder}); wait for it to finish "
                                  "or write to another place") from None
                self.say(f"{self.target} is in use by another run ({holder}); waiting for it to finish, then "
                         "resuming from what it wrote (Ctrl-C stops waiting)")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
            handle.flush()
        except BaseException:
            handle.close()
            raise
        with _held_lock:
            _held[key] = [handle, 1]

    def release(self) -> None:
        key = self._key()
        with _held_lock:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
        handle = entry[0]
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()


def run_lock(target: str | os.PathLike, *, single_file: bool = False, if_busy: str = "wait",
             say: Callable[[str], None] = _say) -> RunLock:
    """Hold ``target``, a run folder (or with ``single_file`` one output file, such as a labels
    file), for this run.

    Take it before reading any cache of the run. When another process holds it, ``if_busy="wait"``
    (the default) says so in one line naming the holder's pid and waits for it to finish; the
    caller then reads what that run wrote and does only what is left. ``"stop"`` raises
    ``RunBusy`` at once. Re-entrant within the thread that holds it.
    """
    return RunLock(target, single_file=single_file, if_busy=if_busy, say=say)
