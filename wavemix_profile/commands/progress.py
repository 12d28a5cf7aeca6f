"""A rich progress bar over models x sizes x measurements, with the current model and an ETA."""
from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..core.protocol import Event, Probe, Stage
from ..core.results import MEASUREMENTS, Result, Settings

# Stages a measurement reports (protocol.Stage events), in order; max-batch reports two.
_STAGES = {"params": 1, "flops": 1, "memory": 1, "max-batch": 2, "throughput": 1}


def stage_count(settings: Settings) -> int:
    return 1 + sum(_STAGES[m] for m in MEASUREMENTS if m != "params" and m not in settings.skip)


class MeasureProgress:
    def __init__(self, requests: list[Settings], console=None):
        self._remaining = {s.key(): stage_count(s) for s in requests}
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), transient=False,
                                  **({"console": console} if console is not None else {}))
        self._task = self._progress.add_task("measuring", total=sum(self._remaining.values()))

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def _advance(self, settings: Settings, n: int = 1) -> None:
        key = settings.key()
        n = min(n, self._remaining.get(key, 0))
        self._remaining[key] -= n
        self._progress.advance(self._task, n)

    def start(self, settings: Settings) -> None:
        self._progress.update(self._task, description=f"{settings.model} @ {settings.image_size} px")

    def event(self, settings: Settings, event: Event) -> None:
        if isinstance(event, Probe):
            name = f"max-batch ({event.mode}) probe {event.batch:,}: {'fits' if event.fits else 'out of memory'}"
        elif isinstance(event, Stage):
            name = event.name
            if name != "params":  # a stage marks the end of the one before it
                self._advance(settings)
        else:  # protocol.Timing: the throughput stage's description stands
            return
        self._progress.update(self._task, description=f"{settings.model} @ {settings.image_size} px: {name}")

    def done(self, settings: Settings, result: Result | None) -> None:
        self._advance(settings, self._remaining.get(settings.key(), 0))
        if result is not None and result.error:
            self._progress.console.print(f"[red]{settings.model} @ {settings.image_size} px: {result.error}")
