"""Pipeline batches: a JSONL manifest in, one image + trace per item out, resumable.

The items left to do are planned ``plan_batch`` at a time (``ImageEditR1.plan_batch``: one batched
call per agent stage), then edited with their plans. With several edits in flight (Ray replicas)
the next batch is planned while the last one's edits run, at most one batch ahead.

One batch at a time writes to an output folder: the folder's run lock is taken before what is
finished is read, so a second batch on it waits (then edits only what the first one left) or
stops (``if_busy``); no item is edited twice.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

from imageedit_r1.executors import executor_entry
from imageedit_r1.manifest import ManifestError
from imageedit_r1.masking import mask
from imageedit_r1.store import run_lock

_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Items of a JSONL manifest (``imageedit_r1.manifest``), validated up front so a typo stops the
    batch before any work. Each item: id (safe as a file name), image (a path), request (forum tags
    dropped, as the data tools read it), and the line's other fields (e.g. ``mode``, ``seed``)."""
    from imageedit_r1.manifest import MissingColumnError, read_manifest_lines
    from imageedit_r1.request_text import clean_request

    items, seen = [], set()
    try:
        lines = list(read_manifest_lines(path))
    except (FileNotFoundError, ValueError, MissingColumnError) as exc:
        raise ManifestError(exc.args[0] if exc.args else str(exc)) from exc
    for line in lines:
        where = f"{path}:{line.number}"
        request = clean_request(line.request) if line.request else line.request
        if not request or not line.image:
            raise ManifestError(f"{where}: empty {'request' if not request else 'image'}")
        safe_id = _SAFE_ID.sub("_", line.id).strip("._") or f"item-{line.number:05d}"
        if safe_id in seen:
            raise ManifestError(f"{where}: duplicate id {line.id!r}")
        seen.add(safe_id)
        items.append({**line.extra, "id": safe_id, "image": line.image, "request": request})
    if not items:
        raise ManifestError(f"manifest {path} has no items")
    return items


def finished_as(out_dir: Path, item_id: str) -> str | None:
    """The file name a finished item was asked to be written as (``<id>.jpg``), or None when it is
    not finished: finished means its trace says ``ok`` and the image it names (``output.file``;
    ``<id>.png`` in traces that name none) is there."""
    trace_path = out_dir / f"{item_id}.trace.json"
    try:
        trace = json.loads(trace_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    output = trace.get("output") if isinstance(trace, dict) else None
    output = output if isinstance(output, dict) else {}
    name = Path(output.get("file") or f"{item_id}.png").name
    if trace.get("status") != "ok" or not (out_dir / name).exists():
        return None
    asked = output.get("not_written")  # written as a PNG because the format asked for could not hold it
    return str(asked.get("file") or name) if isinstance(asked, dict) else name


def run_batch(pipeline, manifest: Path, out_dir: Path | None, dry_run: bool, if_busy: str = "wait",
              out_format: str = "png", retry_failed: bool = False, progress: bool = True) -> int:
    """Edit a manifest into ``out_dir``; finished items are skipped, failed ones tried again, except
    those whose failure is permanent (an item quarantined for killing its replicas) unless
    ``retry_failed``. ``progress``: a progress bar on stderr."""
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.trace import EditFailed

    items = read_manifest(manifest)
    if dry_run:
        failed = 0
        for chunk in chunks(items, pipeline.config.plan_batch):
            for item, plan in zip(chunk, plan_items(pipeline, chunk), strict=True):
                if isinstance(plan, (EditFailed, ImageLoadError, ValueError)):
                    failed += 1
                    shown = {**(getattr(plan, "trace", None) or {}), "status": "failed", "error": str(plan)}
                elif isinstance(plan, BaseException):
                    raise plan
                else:
                    shown = plan.trace()
                print(json.dumps(mask({"id": item["id"], **shown}), ensure_ascii=False, default=str))
        return 1 if failed else 0
    with run_lock(out_dir, if_busy=if_busy):
        return _run_locked(pipeline, items, out_dir, "." + out_format.lstrip("."), retry_failed, progress)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start:start + size] for start in range(0, len(items), max(1, size))]


def plan_items(planner, items: list[dict[str, Any]]) -> list[Any]:
    """One plan or error per manifest item, from one ``plan_batch`` call."""
    return planner.plan_batch([item["image"] for item in items], [item["request"] for item in items],
                              mode=[item.get("mode") for item in items])


