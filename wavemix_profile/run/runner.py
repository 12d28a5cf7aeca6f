"""Run a list of measurements, each isolated, appending each result to the store as it lands.

Concurrent runs over one store cooperate: a run claims each measurement in the store before it
starts it (Store.try_claim; the OS drops a claim when its process dies), and leaves the ones
another run holds until last. It then waits for that run to finish them and, with resume, takes
its results instead of measuring them again.

Where the measurements run is an Executor: one child at a time here (Sequential), several models'
children at once on this machine's CPU, each timing alone (Lanes), one per device of this node
(devices.py) or Ray tasks (ray_runner.py). Whichever it is, only this
module claims, appends and releases, in the calling thread.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from collections import deque
from typing import Callable, Iterable, Iterator, Optional, Protocol

from ..core.errors import Interrupted, WriteFailed, held_stops
from .host import usable_cores
from .isolation import DEFAULT_TIMEOUT_S, iter_isolated
from .isolation import check_request
from ..core.protocol import Event
from ..core.results import Result, Settings
from ..store.store import Store
from .time_alone import RunClosed, TimeAlone


POLL_S = 1.0  # how often a parallel run looks again at measurements another run holds


class Executor(Protocol):
    """Where claimed measurements run: in this thread (Sequential), on several devices of this node
    (devices.DevicePool) or on a Ray cluster (ray_runner.RayExecutor). The runner alone claims,
    appends to the store and releases, so resume and concurrent runs work the same on each."""

    def groups(self, requests: list[Settings]) -> list[list[Settings]]:
        """The requests batched as they will run: each group is submitted as one."""

    def free(self) -> int:
        """How many groups may be submitted now."""

    def busy(self) -> bool:
        """Whether any submitted measurement has not landed yet."""

    def submit(self, group: list[Settings], on_event: Callable[[Settings, Event], None] | None) -> None:
        """Start measuring `group`; its Results come out of next_result, each exactly once."""

    def next_result(self, timeout_s: Optional[float]) -> Optional[Result]:
        """The next Result to land, from any group; None when none landed within timeout_s (None: wait)
        or a group finished without one."""

    def close(self) -> None:
        """Stop whatever is in flight (Ctrl-C, an error); nothing is returned after this."""

    # Optional: `validate(settings)`, raising for a request that cannot run, in place of
    # measure.validate when the devices are not this machine's (ray_runner.RayExecutor).


class Sequential:
    """One model's child process at a time, in this thread: the one-device run."""

    def __init__(self, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._running: Optional[Iterator[Result]] = None

    def groups(self, requests: list[Settings]) -> list[list[Settings]]:
        return by_model(requests)

    def free(self) -> int:
        return 0 if self._running else 1

    def busy(self) -> bool:
        return self._running is not None

    def submit(self, group, on_event) -> None:
        forward = (lambda index, event: on_event(group[index], event)) if on_event else None
        self._running = iter_isolated(group, on_event=forward, timeout_s=self.timeout_s)

    def next_result(self, timeout_s: Optional[float] = None) -> Optional[Result]:
        try:
            return next(self._running)
        except StopIteration:  # the child has exited
            self._running = None
            return None

    def close(self) -> None:
        if self._running is not None:
            self._running.close()  # kills the child, if one is left
            self._running = None


MAX_CPU_LANES = 2  # CPU lanes a run uses by default, at most one per core: the untimed stages are one thread each


def default_cpu_lanes() -> int:
    """Lanes for a CPU run: one per core this process may use, up to MAX_CPU_LANES."""
    return max(1, min(MAX_CPU_LANES, usable_cores()))


class Lanes:
    """Several measurements at once on this machine: each lane runs one child at a time
    (iter_isolated), one request each, in a thread of its own. The lanes share one time_alone.TimeAlone, so while
    a child times every other is stopped: untimed stages (params, FLOPs, the memory estimate, the
    max-batch search) overlap, each on its share of the cores, and timed blocks have the machine
    (every core) to themselves. For the CPU: two children on one GPU would share its memory and
    answer each other's questions."""

    def __init__(self, lanes: int, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S):
        self.lanes, self.timeout_s = lanes, timeout_s
        self._alone = TimeAlone(untimed_threads=max(1, usable_cores() // lanes))
        self._running = 0
        self._threads: list[threading.Thread] = []
        self._landed: queue.Queue = queue.Queue()  # (kind, payload) from the lane threads

    def groups(self, requests: list[Settings]) -> list[list[Settings]]:
        return [[settings] for settings in requests]  # a child per size too: the lanes finish together

    def free(self) -> int:
        return self.lanes - self._running

    def busy(self) -> bool:
        return self._running > 0

    def submit(self, group, on_event) -> None:
        self._running += 1
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(threading.Thread(target=self._run, args=(group, on_event), name="lane", daemon=True))
        self._threads[-1].start()

    def _run(self, group: list[Settings], on_event) -> None:
        forward = (lambda index, event: self._landed.put(("event", None, (on_event, group[index], event)))) \
            if on_event else None
        try:
            for result in iter_isolated(group, on_event=forward, timeout_s=self.timeout_s, alone=self._alone):
                self._landed.put(("result", None, result))
        except RunClosed:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again in the runner's thread
            self._landed.put(("error", None, exc))
        finally:
            self._landed.put(("done", None, None))

    def next_result(self, timeout_s: Optional[float] = None) -> Optional[Result]:
        return next_landed(self._landed, timeout_s, on_done=self._lane_done)

    def _lane_done(self, _tag) -> None:
        self._running -= 1

    def close(self) -> None:
        self._alone.kill_all()  # the lane threads then see their children's channels close
        for thread in self._threads:
            thread.join(timeout=10)


def next_landed(landed: queue.Queue, timeout_s: Optional[float],
                on_done: Callable[[object], None]) -> Optional[Result]:
    """The next Result from the queue an executor's threads fill with (kind, tag, payload): an "event"
    payload (callback, settings, event) is handed to its callback here, in the caller's thread; "done"
    calls on_done(tag) and returns None; "error" raises the payload. None if nothing lands within
    timeout_s (None: wait)."""
    while True:
        try:
            kind, tag, payload = landed.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if kind == "event":
            callback, settings, event = payload
            callback(settings, event)
        elif kind == "done":
            on_done(tag)
            return None
        elif kind == "error":
            raise payload
        else:
            return payload


def run_all(requests: Iterable[Settings], store: Store, *, resume: bool = False, keep_errors: bool = False,
            timeout_s: Optional[float] = DEFAULT_TIMEOUT_S, command: Optional[str] = None,
            on_start: Callable[[Settings], None] | None = None,
            on_event: Callable[[Settings, Event], None] | None = None,
            on_done: Callable[[Settings, Result | None], None] | None = None,
            executor: Optional[Executor] = None) -> list[Result]:
    """Validate every request first (nothing is stored if any is bad), then measure the ones the
    store lacks (with resume) or all of them. With resume a stored error is measured again unless
    keep_errors. `command` (the command line) is stored with each record. `executor` runs the
    measurements (default: Sequential(timeout_s), one child at a time; another executor brings its
    own time limit; default local_executor). Returns one Result per distinct request, in request order: this run's, or with
    resume the stored one it skipped. Ctrl-C or SIGTERM raises Interrupted; a record the store cannot
    take (a full disk), WriteFailed."""
    requests = list({s.key(): s for s in requests}.values())
    executor = executor or local_executor(requests, timeout_s)
    # an executor whose devices are elsewhere checks there; a python: model is loaded in a child
    check = getattr(executor, "validate", None) or (lambda settings: check_request(settings, timeout_s))
    for settings in requests:
        check(settings)
    run = _Run(store, resume, keep_errors, executor, on_start, on_event, on_done, command)
    try:
        run.all(requests)
    except KeyboardInterrupt:
        raise Interrupted(len(run.fresh)) from None
    except WriteFailed as exc:  # a full disk, say: the store is as it was before the failed append
        exc.stored = len(run.fresh)
        raise
    return [run.fresh.get(s.key()) or run.stored[s.key()] for s in requests]


def local_executor(requests: list[Settings], timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> Executor:
    """This machine: several CPU requests in lanes (Lanes, default_cpu_lanes of them), anything else
    one child at a time."""
    lanes = default_cpu_lanes()
    cpu_only = all(s.device == "cpu" for s in requests)
    if cpu_only and lanes > 1 and len(requests) > 1:
        return Lanes(lanes, timeout_s)
    return Sequential(timeout_s)


class _Run:
    def __init__(self, store: Store, resume: bool, keep_errors: bool, executor: Executor, on_start, on_event,
                 on_done, command: Optional[str]):
        self.store, self.resume, self.keep_errors, self.executor = store, resume, keep_errors, executor
        self.command = command
        self.on_start = on_start or (lambda settings: None)
        self.on_event = on_event
        self.on_done = on_done or (lambda settings, result: None)
        self.stored: dict[str, Result] = {}
        self.fresh: dict[str, Result] = {}
        self.claimed: set[str] = set()
        self.after: dict[str, Settings] = {}  # a request's key -> the next of its group, measured after it

    def _refresh(self) -> None:
        if self.resume:  # the last readable record of a key is its answer
            self.stored = {r.settings.key(): r for r in self.store.read()}

    def _settled(self, settings: Settings) -> bool:
        found = self.stored.get(settings.key())
        return found is not None and (found.ok or self.keep_errors)

    def all(self, requests: list[Settings]) -> None:
        self._refresh()
        todo = []
        for settings in requests:
            if self._settled(settings):
                self.on_done(settings, None)
            else:
                todo.append(settings)
        queue = deque(self.executor.groups(todo))
        waiting: list[list[Settings]] = []  # another run held these: wait for it, then use or redo its work
        executor = self.executor
        try:
            while queue or waiting or executor.busy():
                if executor.free() and queue:
                    group = queue.popleft()
                    mine = [s for s in group if self._claim(s, wait=False)]
                    if len(mine) < len(group):
                        waiting.append([s for s in group if s not in mine])
                    self._start(mine)
                elif executor.free() and waiting and not executor.busy():  # nothing else to do: wait for the other run
                    group = waiting.pop(0)
                    for settings in group:
                        self._claim(settings, wait=True)
                    self._start(group)
                elif executor.free() and waiting and any(self._claim(s, wait=False) for s in waiting[0]):
                    group = waiting.pop(0)
                    mine = [s for s in group if s.key() in self.claimed]
                    if len(mine) < len(group):
                        waiting.append([s for s in group if s not in mine])
                    self._start(mine)
                else:
                    result = executor.next_result(POLL_S if waiting and executor.free() else None)
                    if result is not None:
                        self._record(result)
        finally:
            executor.close()
            for key in list(self.claimed):
                self._release(key)

    def _claim(self, settings: Settings, *, wait: bool) -> bool:
        if settings.key() in self.claimed:
            return True
        if wait:
            self.store.wait_claim(settings.key())
        elif not self.store.try_claim(settings.key()):
            return False
        self.claimed.add(settings.key())
        return True

    def _release(self, key: str) -> None:
        self.store.release(key)
        self.claimed.discard(key)

    def _start(self, group: list[Settings]) -> None:
        """Submit a claimed group, less what another run finished between our read and our claim."""
        if not group:
            return
        self._refresh()
        for settings in [s for s in group if self._settled(s)]:
            self._release(settings.key())
            self.on_done(settings, None)
        group = [s for s in group if not self._settled(s)]
        if not group:
            return
        self.after.update({a.key(): b for a, b in zip(group, group[1:])})
        self.on_start(group[0])
        self.executor.submit(group, self.on_event)

    def _record(self, result: Result) -> None:
        if self.command:
            result = dataclasses.replace(result, command=self.command)
        key = result.settings.key()
        with held_stops():  # appended is counted: a Ctrl-C here says how many results are stored
            self.store.append(result)
            self.fresh[key] = result
        self._release(key)
        self.on_done(result.settings, result)
        following = self.after.pop(key, None)
        if following is not None:
            self.on_start(following)


def by_model(requests: list[Settings]) -> list[list[Settings]]:
    """One child per model, its sizes in turn."""
    groups: dict[str, list[Settings]] = {}
    for settings in requests:
        groups.setdefault(settings.model, []).append(settings)
    return list(groups.values())
