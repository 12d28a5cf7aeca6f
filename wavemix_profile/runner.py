"""Run a list of measurements, each isolated, appending each result to the store as it lands.

Concurrent runs over one store cooperate: a run claims each measurement in the store before it
starts it (Store.try_claim; the OS drops a claim when its process dies), and leaves the ones
another run holds until last. It then waits for that run to finish them and, with resume, takes
its results instead of measuring them again.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Optional

from .errors import Interrupted
from .isolation import DEFAULT_TIMEOUT_S, iter_isolated
from .measure import validate
from .protocol import Event
from .results import Result, Settings
from .store import Store


def run_all(requests: Iterable[Settings], store: Store, *, resume: bool = False, keep_errors: bool = False,
            timeout_s: Optional[float] = DEFAULT_TIMEOUT_S, command: Optional[str] = None,
            on_start: Callable[[Settings], None] | None = None,
            on_event: Callable[[Settings, Event], None] | None = None,
            on_done: Callable[[Settings, Result | None], None] | None = None) -> list[Result]:
    """Validate every request first (nothing is stored if any is bad), then measure the ones the
    store lacks (with resume) or all of them. With resume a stored error is measured again unless
    keep_errors. `command` (the command line) is stored with each record. Returns one Result per distinct request, in request order: this run's, or with
    resume the stored one it skipped. Ctrl-C or SIGTERM raises Interrupted."""
    requests = list({s.key(): s for s in requests}.values())
    for settings in requests:
        validate(settings)
    run = _Run(store, resume, keep_errors, timeout_s, on_start, on_event, on_done, command)
    try:
        run.all(requests)
    except KeyboardInterrupt:
        raise Interrupted(len(run.fresh)) from None
    return [run.fresh.get(s.key()) or run.stored[s.key()] for s in requests]


class _Run:
    def __init__(self, store: Store, resume: bool, keep_errors: bool, timeout_s, on_start, on_event, on_done,
                 command: Optional[str]):
        self.store, self.resume, self.keep_errors, self.timeout_s = store, resume, keep_errors, timeout_s
        self.command = command
        self.on_start = on_start or (lambda settings: None)
        self.on_event = on_event
        self.on_done = on_done or (lambda settings, result: None)
        self.stored: dict[str, Result] = {}
        self.fresh: dict[str, Result] = {}

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
        waiting: list[Settings] = []
        for group in _by_model(todo):
            mine = [s for s in group if self.store.try_claim(s.key())]
            waiting += [s for s in group if s not in mine]
            self._measure(mine)
        for group in _by_model(waiting):  # another run held these: wait for it, then use or redo its work
            for settings in group:
                self.store.wait_claim(settings.key())
            self._measure(group)

    def _measure(self, group: list[Settings]) -> None:
        """Measure a claimed group of one model's requests in one child; every claim is released."""
        try:
            self._refresh()  # another run may have finished some between our read and our claim
            for settings in [s for s in group if self._settled(s)]:
                self.store.release(settings.key())
                self.on_done(settings, None)
            group = [s for s in group if not self._settled(s)]
            if not group:
                return
            self.on_start(group[0])
            on_event = (lambda index, event: self.on_event(group[index], event)) if self.on_event else None
            for position, result in enumerate(iter_isolated(group, on_event=on_event, timeout_s=self.timeout_s)):
                if self.command:
                    result = dataclasses.replace(result, command=self.command)
                self.store.append(result)
                self.store.release(result.settings.key())
                self.fresh[result.settings.key()] = result
                self.on_done(result.settings, result)
                if position + 1 < len(group):
                    self.on_start(group[position + 1])
        finally:
            for settings in group:
                self.store.release(settings.key())


def _by_model(requests: list[Settings]) -> list[list[Settings]]:
    """One child per model, its sizes in turn."""
    groups: dict[str, list[Settings]] = {}
    for settings in requests:
        groups.setdefault(settings.model, []).append(settings)
    return list(groups.values())
