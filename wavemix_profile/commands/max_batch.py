"""`wavemix-profile max-batch MODEL`: the largest batch that trains or infers within a budget."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from rich.table import Table

from ..core.results import Result, Settings


def run_max_batch(args) -> int:
    from ..run.isolation import run_isolated, check_request
    from ..measure.measure import default_device
    from ..core.protocol import Event, Probe

    from .requests import max_batch_budget, num_classes, say_target, step_fields
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    device = args.device or default_device()
    settings = Settings(model=args.model, image_size=args.image_size, num_classes=num_classes(args, args.model),
                        memory_budget_bytes=max_batch_budget(args, device), multiple_of=args.multiple_of,
                        max_batch_modes=modes, skip=("flops", "memory", "throughput"), **step_fields(args, device))
    say_target(args)
    check_request(settings, args.timeout)
    from .outputs import STORE_NAME, check_output_folder, human_console, print_json
    if args.out:
        check_output_folder(Path(args.out), store=STORE_NAME)
    console = human_console(args)
    predicted = settings.device == "cpu"

    def show(event: Event) -> None:
        if isinstance(event, Probe):
            # A prediction says what the step needs of the device; a CUDA probe what its tensors held.
            used = "" if not event.peak_bytes else (
                f", needs {event.peak_bytes / 2**30:.2f} GiB of the device" if predicted
                else f", peak {event.peak_bytes / 2**30:.2f} GiB")
            verdict = "[green]fits" if event.fits else "[red]does not fit"
            console.print(f"  {event.mode:5s} batch {event.batch:>7,}: {verdict}[/]{used}")

    console.print(f"[bold]{settings.model}[/] @ {settings.image_size} px on {settings.device}: probing")
    result = run_isolated(settings, on_event=show, timeout_s=args.timeout)
    result = dataclasses.replace(result, command=args.command_line)
    if args.out:  # the store compare and report use: `report DIR/results.jsonl` renders it
        from ..store.store import Store
        Store(Path(args.out) / STORE_NAME).append(result)
    if args.json:
        from ..core.results import to_dict
        print_json(to_dict(result))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)  # exit 1: the measurement failed
        return 1
    console.print(max_batch_table(result))
    return 0


def max_batch_table(result: Result) -> Table:
    """One row per mode searched. A prediction shows, at its answer, the tensors (allocated, the CPU
    estimate) and the device memory the step needs, which it was judged by."""
    from ..core.gpus import budget_label
    from ..render.columns import MISSING, NEEDED, max_batch_label, step_label
    found = [r for r in (result.max_batch_train, result.max_batch_infer) if r is not None]
    predicted = next((r for r in found if r.predicted), None)
    title = (f"{result.model_name} @ {result.settings.image_size} px · {step_label([result])} · max batch within "
             f"{budget_label(found[0].budget_bytes, result.settings.target_gpu)}")
    if predicted is not None:
        title += " (predicted from CPU memory estimates" + (
            f" for {predicted.overhead_source}" if predicted.overhead_source else "") + ")"
    table = Table(title=title, caption=f"tensors: allocated; device needed: {NEEDED}" if predicted is not None
                  else None, caption_justify="left")
    for header in ("mode", "max batch", "probes", "tensors at answer (GiB)", "device needed at answer (GiB)",
                   "search (s)", "method"):
        table.add_column(header, justify="left" if header in ("mode", "method") else "right")
    for r in found:
        tensors = r.predicted_peak_bytes or next((p.peak_bytes for p in r.probes if p.batch == r.max_batch
                                                  and p.peak_bytes), None)
        mark = max_batch_label(r)
        label = f"{r.max_batch:,}" + (mark.mark if mark else "")
        device = MISSING if r.predicted_device_bytes is None else f"{r.predicted_device_bytes / 2**30:.2f}"
        table.add_row(r.mode, label, str(len(r.probes)), MISSING if tensors is None else f"{tensors / 2**30:.2f}",
                      device, f"{r.search_s:.1f}", r.method)
    return table
