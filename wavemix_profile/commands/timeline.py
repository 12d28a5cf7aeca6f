"""`wavemix-profile profile MODEL --timeline DIR`: a memory timeline of one training step.

Measures it (memory_timeline.py: the CPU estimate, or the real step on CUDA), stores it as JSON,
draws it as PNG and SVG (render/timeline.py) and prints the modules holding the most at the peak.
On CUDA the caching allocator's history is saved beside them as a pickle that PyTorch's memory
visualiser (https://pytorch.org/memory_viz) opens.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path


def timeline_stem(model_name: str, image_size: int) -> str:
    """'WaveMix-128/7', 32 -> 'timeline-wavemix-128-7-32px'."""
    from .outputs import device_slug
    return f"timeline-{device_slug(model_name)}-{image_size}px"


def write_timeline(out: str, build, config, settings, model_name: str, depth: int, console) -> list[Path]:
    """Measure, store and draw the timeline into folder `out`; return the paths written."""
    from ..store.atomic import replacing, write_text
    from ..measure.environment import collect_environment
    from ..measure.memory_timeline import cpu_timeline, cuda_timeline
    from ..render.chart_style import save_figure
    from ..render.timeline import timeline_chart, timeline_table
    from ..estimate.timeline import timeline_to_json
    from .outputs import check_output_folder

    folder = Path(out)
    check_output_folder(folder)
    stem = folder / timeline_stem(model_name, settings.image_size)
    device_name = collect_environment(config.device).device_name
    kwargs = dict(batch=settings.batch_size, image_size=settings.image_size, model_name=model_name,
                  device_name=device_name, depth=depth)
    written = []
    if config.device.type == "cuda":
        timeline, snapshot = cuda_timeline(build, config, warmup_steps=settings.warmup_steps, **kwargs)
        snapshot_path = stem.with_suffix(".pickle")
        with replacing(snapshot_path) as tmp, open(tmp, "wb") as f:
            pickle.dump(snapshot, f)
        timeline = dataclasses.replace(timeline, snapshot_file=snapshot_path.name)
        written.append(snapshot_path)
    else:
        timeline = cpu_timeline(build, config, **kwargs)
    write_text(stem.with_suffix(".json"), timeline_to_json(timeline))
    written += save_figure(timeline_chart(timeline), folder, stem.name)
    console.print(timeline_table(timeline))
    return [stem.with_suffix(".json"), *written]
