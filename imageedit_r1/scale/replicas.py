"""Editor replicas as Ray actors, and the pool the driver feeds them through.

A ``Replica`` builds its work function once (loading the editor's model on its GPU) and then
serves one item at a time. ``ReplicaPool.call`` sends one item to a replica with a free slot and
blocks until it is back, so the driver's threads are the only place results arrive and the
driver stays the only writer. The pool bounds in-flight items per replica (``max_in_flight``
slots each: backpressure), sends the items of a replica whose process died to the others, tries
an item at most ``max_attempts`` times, and retires a replica after ``max_restarts`` restarts.

Errors raised by the work function come back as values, not as Ray task errors, so an item that
fails (a refusal, a bad input) is told apart from a replica that died; the driver re-raises them.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, WorkerCrashedError

from imageedit_r1.unavailable import is_unavailable

log = logging.getLogger("imageedit_r1.scale")



class ReplicaLostError(RuntimeError):
    """An item's replicas died ``max_attempts`` times, or no replica is left; a re-run retries it."""

    failure_kind = "replica_lost"
    retryable = True


class RemoteError(RuntimeError):
    """An error raised on a replica whose own class could not travel back (its type name is kept)."""

    def __init__(self, message: str, remote_type: str = "", trace: dict | None = None) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.trace = trace

    def __reduce__(self):
        return (type(self), (str(self), self.remote_type, self.trace))


def portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling, else a ``RemoteError`` (or an ``ImportError`` for
    errors that mean the model or package is missing here, so the driver still stops early)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception class may fail to round-trip
        pass
    message = f"{type(exc).__name__}: {exc}"
    if is_unavailable(exc):  # every item would hit it: the driver still stops the method
        return ImportError(message)
    trace = getattr(exc, "trace", None)
    return RemoteError(message, type(exc).__name__, trace if isinstance(trace, dict) else None)


