"""Editor replicas as Ray actors, and the pool the driver feeds them through.

A ``Replica`` builds its work function once (loading the editor's model on its GPU) and then
serves one item at a time. ``ReplicaPool.call`` sends one item to a replica with a free slot and
blocks until it is back, so the driver's threads are the only place results arrive and the
driver stays the only writer. The pool bounds in-flight items per replica (``max_in_flight``
slots each: backpressure) and keeps one bad item or one bad GPU from sinking a pass:

- A replica whose process dies under an item is restarted (its model reloaded) and the items it
  held go to the others. Each of them is then a suspect and runs alone on a replica, so an
  innocent item is never killed twice by a neighbour. An item under which replicas died
  ``quarantine_after`` times, alone the last time, is the killer: it is quarantined, failing
  alone with ``PoisonItemError`` (kind ``poison``, not sent again unless a re-run asks for failed
  items), and the deaths it caused do not count against the replicas.
- A replica is retired after ``max_restarts`` other deaths, and at once when its set-up fails
  (a CUDA OOM while loading, a missing file on its node): its items go to the healthy replicas and
  ``notes()`` names its node, GPU and error. When no replica is healthy, ``NoHealthyReplica`` (a
  cannot-run-here error) stops the method with every replica's reason; its items stay pending.

Errors raised by the work function come back as values, not as Ray task errors, so an item that
fails (a refusal, a bad input) is told apart from a replica that died; the driver re-raises them.
"""

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

from imageedit_r1.unavailable import Unavailable, is_unavailable

log = logging.getLogger("imageedit_r1.scale")

SETUP_FAILED = "setup_failed"


class ReplicaLostError(RuntimeError):
    """An item's replicas died ``max_attempts`` times without it being shown the killer; a re-run retries it."""

    failure_kind = "replica_lost"
    retryable = True


class PoisonItemError(RuntimeError):
    """An item that killed the replicas it ran on: quarantined, sent again only when asked (``retry_failed``)."""

    failure_kind = "poison"
    retryable = False


class NoHealthyReplica(RuntimeError, Unavailable):
    """Every replica was retired (its set-up failed, or it died too often): the method cannot run here."""


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


def where(index: int, role: str = "replica") -> dict[str, Any]:
    """Which node, GPU and process this replica (or the agents' actor) is: recorded with every item it makes."""
    context = ray.get_runtime_context()
    return {role: index, "node": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(), "gpu": [str(gpu) for gpu in ray.get_gpu_ids()], "pid": os.getpid()}


class Replica:
    """One replica (a Ray actor): ``factory()`` runs once here; ``call`` runs its result on one item."""

    def __init__(self, factory: Callable[[], Callable[..., Any]], index: int) -> None:
        self.index = index
        self.fn: Callable[..., Any] | None = None
        self.setup_error: list[BaseException] | None = None
        try:
            self.fn = factory()
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which retires this replica
            self.setup_error = portable_chain(exc)

    def info(self) -> dict[str, Any]:
        info = where(self.index)
        if self.setup_error is not None:
            info["setup_error"] = self.setup_error
        return info

    def call(self, *args: Any, **kwargs: Any) -> tuple[str, Any, dict[str, Any]]:
        info = where(self.index)
        if self.setup_error is not None:
            return SETUP_FAILED, self.setup_error, info
        started = time.perf_counter()
        try:
            value = self.fn(*args, **kwargs)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - an item's failure is a value, not a dead replica
            value, status = portable_chain(exc), "error"
        info["seconds"] = round(time.perf_counter() - started, 4)
        return status, value, info


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _where_text(info: dict[str, Any]) -> str:
    gpus = ", ".join(info.get("gpu") or []) or "none"
    return f"replica {info.get('replica')} (node {info.get('node')}, GPU {gpus})"


@dataclass(frozen=True)
class _Slot:
    replica: int
    generation: int  # the replica's process incarnation when this slot was handed out
    alone: bool = False  # held so that nothing else runs on the replica meanwhile (a suspect)


