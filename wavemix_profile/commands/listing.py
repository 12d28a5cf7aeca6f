"""`wavemix-profile list`: the registry with family, parameter count and the paper's figures."""
from __future__ import annotations

from ..models import get_entry, paper_values_for, resolve
from ..render.terminal import print_registry


def registry_rows(patterns: list[str], num_classes: int) -> list[dict]:
    """One row per model: name, family, params counted from a build on the meta device (shapes only:
    no weight is made or initialised, five times faster for the zoo), paper values."""
    import torch
    rows = []
    for name in resolve(patterns):
        entry = get_entry(name)
        with torch.device("meta"):
            model = entry.build(num_classes=num_classes, image_size=32)
        rows.append({
            "name": name,
            "family": entry.family,
            "params": sum(p.numel() for p in model.parameters()),
            "note": entry.params_note,
            "paper": {f"{v.metric}@{v.image_size}px (T{v.table})": v.value for v in paper_values_for(name)},
        })
    return rows


def run_list(args) -> int:
    rows = registry_rows(args.models, args.num_classes)
    if args.markdown:
        from ..render.markdown import render_registry
        print(render_registry(rows, num_classes=args.num_classes))
    else:
        print_registry(rows, num_classes=args.num_classes)
    return 0
