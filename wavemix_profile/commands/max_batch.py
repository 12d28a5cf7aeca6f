"""`wavemix-profile max-batch MODEL`: the largest batch that trains or infers within a budget."""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

from rich.table import Table

from ..errors import BadInputError
from ..results import Result, Settings


def parse_budget(text: str | None) -> int | None:
    """A budget string to bytes; the parser's ValueError becomes the user's one-line error."""
    if text is None:
        return None
    from ..maxbatch import parse_bytes
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None


def run_max_batch(args) -> int:
    from ..isolation import run_isolated
    from ..measure import check_request, default_device
    from ..protocol import Event, Probe

    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    settings = Settings(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                        device=args.device or default_device(), amp=args.amp,
                        channels_last=args.channels_last, compile=args.compile, num_classes=args.num_classes,
                        memory_budget_bytes=parse_budget(args.memory_budget), multiple_of=args.multiple_of,
                        max_batch_modes=modes, skip=("flops", "memory", "throughput"),
                        target_gpu=args.target_gpu, inference=args.inference, threads=args.threads)
    check_request(settings, args.timeout)
    from .outputs import STORE_NAME, check_output_folder, human_console, print_json
    if args.out:
        check_output_folder(Path(args.out), store=STORE_NAME)
    console = human_console(args)
    predicted = settings.device == "cpu"

    def show(event: Event) -> None:
        if isinstance(event, Probe):
            # A prediction is judged by the band's upper end; a CUDA probe by what its tensors held.
            used = "" if not event.peak_bytes else (
                f", {event.peak_bytes / 2**30:.2f} GiB on the device (upper end)" if predicted
                else f", peak {event.peak_bytes / 2**30:.2f} GiB")
            verdict = "[green]fits" if event.fits else "[red]does not fit"
            console.print(f"  {event.mode:5s} batch {event.batch:>7,}: {verdict}[/]{used}")

    console.print(f"[bold]{settings.model}[/] @ {settings.image_size} px on {settings.device}: probing")
    result = run_isolated(settings, on_event=show, timeout_s=args.timeout)
    result = dataclasses.replace(result, command="wavemix-profile " + shlex.join(sys.argv[1:]))
    if args.out:  # the store compare and report use: `report DIR/results.jsonl` renders it
        from ..store import Store
        Store(Path(args.out) / STORE_NAME).append(result)
    if args.json:
        from ..results import to_dict
        print_json(to_dict(result))
    if result.error:
        raise SystemExit(f"error: {result.error}")
    console.print(max_batch_table(result))
    return 0


def max_batch_table(result: Result) -> Table:
    """One row per mode searched. A prediction shows both ends of its band at the answer: the
    tensors (allocated, the CPU estimate) and what nvidia-smi would show, the end it was judged by."""
    from ..render.columns import MISSING, UPPER, format_budget, max_batch_label
    found = [r for r in (result.max_batch_train, result.max_batch_infer) if r is not None]
    budget = format_budget(found[0].budget_bytes)
    predicted = next((r for r in found if r.predicted), None)
    title = f"{result.model_name} @ {result.settings.image_size} px, {budget} budget"
    if predicted is not None:
        title += " (predicted from CPU memory estimates" + (
            f" for {predicted.overhead_source}: the largest batch whose upper end fits the budget)"
            if predicted.overhead_source else ")")
    table = Table(title=title, caption=f"tensors: allocated; {UPPER.mark.strip()} device: {UPPER.legend}"
                  if predicted is not None else None, caption_justify="left")
    for header in ("mode", "max batch", "probes", "tensors at answer (GiB)", "device at answer (GiB)", "search (s)",
                   "method"):
        table.add_column(header, justify="left" if header in ("mode", "method") else "right")
    for r in found:
        tensors = r.predicted_peak_bytes or next((p.peak_bytes for p in r.probes if p.batch == r.max_batch
                                                  and p.peak_bytes), None)
        mark = max_batch_label(r)
        label = f"{r.max_batch:,}" + (mark.mark if mark else "")
        device = MISSING if r.predicted_device_bytes is None else f"{UPPER.mark.strip()}{r.predicted_device_bytes / 2**30:.2f}"
        table.add_row(r.mode, label, str(len(r.probes)), MISSING if tensors is None else f"{tensors / 2**30:.2f}",
                      device, f"{r.search_s:.1f}", r.method)
    return table
