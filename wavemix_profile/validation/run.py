"""Running the validation: each stage resumes from its store, within an optional time limit.

A unit of work (one model's measurements, one check, one repeatability try) starts only when the
time left covers its expected time, so a device call ends cleanly before its own limit and says
what is left; the next call continues from there.

A stored error is not done: the next call measures it again (the store keeps both records, the
later one counts), since an error is the tool failing, fixed since or passing: a model that cannot
train within the budget is a max batch of 0, not an error. A check is done while the compare
stage's max batch it rechecked is still the current one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from ..core.results import Result, Settings
from ..store.store import Store
from .checks import check_found, read_checks, write_checks
from .plan import (CV_TARGET, STAGES, Plan, Stage, check_size, compare_requests, cpu_estimate_requests,
                   repeat_request, whole_device_requests)

Say = Callable[[str], None]


def _latest(path: Path) -> dict[str, Result]:
    return {r.settings.key(): r for r in Store(path).read()}


def _request_stage(plan: Plan, name: str) -> list[Settings]:
    return {"compare": compare_requests, "whole-device": whole_device_requests,
            "cpu-estimates": cpu_estimate_requests}[name](plan)


def _ok(path: Path) -> dict[str, Result]:
    """The latest record of each request, where it has no error."""
    return {key: r for key, r in _latest(path).items() if r.ok}


def _found(plan: Plan, model: str, mode: str) -> Optional[int]:
    """The compare stage's max batch for `mode`, 0 where it found none, None before it ran."""
    result = _compare_result(plan, model)
    if result is None:
        return None
    found = result.max_batch_train if mode == "train" else result.max_batch_infer
    return found.max_batch if result.ok and found is not None else 0


def _compare_result(plan: Plan, model: str) -> Optional[Result]:
    wanted = plan.base(model, check_size(plan)).key()
    return _latest(plan.store("compare")).get(wanted)


def _worst_cv(result: Result) -> float:
    timing = result.throughput
    if not result.ok or timing is None:
        return float("inf")
    return max(cv for cv in (timing.train_cv, timing.infer_cv) if cv is not None)


def left(plan: Plan, stage: Stage) -> list:
    """What the stage still has to do: requests (or check and repeat items), in order."""
    if stage.name in ("compare", "whole-device", "cpu-estimates"):
        done = _ok(plan.store(stage.name))
        return [s for s in _request_stage(plan, stage.name) if s.key() not in done]
    if stage.name == "max-batch-checks":
        checked = {r.key(): r.found for r in read_checks(plan.store(stage.name))}
        todo = []
        for m in plan.check_models:
            for mode in ("train", "infer"):
                found = _found(plan, m, mode)
                if found is None or checked.get((m, check_size(plan), mode)) != found:
                    todo.append((m, mode))
        return todo
    if stage.name == "repeatability":
        done = _ok(plan.store(stage.name))
        todo = []
        for model in plan.repeat_models:
            first = done.get(repeat_request(plan, model, 0).key())
            if first is None:
                todo.append((model, 0))
            elif _worst_cv(first) > CV_TARGET and repeat_request(plan, model, 1).key() not in done:
                todo.append((model, 1))
        return todo
    raise ValueError(f"unknown stage {stage.name!r}")


def run_stage(plan: Plan, stage: Stage, *, deadline: Optional[float], say: Say) -> bool:
    """Do what is left of `stage`; False if the time limit stopped it first."""
    def time_for(units: int = 1) -> bool:
        return deadline is None or time.monotonic() + units * stage.seconds_each <= deadline

    if stage.name in ("compare", "whole-device", "cpu-estimates"):
        return _run_requests(plan, stage, time_for, say)
    if stage.name == "max-batch-checks":
        return _run_checks(plan, stage, time_for, say)
    return _run_repeats(plan, stage, time_for, say)


def _run_requests(plan: Plan, stage: Stage, time_for, say: Say) -> bool:
    from ..run.runner import run_all
    groups: dict[str, list[Settings]] = {}
    for settings in left(plan, stage):
        groups.setdefault(settings.model, []).append(settings)
    store = Store(plan.store(stage.name))
    for model, group in groups.items():
        if not time_for(len(group)):
            return False

        def done(settings: Settings, result: Optional[Result]) -> None:
            if result is not None:
                outcome = "ok" if result.ok else f"error: {result.error}"
                say(f"  {stage.name}: {result.model_name} @ {settings.image_size} px on {settings.device}: "
                    f"{outcome} ({result.wall_s:.0f} s)")

        run_all(group, store, resume=True, on_done=done)
    return True


def _run_checks(plan: Plan, stage: Stage, time_for, say: Say) -> bool:
    path = plan.store(stage.name)
    for model, mode in left(plan, stage):
        result = _compare_result(plan, model)
        if result is None:
            say(f"  {stage.name}: {model} waits for the compare stage")
            continue
        if not time_for():
            return False
        record = check_found(result, mode)
        write_checks(path, [r for r in read_checks(path) if r.key() != record.key()] + [record])
        verdict = "passed" if record.passed else f"FAILED: {record.error or 'the next batch fits too'}"
        say(f"  {stage.name}: {model} {mode} b={record.found:,}: {verdict}")
    return True


def _run_repeats(plan: Plan, stage: Stage, time_for, say: Say) -> bool:
    from ..run.runner import run_all
    store = Store(plan.store(stage.name))
    while True:
        todo = left(plan, stage)
        if not todo:
            return True
        if not time_for():
            return False
        model, attempt = todo[0]
        (result,) = run_all([repeat_request(plan, model, attempt)], store, resume=True)
        say(f"  {stage.name}: {model} try {attempt + 1}: worst CV "
            + (f"{_worst_cv(result):.1%}" if result.ok else f"error: {result.error}"))


def plan_lines(plan: Plan, stages: tuple[Stage, ...] = STAGES) -> list[str]:
    """One line per stage: what is left and its expected time."""
    lines = []
    for stage in stages:
        todo = len(left(plan, stage))
        expected = "" if not todo else f", expected ~{todo * stage.seconds_each / 60:.1f} min" + (
            "" if plan.rehearse else " on an H100")
        lines.append(f"{stage.name:17s} {todo:3d} left{expected}: {stage.what}")
    return lines