def portable_chain(exc: BaseException, limit: int = 8) -> list[BaseException]:
    """``exc`` and its explicit causes (``raise ... from``), each made portable: pickling drops
    ``__cause__``, and the driver reads it (a refusal wrapped in a pipeline failure)."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < limit:
        seen.add(id(current))
        chain.append(portable(current))
        current = current.__cause__
    return chain


def rebuild_chain(chain: list[BaseException]) -> BaseException:
    """The first exception of a ``portable_chain`` with its causes linked again."""
    for outer, inner in zip(chain, chain[1:], strict=False):
        outer.__cause__ = inner
    return chain[0]


def where(index: int) -> dict[str, Any]:
    """Which node, GPU and process this replica is: recorded with every item it makes."""
    context = ray.get_runtime_context()
    return {"replica": index, "node": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(), "gpu": [str(gpu) for gpu in ray.get_gpu_ids()], "pid": os.getpid()}


class Replica:
    """One replica (a Ray actor): ``factory()`` runs once here; ``call`` runs its result on one item."""

    def __init__(self, factory: Callable[[], Callable[..., Any]], index: int) -> None:
        self.index = index
        self.fn: Callable[..., Any] | None = None
        self.setup_error: list[BaseException] | None = None
        try:
            self.fn = factory()
        except Exception as exc:  # noqa: BLE001 - sent back with every item, the driver decides
            self.setup_error = portable_chain(exc)

    def info(self) -> dict[str, Any]:
        return where(self.index)

    def call(self, *args: Any, **kwargs: Any) -> tuple[str, Any, dict[str, Any]]:
        info = where(self.index)
        if self.setup_error is not None:
            return "error", self.setup_error, info
        started = time.perf_counter()
        try:
            value = self.fn(*args, **kwargs)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - an item's failure is a value, not a dead replica
            value, status = portable_chain(exc), "error"
        info["seconds"] = round(time.perf_counter() - started, 4)
        return status, value, info


@dataclass(frozen=True)
class _Slot:
    replica: int
    generation: int  # the replica's process incarnation when this slot was handed out


class ReplicaPool:
    """``replicas`` actors of ``Replica(factory)``, each asking ``num_gpus`` / ``num_cpus``.

    ``call(*args)`` is thread-safe and blocking: run up to ``concurrency`` calls at once from
    driver threads. It returns ``(value, worker)`` where ``worker`` says replica, node, GPU, pid,
    seconds and attempts, or raises the work function's error (with that dict as ``.worker``), or
    ``ReplicaLostError``. A replica
    that died gets its slots back once Ray has restarted it and it answers (``restart_timeout``).
    """

    def __init__(self, factory: Callable[[], Callable[..., Any]], *, replicas: int, num_gpus: float = 1.0,
                 num_cpus: float = 1.0, max_in_flight: int = 2, max_attempts: int = 3, max_restarts: int = 2,
                 restart_timeout: float = 1800.0, name: str = "replica") -> None:
        actor = ray.remote(Replica).options(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=max_restarts,
                                            max_task_retries=0, max_concurrency=1)
        self.handles = [actor.remote(factory, index) for index in range(replicas)]
        self.name = name
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.max_restarts = max_restarts
        self.generation = [0] * replicas
        self.deaths = [0] * replicas
        self.retired: set[int] = set()
        self._lock = threading.Lock()
        self.in_flight = [0] * replicas  # items sent to each replica and not back yet
        self._parked: list[list[_Slot]] = [[] for _ in range(replicas)]  # slots of a restarting replica
        self.restart_timeout = restart_timeout
        self._free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(max_in_flight):  # interleaved, so a new item goes to the least busy replica first
            for index in range(replicas):
                self._free.put(_Slot(index, 0))
        self.closed = False

    @property
    def size(self) -> int:
        return len(self.handles)

    @property
    def concurrency(self) -> int:
        """Items in flight across the pool at most (driver threads worth running)."""
        return self.size * self.max_in_flight

    def alive(self) -> int:
        return self.size - len(self.retired)

    def info(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Where each live replica runs (waits until every one has built its work function)."""
        return ray.get([self.handles[i].info.remote() for i in range(self.size) if i not in self.retired],
                       timeout=timeout)

    def _take(self) -> _Slot:
        while True:
            if self.closed:
                raise ReplicaLostError(f"the {self.name} pool is closed")
            if not self.alive():
                raise ReplicaLostError(f"every {self.name} replica died (more than {self.max_restarts} restarts each)")
            try:
                slot = self._free.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                if slot.replica in self.retired:
                    continue
                self.in_flight[slot.replica] += 1
                return _Slot(slot.replica, self.generation[slot.replica])

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            self.in_flight[slot.replica] -= 1
            if slot.replica not in self.retired:
                self._free.put(slot)

    def _died(self, slot: _Slot, exc: BaseException) -> None:
        """A replica's process died under an item: count the death once, park its slots until Ray has
        restarted it (calls to a restarting actor fail too), retire it past ``max_restarts``."""
        with self._lock:
            self.in_flight[slot.replica] -= 1
            if slot.replica in self.retired:
                return
            self._parked[slot.replica].append(slot)
            if slot.generation != self.generation[slot.replica]:
                return  # this death is counted already
            self.generation[slot.replica] += 1
            self.deaths[slot.replica] += 1
            if self.deaths[slot.replica] > self.max_restarts:
                self._retire(slot.replica, exc)
                return
        log.warning("%s replica %d died (%s); Ray restarts it and its items go to the others", self.name,
                    slot.replica, type(exc).__name__)
        threading.Thread(target=self._revive, args=(slot.replica,), daemon=True).start()

    def _retire(self, replica: int, exc: BaseException) -> None:
        self.retired.add(replica)
        self._parked[replica].clear()
        log.warning("%s replica %d retired after %d deaths: %s", self.name, replica, self.deaths[replica],
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _revive(self, replica: int) -> None:
        """Wait until the restarted replica answers (it rebuilds its model first), then unpark its slots."""
        deadline = time.monotonic() + self.restart_timeout
        while not self.closed:
            try:
                ray.get(self.handles[replica].info.remote(), timeout=max(1.0, deadline - time.monotonic()))
            except ActorUnavailableError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                exc: BaseException = TimeoutError("the replica did not come back")
            except (RayActorError, GetTimeoutError) as error:
                exc = error
            else:
                with self._lock:
                    if replica not in self.retired:
                        for slot in self._parked[replica]:
                            self._free.put(slot)
                        self._parked[replica].clear()
                log.warning("%s replica %d is back", self.name, replica)
                return
            with self._lock:
                self._retire(replica, exc)
            return

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        last: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            slot = self._take()
            try:
                status, value, info = ray.get(self.handles[slot.replica].call.remote(*args, **kwargs))
            except (RayActorError, WorkerCrashedError) as exc:
                self._died(slot, exc)
                last = exc
                continue
            except BaseException:
                self._give_back(slot)
                raise
            self._give_back(slot)
            info["attempts"] = attempt
            if status == "error":
                error = rebuild_chain(value)
                try:
                    error.worker = info  # a failure record says where it failed too
                except AttributeError:
                    pass
                raise error
            return value, info
        raise ReplicaLostError(f"the replicas holding this item died {self.max_attempts} times; last: "
                               f"{type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''}")

    def close(self) -> None:
        """Stop every replica now (frees their GPUs for the next method)."""
        self.closed = True
        for handle in self.handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
