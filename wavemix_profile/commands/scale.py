"""`wavemix-profile scale`: cost against image size.

Forward MACs per image, peak training memory at the batch size and the largest training batch
within the budget, at each image size, through the same pipeline as `compare` (runner.run_all: one
isolated child per model, results appended to DIR/results.jsonl, --resume) with throughput skipped:
on the CPU every memory figure is the fake-tensor estimate, so any size is quick. Renders
scale.md, scale.png and scale.svg into DIR (render/scale.py) and prints the tables.

Imported by the CLI parser for its defaults: module-level imports stay light.
"""
from __future__ import annotations

import argparse
from pathlib import Path

# A few models of each family that read well on one chart; sizes from CIFAR's to ImageNet's.
SCALE_MODELS = ("ResNet-18", "ResNet-50", "2D FNet-128/5", "ConvMixer-256/8", "ViT-128/4x4", "CCT-128/4x4",
                "WaveMix-128/7", "WaveMix-256/7")
SCALE_SIZES = (32, 64, 128, 224, 256)
SCALE_SKIP = ("throughput",)  # params, FLOPs, the memory estimate and the max-batch search remain
CHART_NAME = "scale"


def size_rules(requests) -> tuple[dict[str, str], list, list[str]]:
    """How each zoo model's layers change with the size (its SizeRule.adapts) by display name; the
    requests the models can take; and 'MODEL @ SIZE px' for each they cannot. Specs outside the zoo
    have no rule and take every size."""
    from ..models import get_entry
    from ..sources.sources import resolve_source, runs_user_code
    adapts: dict[str, str] = {}
    taken, refused = [], []
    for settings in requests:
        if runs_user_code(settings.model):  # no rule, and its code runs in children only
            taken.append(settings)
            continue
        source = resolve_source(settings.model)
        rule = get_entry(source.spec).sizes if source.family is not None else None
        if rule is not None:
            adapts[source.display_name] = rule.adapts
        if rule is None or rule.check(settings.image_size):
            taken.append(settings)
        else:
            refused.append(f"{source.display_name} @ {settings.image_size} px")
    return adapts, taken, refused


def run_scale(args) -> int:
    from ..store.atomic import write_text
    from ..measure.environment import collect_environment
    from ..run.isolation import check_request
    from ..measure.measure import default_device, parse_device
    from ..render.chart_style import save_figure
    from ..render.scale import render_scale_markdown, scale_chart, scale_tables
    from ..render.terminal import make_console
    from ..run.runner import run_all
    from ..store.store import Store
    from .compare import build_requests
    from .outputs import STORE_NAME, check_output_folder, device_slug, exit_for_failures, latest_per_key
    from .progress import MeasureProgress

    device = args.device or default_device()
    parse_device(device)
    asked = argparse.Namespace(**{**vars(args), "skip": list(SCALE_SKIP), "full": False, "throughput_batch_size": None})
    adapts, requests, refused = size_rules(build_requests(asked, device))
    if not requests:
        from ..core.errors import BadInputError
        raise BadInputError("no model takes any of the image sizes asked for (" + "; ".join(refused)
                            + "); `wavemix-profile list` and --help name the sizes each model accepts")
    for settings in requests:  # bad input is reported before the folder is touched
        check_request(settings, args.timeout)
    slug = device_slug(collect_environment(parse_device(device)).device_name)
    out = Path(args.out) if args.out else Path("reports") / slug / "scale"
    check_output_folder(out, store=STORE_NAME)
    if args.resume:  # what a writer killed mid-write (SIGKILL) left; live writers' files stay
        from ..store.atomic import sweep_stale
        sweep_stale(out)
    command = args.command_line
    with MeasureProgress(requests) as progress:
        results = run_all(requests, Store(out / STORE_NAME), resume=args.resume, keep_errors=args.keep_errors,
                          timeout_s=args.timeout, command=command, on_start=progress.start,
                          on_event=progress.event, on_done=progress.done)
    results = latest_per_key(results)
    console = make_console()
    for table in scale_tables(results, adapts):
        console.print(table)
    if refused:
        console.print("not measured (the model does not take the size): " + "; ".join(refused))
    figure = scale_chart(results, adapts)
    written = save_figure(figure, out, CHART_NAME) if figure is not None else []
    markdown = out / f"{CHART_NAME}.md"
    write_text(markdown, render_scale_markdown(results, adapts, command=command, skipped=refused,
                                               chart=f"{CHART_NAME}.png" if figure is not None else None))
    print(f"wrote {', '.join(str(p) for p in [markdown, *written])}")
    return exit_for_failures(results, shown=3, with_errors=True)
