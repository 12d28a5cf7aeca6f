"""`wavemix-profile compare`: measure a set of models at several image sizes and render the comparison."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import BadInputError
from ..models import PAPER_ZOO, resolve
from ..core.results import CPU_QUICK_TIMING, MEASUREMENTS, Settings
from ..sources.sources import PREFIXES



def expand_models(patterns: list[str]) -> list[str]:
    """Registry names and globs, plus torchvision:/timm:/python: specs passed through."""
    out: list[str] = []
    for pattern in patterns:
        names = [pattern] if pattern.startswith(PREFIXES) else resolve([pattern])
        out.extend(n for n in names if n not in out)
    return out


def parse_skip(text: list[str]) -> tuple[str, ...]:
    items = [s.strip() for chunk in text for s in chunk.split(",") if s.strip()]
    bad = [s for s in items if s not in MEASUREMENTS]
    if bad:
        raise BadInputError(f"unknown --skip value {bad[0]!r}; accepted: {', '.join(MEASUREMENTS)}")
    return tuple(dict.fromkeys(items))


# Settings field <- command-line option, for the options that say how images/s are timed.
TIMING_OPTIONS = {"warmup_steps": "warmup", "timed_iterations": "iterations", "repeats": "repeats",
                  "min_block_s": "min_block_time"}


def timing_options(args) -> dict:
    """The timing Settings fields the command line set (over the CPU's quick preset); a minimum block
    time of 0 means none. Commands without these options set nothing."""
    given = {field: getattr(args, option, None) for field, option in TIMING_OPTIONS.items()}
    fields = {field: value for field, value in given.items() if value is not None}
    if "min_block_s" in fields:
        fields["min_block_s"] = fields["min_block_s"] or None
    return fields


def build_requests(args, device: str) -> list[Settings]:
    from .requests import max_batch_budget, num_classes, say_target, step_fields
    budget = max_batch_budget(args, device)
    say_target(args)
    extra = dict(CPU_QUICK_TIMING) if device == "cpu" and not args.full else {}
    if args.throughput_batch_size:
        extra["throughput_batch_size"] = args.throughput_batch_size
    extra.update(timing_options(args))
    skip = parse_skip(args.skip or [])
    fields = step_fields(args, device)
    return [Settings(model=model, image_size=size, num_classes=num_classes(args, model), memory_budget_bytes=budget,
                     multiple_of=args.multiple_of, skip=skip, **fields, **extra)
            for model in expand_models(args.models or list(PAPER_ZOO)) for size in dict.fromkeys(args.image_sizes)]


def run_compare(args) -> int:
    from .scale_out import placement
    with placement(args) as where:  # this device, several (--devices) or a Ray cluster (--ray)
        return _run_compare(args, where)


def _run_compare(args, where) -> int:
    from ..store.atomic import sweep_stale
    from ..render.cross_device import write_cross_device
    from ..run.runner import run_all
    from ..store.store import Store
    from .progress import MeasureProgress
    from ..core.results import to_dict
    from .outputs import (STORE_NAME, check_output_folder, exit_for_failures, human_console, print_json,
                          read_accuracies, write_outputs)

    requests = where.expand(build_requests(args, where.device))
    out = Path(args.out) if args.out else Path("reports") / where.folder
    for settings in requests:  # bad input is reported before the folder is touched
        where.validate(settings)
    accuracies = read_accuracies(args.accuracy)
    check_output_folder(out, store=STORE_NAME)
    if args.resume:  # what a writer killed mid-write (SIGKILL) left; live writers' files stay
        sweep_stale(out)
    store = Store(out / STORE_NAME)  # appended to, never rewritten: earlier runs stay
    command = args.command_line
    console = human_console(args)
    with MeasureProgress(requests, console=console) as progress:
        results = run_all(requests, store, resume=args.resume, keep_errors=args.keep_errors, timeout_s=args.timeout,
                          command=command, on_start=progress.start, on_event=progress.event, on_done=progress.done,
                          executor=where.executor)
    # what was asked for, measured now or stored before; `report` renders a whole store
    written = write_outputs(results, out, command=command, accuracies=accuracies, console=console)
    written += write_cross_device(results, out, command=command)  # results from several devices: side by side
    console.print(f"wrote {', '.join(str(p) for p in written)}")
    if args.json:
        print_json([to_dict(r) for r in results])
    return exit_for_failures(results)