class ReplicaPool:
    """``replicas`` actors of ``Replica(factory)``, each asking ``num_gpus`` / ``num_cpus``.

    ``call(*args)`` is thread-safe and blocking: run up to ``concurrency`` calls at once from
    driver threads. It returns ``(value, worker)`` where ``worker`` says replica, node, GPU, pid,
    seconds and attempts, or raises the work function's error (with that dict as ``.worker``),
    ``PoisonItemError``, ``ReplicaLostError`` or ``NoHealthyReplica`` (see the module docs). A
    replica that died gets its slots back once Ray has restarted it and it answers
    (``restart_timeout``).
    """

    def __init__(self, factory: Callable[[], Callable[..., Any]], *, replicas: int, num_gpus: float = 1.0,
                 num_cpus: float = 1.0, max_in_flight: int = 2, max_attempts: int = 3, max_restarts: int = 2,
                 quarantine_after: int = 2, restart_timeout: float = 1800.0, name: str = "replica") -> None:
        # Ray restarts a dead replica without limit; the pool decides when to retire it, because
        # deaths a quarantined item caused are not the replica's.
        actor = ray.remote(Replica).options(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=-1,
                                            max_task_retries=0, max_concurrency=1)
        self.handles = [actor.remote(factory, index) for index in range(replicas)]
        self.name = name
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.max_restarts = max_restarts
        self.quarantine_after = quarantine_after
        self.generation = [0] * replicas
        self.deaths = [0] * replicas
        self.retired: set[int] = set()
        self.retirements: dict[int, str] = {}  # replica -> why (node, GPU, error)
        self.quarantined: list[str] = []  # one line per quarantined item
        self._lock = threading.Lock()
        self.in_flight = [0] * replicas  # items sent to each replica and not back yet
        self._parked: list[list[_Slot]] = [[] for _ in range(replicas)]  # slots of a restarting replica
        self._restarting: set[int] = set()
        self._held: set[int] = set()  # replicas running a suspect alone
        self._deferred: list[list[_Slot]] = [[] for _ in range(replicas)]  # their slots meanwhile
        self._victims: dict[tuple[int, int], int] = {}  # (replica, generation) -> items in flight at its death
        self.restart_timeout = restart_timeout
        self._free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(max_in_flight):  # interleaved, so a new item goes to the least busy replica first
            for index in range(replicas):
                self._free.put(_Slot(index, 0))
        self.closed = False

    @classmethod
    def for_config(cls, factory: Callable[[], Callable[..., Any]], cfg, *, replicas: int, num_gpus: float,
                   name: str) -> "ReplicaPool":
        """A pool with the settings of a ``RayConfig`` (``imageedit_r1.executors``)."""
        return cls(factory, replicas=replicas, num_gpus=num_gpus, num_cpus=cfg.cpus_per_replica,
                   max_in_flight=cfg.max_in_flight, max_attempts=cfg.max_attempts, max_restarts=cfg.max_restarts,
                   quarantine_after=cfg.quarantine_after, name=name)

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

    def notes(self) -> list[str]:
        """What the summary says about the pool: retired replicas (node, GPU, why) and quarantined items."""
        return [*self.retirements.values(), *self.quarantined]

    # ------------------------------------------------------------------ slots

    def _check_usable(self) -> None:
        if self.closed:
            raise ReplicaLostError(f"the {self.name} pool is closed")
        if not self.alive():
            raise NoHealthyReplica(f"no healthy {self.name} replica is left: " + "; ".join(self.retirements.values()))

    def _take(self) -> _Slot:
        while True:
            self._check_usable()
            try:
                slot = self._free.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                if slot.replica in self.retired:
                    continue
                if slot.replica in self._held:  # a suspect runs there alone: the slot waits
                    self._deferred[slot.replica].append(slot)
                    continue
                self.in_flight[slot.replica] += 1
                return _Slot(slot.replica, self.generation[slot.replica])

    def _take_alone(self) -> _Slot:
        """A slot on a live replica with nothing in flight, held so that nothing else goes there until
        it is back: a suspect that kills its replica now is the killer."""
        while True:
            self._check_usable()
            with self._lock:
                for replica in range(self.size):
                    if (replica in self.retired or replica in self._restarting or replica in self._held
                            or self.in_flight[replica]):
                        continue
                    self._held.add(replica)
                    self.in_flight[replica] += 1
                    return _Slot(replica, self.generation[replica], alone=True)
            time.sleep(0.05)

    def _release_hold(self, replica: int, *, to: list[_Slot] | None = None) -> None:
        """Under the lock: end a suspect's hold; the replica's waiting slots go back (or to ``to``)."""
        self._held.discard(replica)
        waiting, self._deferred[replica] = self._deferred[replica], []
        if to is not None:
            to.extend(waiting)
        elif replica not in self.retired:
            for slot in waiting:
                self._free.put(slot)

    def _give_back(self, slot: _Slot) -> None:
        with self._lock:
            self.in_flight[slot.replica] -= 1
            if slot.alone:  # an extra slot: not returned, the replica's own ones are released
                self._release_hold(slot.replica)
            elif slot.replica not in self.retired:
                self._free.put(slot)

    # ------------------------------------------------------------------ deaths and retirement

    def _died(self, slot: _Slot, exc: BaseException, kills: int) -> bool:
        """A replica's process died under an item that had killed ``kills`` replicas before: count the
        death once, park the replica's slots until Ray has restarted it (calls to a restarting actor
        fail too), retire it past ``max_restarts`` deaths. Returns whether the item is the killer (it
        ran alone, and this makes ``quarantine_after`` deaths): that death is not the replica's."""
        replica = slot.replica
        with self._lock:
            key = (replica, slot.generation)
            if key not in self._victims:
                self._victims[key] = self.in_flight[replica]  # every item in flight at the death
            killer = self._victims[key] == 1 and kills + 1 >= self.quarantine_after
            self.in_flight[replica] -= 1
            if slot.alone:
                self._release_hold(replica, to=self._parked[replica])
            else:
                self._parked[replica].append(slot)
            if replica in self.retired or slot.generation != self.generation[replica]:
                return killer  # retired, or this death is counted already
            self.generation[replica] += 1
            self.deaths[replica] += 0 if killer else 1
            if self.deaths[replica] > self.max_restarts:
                self._retire(replica, f"{self._label(replica)} died {self.deaths[replica]} times "
                                      f"(last: {_first_line(exc)}); retired")
                return killer
            self._restarting.add(replica)
        log.warning("%s replica %d died (%s); Ray restarts it and its items go to the others", self.name,
                    replica, type(exc).__name__)
        threading.Thread(target=self._revive, args=(replica,), daemon=True).start()
        return killer

    def _label(self, replica: int) -> str:
        return f"{self.name} replica {replica}"

    def _retire(self, replica: int, why: str) -> None:
        """Under the lock: stop sending to ``replica`` and stop its process (its GPU is freed)."""
        self.retired.add(replica)
        self._restarting.discard(replica)
        self._parked[replica].clear()
        self._release_hold(replica, to=[])
        self.retirements[replica] = why
        log.warning("%s", why)
        try:
            ray.kill(self.handles[replica], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _setup_failed(self, slot: _Slot, chain: list[BaseException], info: dict[str, Any]) -> None:
        """The replica could not build its work function: retire it at once; the item goes elsewhere."""
        with self._lock:
            self.in_flight[slot.replica] -= 1
            if slot.alone:
                self._release_hold(slot.replica, to=[])
            if slot.replica not in self.retired:
                self._retire(slot.replica, f"{self.name} {_where_text(info)} could not set up: "
                                           f"{_first_line(chain[0])}; retired, the other replicas do its work")

    def _forgive(self, replicas: list[int]) -> None:
        """Deaths a quarantined item caused are not held against the replicas it killed."""
        with self._lock:
            for replica in replicas:
                if replica not in self.retired:
                    self.deaths[replica] = max(0, self.deaths[replica] - 1)

    def _revive(self, replica: int) -> None:
        """Wait until the restarted replica answers (it rebuilds its model first), then unpark its slots."""
        deadline = time.monotonic() + self.restart_timeout
        while not self.closed:
            try:
                info = ray.get(self.handles[replica].info.remote(), timeout=max(1.0, deadline - time.monotonic()))
            except ActorUnavailableError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                why = "did not come back"
            except (RayActorError, GetTimeoutError) as error:
                why = f"did not come back ({_first_line(error)})"
            else:
                with self._lock:
                    if replica in self.retired:
                        return
                    if info.get("setup_error"):  # restarted, but its model no longer loads there
                        self._retire(replica, f"{self.name} {_where_text(info)} could not set up after a restart: "
                                              f"{_first_line(info['setup_error'][0])}; retired")
                        return
                    self._restarting.discard(replica)
                    for slot in self._parked[replica]:
                        self._free.put(slot)
                    self._parked[replica].clear()
                log.warning("%s replica %d is back", self.name, replica)
                return
            with self._lock:
                if replica not in self.retired:
                    self._retire(replica, f"{self._label(replica)} {why}; retired")
            return

    # ------------------------------------------------------------------ one item

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        killed: list[int] = []  # replicas that died under this item
        suspect = False
        last: BaseException | None = None
        while True:
            slot = self._take_alone() if suspect else self._take()
            try:
                status, value, info = ray.get(self.handles[slot.replica].call.remote(*args, **kwargs))
            except (RayActorError, WorkerCrashedError) as exc:
                killer = self._died(slot, exc, len(killed))
                last = exc
                if killer:
                    self._forgive(killed)  # the earlier deaths were its doing too
                    killed.append(slot.replica)
                    line = (f"an item killed its {self.name} replica {len(killed)} times (the last time running "
                            f"alone): quarantined; re-run with --retry-failed to send it again")
                    with self._lock:
                        self.quarantined.append(line)
                    raise PoisonItemError(f"{line} (last: {_first_line(exc)})") from None
                killed.append(slot.replica)
                if len(killed) >= self.max_attempts:
                    raise ReplicaLostError(f"the replicas holding this item died {len(killed)} times; last: "
                                           f"{_first_line(last)}") from None
                suspect = True  # next time alone: a neighbour's crash is not held against it twice
                continue
            except BaseException:
                self._give_back(slot)
                raise
            if status == SETUP_FAILED:  # not the item's doing: it goes to a healthy replica
                self._setup_failed(slot, value, info)
                continue
            self._give_back(slot)
            info["attempts"] = len(killed) + 1
            if status == "error":
                error = rebuild_chain(value)
                try:
                    error.worker = info  # a failure record says where it failed too
                except AttributeError:
                    pass
                raise error
            return value, info

    def close(self) -> None:
        """Stop every replica now (frees their GPUs for the next method)."""
        self.closed = True
        for handle in self.handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