def _run_locked(pipeline, items: list[dict[str, Any]], out_dir: Path, suffix: str, retry_failed: bool = False,
                progress_bar: bool = True) -> int:
    from tqdm import tqdm

    from imageedit_r1.images import output_format
    from imageedit_r1.store import JsonlStore

    results = JsonlStore(out_dir / "results.jsonl", key_field="id")
    finished = {item["id"]: finished_as(out_dir, item["id"]) for item in items}
    pending = [item for item in items if finished[item["id"]] is None]
    # Finished in another format by an earlier run: kept as they are, and said so below.
    other_format = sorted(name for name in finished.values()
                          if name and output_format(name) != output_format(f"item{suffix}"))
    held = [] if retry_failed else [item for item in pending if (results.get(item["id"]) or {}).get("retryable") is False]
    todo = [item for item in pending if item not in held]
    counts = {"ok": 0, "failed": 0, "skipped": len(items) - len(pending)}
    editor = pipeline
    remote = executor_entry(pipeline.config.executor, "pipeline") if todo else None
    if remote is not None:  # the same loop; plans and edits run where the executor puts them (Ray)
        editor = remote(pipeline.config)
    progress = tqdm(total=len(todo), desc="editing", unit="image", dynamic_ncols=True, disable=not progress_bar)
    progress.set_postfix(counts)
    lock = threading.Lock()

    def one(item: dict[str, Any], plan: Any) -> None:
        outcome = _edit_item(editor, item, plan, out_dir, results, suffix)
        with lock:
            counts[outcome] += 1
            progress.update()
            progress.set_postfix(counts)

    try:
        concurrency = getattr(editor, "concurrency", 1)
        batches = chunks(todo, pipeline.config.plan_batch)
        if concurrency <= 1:
            for batch in batches:
                for item, plan in zip(batch, plan_items(editor, batch), strict=True):
                    one(item, plan)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures: list[Future] = []
                try:
                    for batch in batches:
                        # Plan the next batch once the edits queued before it are down to what is in flight.
                        while sum(not future.done() for future in futures) > concurrency:
                            wait(futures, return_when=FIRST_COMPLETED)
                        futures += [pool.submit(one, item, plan)
                                    for item, plan in zip(batch, plan_items(editor, batch), strict=True)]
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        progress.close()
        notes = editor.notes() if hasattr(editor, "notes") else []  # Ray: retired replicas, quarantined items
        if editor is not pipeline:
            editor.close()
    print(f"{counts['ok']} edited, {counts['skipped']} already done, {counts['failed']} failed; "
          f"results in {out_dir / 'results.jsonl'}")
    if other_format:
        print(f"note: {len(other_format)} item(s) were finished earlier as another format ({', '.join(other_format[:5])}"
              f"{', ...' if len(other_format) > 5 else ''}), not {suffix}: they are kept as they are; for {suffix} "
              "files, write to another --out-dir")
    if held:
        print(f"{len(held)} quarantined earlier, not sent again ({', '.join(item['id'] for item in held[:10])}"
              f"{', ...' if len(held) > 10 else ''}): --retry-failed sends them")
    for note in notes:
        print(f"replicas: {note}")
    return 1 if counts["failed"] or held else 0


def _edit_item(pipeline, item: dict[str, Any], plan: Any, out_dir: Path, results, suffix: str = ".png") -> str:
    """Edit one manifest item with its ``plan`` (or record the planning error it is) and write its
    image, trace and result record; "ok" or "failed".

    Errors that every item would hit (missing weights, keys, packages) propagate and stop the batch.
    """
    from imageedit_r1.images import ImageLoadError
    from imageedit_r1.pipeline.outputs import write_edit
    from imageedit_r1.pipeline.trace import EditFailed, write_trace
    from imageedit_r1.unavailable import is_unavailable

    item_id = item["id"]
    image_path, trace_path = out_dir / f"{item_id}{suffix}", out_dir / f"{item_id}.trace.json"
    record = {"request": item["request"], "image": item["image"]}
    try:
        if isinstance(plan, BaseException):
            raise plan
        result = pipeline.execute(item["image"], plan, seed=item.get("seed"))
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
        # An unexpected error in one item is recorded; the batch goes on. Errors that know their kind
        # (an item quarantined for killing its replicas) say whether a re-run sends the item again.
        write_trace(trace_path, {"request": item["request"], "status": "failed",
                                 "errors": [{"stage": "unknown", "type": type(exc).__name__, "message": str(exc)}]})
        kind = {"error_kind": exc.failure_kind, "retryable": bool(getattr(exc, "retryable", True))} \
            if getattr(exc, "failure_kind", None) else {}
        results.put(item_id, {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}", **kind})
        return "failed"
    image_path = write_edit(result.image, result.trace, image_path, trace_path=trace_path)
    extra = {"worker": result.trace["worker"]} if result.trace.get("worker") else {}
    results.put(item_id, {**record, "status": "ok", "output": image_path.name, "trace": trace_path.name,
                          "seconds": result.trace["seconds"], **extra})
    return "ok"
