"""The run store: torn lines cost one line, atomic writes, and one run at a time on an output."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
from PIL import Image

from imageedit_r1.store import (
    AtomicFile,
    JsonlStore,
    RunBusy,
    append_jsonl,
    atomic_save_image,
    atomic_write_json,
    compact_jsonl,
    content_key,
    latest_by_key,
    numbered_jsonl,
    read_jsonl,
    run_lock,
)
from tests.store_fixtures import lock_held_elsewhere


def test_a_torn_tail_keeps_every_record_and_the_next_append_starts_a_line(tmp_path, caplog):
    path = tmp_path / "results.jsonl"
    store = JsonlStore(path)
    store.put("a", {"status": "failed"})
    store.put("b", {"status": "ok"})
    store.put("a", {"status": "ok", "score": 7})
    with open(path, "a") as handle:
        handle.write('{"key": "c", "status": "o')  # killed mid-write
    reopened = JsonlStore(path)
    assert len(reopened) == 2 and "c" not in reopened
    assert reopened.get("a") == {"key": "a", "status": "ok", "score": 7}
    append_jsonl(path, {"key": "d"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imageedit_r1.store"):
        assert [number for number, _ in numbered_jsonl(path)] == [1, 2, 3, 5]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: skipped 1 unreadable line (line 4); the other records are kept"]


def test_unreadable_lines_anywhere_are_skipped_and_counted_once(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "tr\n[1, 2]\n\xff\xfe{"step": 3}\n\n{"step": 4}\n')
    with caplog.at_level(logging.WARNING, logger="imageedit_r1.store"):
        assert [r["step"] for r in read_jsonl(path)] == [1, 4]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: skipped 3 unreadable lines (line 2, 3, 4); the other records are kept"]
    assert list(read_jsonl(tmp_path / "missing.jsonl")) == []


def test_latest_by_key_and_compaction_keep_the_last_record_of_each_key(tmp_path):
    path = tmp_path / "edits.jsonl"
    for record in ({"key": "a", "v": 1}, {"key": "b", "v": 1}, {"key": "a", "v": 2}):
        append_jsonl(path, record)
    with open(path, "a") as handle:
        handle.write('{"key": "b", "v"')
    assert latest_by_key(path) == {"a": {"key": "a", "v": 2}, "b": {"key": "b", "v": 1}}
    assert latest_by_key([{"id": "x", "v": 1}, {"id": "x", "v": 3}], "id") == {"x": {"id": "x", "v": 3}}
    assert compact_jsonl(path) == 2  # the older "a" and the torn line
    assert path.read_text().splitlines() == ['{"key": "a", "v": 2}', '{"key": "b", "v": 1}']
    assert compact_jsonl(path) == 0


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "deep" / "run.json"
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(RuntimeError), AtomicFile(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.json"]
    atomic_save_image(Image.new("RGB", (4, 3)), tmp_path / "x.jpg")
    assert Image.open(tmp_path / "x.jpg").format == "JPEG"


def test_content_key_is_order_independent_for_dicts():
    assert content_key({"a": 1, "b": 2}, "x") == content_key({"b": 2, "a": 1}, "x")
    assert content_key("x") != content_key("y")


def test_a_busy_output_stops_with_the_holders_pid_or_is_waited_for(tmp_path):
    labels = tmp_path / "labels.jsonl"
    said: list[str] = []
    with lock_held_elsewhere(labels, single_file=True) as pid:
        with pytest.raises(RunBusy, match=rf"labels.jsonl is in use by another run \(pid {pid} on .*\); wait for it to finish"):
            run_lock(labels, single_file=True, if_busy="stop").acquire()
        with run_lock(tmp_path / "other.jsonl", single_file=True, if_busy="stop"):  # another file: free
            pass
        acquired, done = threading.Event(), threading.Event()

        def wait_then_hold():
            with run_lock(labels, single_file=True, say=said.append):
                acquired.set()
                done.wait(10)

        thread = threading.Thread(target=wait_then_hold)
        thread.start()
        time.sleep(0.5)
        assert not acquired.is_set()
        assert said == [f"{labels} is in use by another run (pid {pid} on {socket.gethostname()}); waiting for it "
                        "to finish, then resuming from what it wrote (Ctrl-C stops waiting)"]
    assert acquired.wait(10)  # the holder ended: the waiting run goes on
    # Another thread of this process meets the lock as another process would.
    with pytest.raises(RunBusy, match=rf"pid {os.getpid()} on "):
        run_lock(labels, single_file=True, if_busy="stop").acquire()
    done.set()
    thread.join(10)
    with run_lock(labels, single_file=True, if_busy="stop"), run_lock(labels, single_file=True, if_busy="stop"):
        pass  # re-entrant in the thread that holds it
    assert (tmp_path / ".labels.jsonl.lock").exists()
