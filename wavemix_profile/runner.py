"""Run a list of measurements, each isolated, appending each result to the store as it lands."""
from __future__ import annotations

from typing import Callable, Iterable

from .isolation import run_isolated
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
    results = []
    for settings in requests:
        key = settings.key()
        if key in stored:
            results.append(stored[key])
            if on_done:
                on_done(settings, None)
            continue
        if on_start:
            on_start(settings)
        result = run_isolated(settings, on_stage=(lambda name, s=settings: on_stage(s, name)) if on_stage else None)
        store.append(result)
        results.append(result)
        if on_done:
            on_done(settings, result)
    return results
