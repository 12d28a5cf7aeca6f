"""The max batch the search found, checked directly: b fits and b + step does not, each in a fresh process.

A fresh process per probe (a child the fork server forks before any torch op has run, as each
measurement's) means nothing the search left behind (cached blocks, cuDNN plans, a fragmented
allocator) helps or hurts the check. Records are kept in a JSON Lines file, rewritten
whole and atomically after each check, so a cut-off call keeps every check it finished.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..run.isolation import probe_isolated
from ..store.atomic import write_text
from ..core.results import Result, Settings

PROBE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class CheckRecord:
    """One mode of one model at one size. Batches in images, peaks in bytes."""

    model: str
    image_size: int
    mode: str                             # "train" or "infer"
    budget_bytes: int
    found: int                            # what the search answered
    step: int                             # --multiple-of: the next batch is found + step
    predicted: bool                       # CPU estimates (the rehearsal), not GPU probes
    fits_at_found: Optional[bool] = None  # None when found is 0 (nothing to recheck)
    peak_at_found_bytes: Optional[int] = None
    fits_at_next: Optional[bool] = None
    peak_at_next_bytes: Optional[int] = None
    error: Optional[str] = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.fits_at_found in (True, None) and self.fits_at_next is False

    def key(self) -> tuple[str, int, str]:
        return self.model, self.image_size, self.mode


def read_checks(path: Path) -> list[CheckRecord]:
    if not path.exists():
        return []
    names = {f.name for f in dataclasses.fields(CheckRecord)}
    return [CheckRecord(**{k: v for k, v in json.loads(line).items() if k in names})
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_checks(path: Path, records: list[CheckRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(dataclasses.asdict(r), sort_keys=True) + "\n" for r in records))


def probe_in_fresh_process(settings: Settings, mode: str, batch: int) -> tuple[Optional[bool], Optional[int], str]:
    """(fits, peak bytes, error): `batch` probed in a child of its own (isolation.probe_isolated)."""
    answer = probe_isolated(settings, mode, batch, timeout_s=PROBE_TIMEOUT_S)
    if isinstance(answer, str):
        return None, None, f"probe at batch {batch}: {answer}"
    return answer.fits, answer.peak_bytes, ""


def check_found(result: Result, mode: str) -> CheckRecord:
    """Recheck `result`'s max batch for `mode` (its settings give the model, size, budget and step)."""
    settings = result.settings
    base = dict(model=result.model_name, image_size=settings.image_size, mode=mode, step=settings.multiple_of,
                budget_bytes=settings.memory_budget_bytes or 0, found=0, predicted=False)
    found = result.max_batch_train if mode == "train" else result.max_batch_infer
    if not result.ok or found is None:
        return CheckRecord(**base, error=f"the compare stage found no max batch: {result.error or 'not measured'}")
    base.update(found=found.max_batch, budget_bytes=found.budget_bytes, predicted=found.predicted)
    if found.capped:
        return CheckRecord(**base, error="the search reached its limit: there is no next batch to check")
    fits, peak, error = (None, None, "") if found.max_batch == 0 else probe_in_fresh_process(settings, mode,
                                                                                              found.max_batch)
    if error:
        return CheckRecord(**base, error=error)
    after, after_peak, error = probe_in_fresh_process(settings, mode, found.max_batch + settings.multiple_of)
    return CheckRecord(**base, fits_at_found=fits, peak_at_found_bytes=peak, fits_at_next=after,
                       peak_at_next_bytes=after_peak, error=error or None)
