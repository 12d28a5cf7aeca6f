"""`wavemix-profile profile MODEL`: one model in depth.

Per-module class, output shape, parameters and forward MACs (to --depth), and peak training memory
split into parameters, gradients, Adam state and the rest (activations and temporaries).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.results import ModuleProfile, Settings


def profile_file_stem(profile: ModuleProfile) -> str:
    """"profile-wavemix-128-7-64px": the file name --out writes, without its suffix."""
    from .outputs import device_slug
    return f"profile-{device_slug(profile.model_name)}-{profile.settings.image_size}px"


def run_profile(args) -> int:
    """Measures in this process, the only command that runs a python: model's code here: its output
    folders are made absolute before that code can change the working folder."""
    import dataclasses
    import os

    import torch

    from ..measure.environment import collect_environment
    from ..measure.measure import _memory, default_device, describe_failure, parse_device, validate
    from ..measure.module_profile import profile_modules
    from ..render.profile import memory_table, module_table, profile_markdown
    from ..core.results import to_dict
    from ..sources.training import StepConfig
    from .outputs import check_output_folder, human_console, print_json

    from .requests import num_classes, say_target, step_fields
    settings = Settings(model=args.model, image_size=args.image_size, num_classes=num_classes(args, args.model),
                        **step_fields(args, args.device or default_device()))
    say_target(args)
    timeline = os.path.abspath(args.timeline) if args.timeline else None
    out = Path(os.path.abspath(args.out)) if args.out else None
    source = validate(settings)
    if out is not None:
        check_output_folder(out)
    if settings.threads:
        torch.set_num_threads(settings.threads)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    console = human_console(args)
    config = StepConfig.of(settings)
    try:
        modules = profile_modules(build(), settings.image_size, args.depth)
        profile = ModuleProfile(settings=settings, model_name=source.display_name, depth=args.depth, modules=modules,
                                command=args.command_line,
                                environment=collect_environment(parse_device(settings.device)))
        console.print(module_table(profile))
        profile = dataclasses.replace(profile, memory=_memory(build, config, settings))
        console.print(memory_table(profile))
        if timeline:  # one training step's memory over time: commands/timeline.py
            from .timeline import write_timeline
            written = write_timeline(timeline, build, config, settings, source.display_name, args.depth, console)
            console.print(f"wrote {', '.join(map(str, written))}")
    except (Exception, SystemExit) as exc:  # the model's failure, in one line: it is not ours to trace
        print(f"error: {source.display_name}: {describe_failure(exc)}", file=sys.stderr)
        return 1
    if out is not None:
        from ..store.atomic import write_text
        from ..core.results import result_to_json
        stem = out / profile_file_stem(profile)
        write_text(stem.with_suffix(".json"), result_to_json(profile) + "\n")
        write_text(stem.with_suffix(".md"), profile_markdown(profile))
        console.print(f"wrote {stem.with_suffix('.json')}, {stem.with_suffix('.md')}")
    if args.json:
        print_json(to_dict(profile))
    return 0
