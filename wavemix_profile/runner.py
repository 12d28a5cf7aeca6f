"""Run a list of measurements, each isolated, appending each result to the store as it lands."""
from __future__ import annotations

from typing import Callable, Iterable

from .isolation import iter_isolated
from .measure import validate
from .results import Result, Settings
from .store import Store


def run_all(requests: Iterable[Settings], store: Store, *, resume: bool = False,
            on_start: Callable[[Settings], None] | None = None,
            on_stage: Callable[[Settings, str], None] | None = None,
            on_done: Callable[[Settings, Result | None], None] | None = None) -> list[Result]:
    """Validate every request first (nothing is stored if any is bad), then measure the ones the
    store lacks (with resume) or all of them. Returns the results of this run and, with resume, the
    stored ones it skipped, in request order."""
    requests = list(requests)
    for settings in requests:
        validate(settings)
    stored = {r.settings.key(): r for r in store.read()} if resume else {}
    todo = [s for s in requests if s.key() not in stored]
    by_model: dict[str, list[Settings]] = {}
    for settings in todo:  # one child per model, its sizes in turn
        by_model.setdefault(settings.model, []).append(settings)
    fresh: dict[str, Result] = {}
    for settings in requests:
        if settings.key() in stored and on_done:
            on_done(settings, None)
    for group in by_model.values():
        position = 0  # which of the group's requests the child is on

        def stage(name: str) -> None:
            on_stage(group[position], name)

        if on_start:
            on_start(group[0])
        for result in iter_isolated(group, on_stage=stage if on_stage else None):
            store.append(result)
            fresh[result.settings.key()] = result
            if on_done:
                on_done(result.settings, result)
            position += 1
            if on_start and position < len(group):
                on_start(group[position])
    return [fresh.get(s.key()) or stored[s.key()] for s in requests]
