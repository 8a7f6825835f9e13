"""Pipeline batches: a JSONL manifest in, one image + trace per item out, resumable.

One batch at a time writes to an output folder: the folder's run lock is taken before what is
finished is read, so a second batch on it waits (then edits only what the first one left) or
stops (``if_busy``); no item is edited twice.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from imageedit_r1.executors import executor_entry
from imageedit_r1.store import atomic_save_image, run_lock


class ManifestError(ValueError):
    pass


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Items of a JSONL manifest (read by ``imageedit_r1.data``'s manifest loader), validated up
    front so a typo stops the batch before any work. Each item: id (safe as a file name), image
    (a path), request, and the line's other fields (e.g. ``mode``, ``seed``)."""
    from imageedit_r1.data import ManifestLoader
    from imageedit_r1.data.rows import MissingColumnError

    items, seen = [], set()
    try:
        records = list(ManifestLoader(path).records())
    except (FileNotFoundError, ValueError, MissingColumnError) as exc:
        raise ManifestError(exc.args[0] if exc.args else str(exc)) from exc
    for record in records:
        where = f"{path}:{record.meta['row'] + 1}"
        if not record.request or not record.image:
            raise ManifestError(f"{where}: empty {'request' if not record.request else 'image'}")
        safe_id = _SAFE_ID.sub("_", record.id).strip("._") or f"item-{record.meta['row'] + 1:05d}"
        if safe_id in seen:
            raise ManifestError(f"{where}: duplicate id {record.id!r}")
        seen.add(safe_id)
        extra = {k: v for k, v in record.meta.items() if k != "row"}
        items.append({**extra, "id": safe_id, "image": record.image, "request": record.request})
    if not items:
        raise ManifestError(f"manifest {path} has no items")
    return items


def is_finished(out_dir: Path, item_id: str) -> bool:
    trace_path = out_dir / f"{item_id}.trace.json"
    if not (out_dir / f"{item_id}.png").exists() or not trace_path.exists():
        return False
    try:
        return json.loads(trace_path.read_text(encoding="utf-8")).get("status") == "ok"
    except (OSError, json.JSONDecodeError):
        return False


def run_batch(pipeline, manifest: Path, out_dir: Path | None, dry_run: bool, if_busy: str = "wait") -> int:
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.trace import EditFailed

    items = read_manifest(manifest)
    if dry_run:
        failed = 0
        for item in items:
            try:
                plan = pipeline.plan(item["image"], item["request"], mode=item.get("mode")).trace()
            except (EditFailed, ImageLoadError, ValueError) as exc:
                failed += 1
                plan = {**(getattr(exc, "trace", None) or {}), "status": "failed", "error": str(exc)}
            print(json.dumps({"id": item["id"], **plan}, ensure_ascii=False, default=str))
        return 1 if failed else 0
    with run_lock(out_dir, if_busy=if_busy):
        return _run_locked(pipeline, items, out_dir)


def _run_locked(pipeline, items: list[dict[str, Any]], out_dir: Path) -> int:
    from tqdm import tqdm

    from imageedit_r1.store import JsonlStore

    results = JsonlStore(out_dir / "results.jsonl", key_field="id")
    todo = [item for item in items if not is_finished(out_dir, item["id"])]
    counts = {"ok": 0, "failed": 0, "skipped": len(items) - len(todo)}
    editor = pipeline
    remote = executor_entry(pipeline.config.executor, "pipeline") if todo else None
    if remote is not None:  # the same loop; edits run where the executor puts them (Ray replicas)
        editor = remote(pipeline.config)
    progress = tqdm(total=len(todo), desc="editing", unit="image", dynamic_ncols=True)
    progress.set_postfix(counts)
    lock = threading.Lock()

    def one(item: dict[str, Any]) -> None:
        outcome = _edit_item(editor, item, out_dir, results)
        with lock:
            counts[outcome] += 1
            progress.update()
            progress.set_postfix(counts)

    try:
        concurrency = getattr(editor, "concurrency", 1)
        if concurrency <= 1:
            for item in todo:
                one(item)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = [pool.submit(one, item) for item in todo]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        progress.close()
        if editor is not pipeline:
            editor.close()
    print(f"{counts['ok']} edited, {counts['skipped']} already done, {counts['failed']} failed; "
          f"results in {out_dir / 'results.jsonl'}")
    return 1 if counts["failed"] else 0


def _edit_item(pipeline, item: dict[str, Any], out_dir: Path, results) -> str:
    """Edit one manifest item and write its image, trace and result record; "ok" or "failed".

    Errors that every item would hit (missing weights, keys, packages) propagate and stop the batch.
    """
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.trace import EditFailed, write_trace
    from imageedit_r1.unavailable import is_unavailable

    item_id = item["id"]
    image_path, trace_path = out_dir / f"{item_id}.png", out_dir / f"{item_id}.trace.json"
    record = {"request": item["request"], "image": item["image"]}
    try:
        result = pipeline(item["image"], item["request"], mode=item.get("mode"), seed=item.get("seed"))
    except (EditFailed, ImageLoadError, ValueError) as exc:
        trace = getattr(exc, "trace", None) or {
            "request": item["request"], "status": "failed",
            "errors": [{"stage": "input", "type": type(exc).__name__, "message": str(exc)}],
        }
        write_trace(trace_path, trace)
        status = "refused" if trace.get("status") == "refused" else "failed"
        worker = {"worker": exc.worker} if isinstance(getattr(exc, "worker", None), dict) else {}
        results.put(item_id, {**record, "status": status, "error": str(exc), "trace": trace_path.name,
                              **({"refusal": trace["refusal"]} if status == "refused" else {}), **worker})
        return "failed"
    except Exception as exc:
        if is_unavailable(exc):
            raise
        # An unexpected error in one item is recorded; the batch goes on.
        write_trace(trace_path, {"request": item["request"], "status": "failed",
                                 "errors": [{"stage": "unknown", "type": type(exc).__name__, "message": str(exc)}]})
        results.put(item_id, {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return "failed"
    atomic_save_image(result.image, image_path)
    write_trace(trace_path, result.trace)
    extra = {"worker": result.trace["worker"]} if result.trace.get("worker") else {}
    results.put(item_id, {**record, "status": "ok", "output": image_path.name, "trace": trace_path.name,
                          "seconds": result.trace["seconds"], **extra})
    return "ok"
