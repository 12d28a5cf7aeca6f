"""`wavemix-profile paper-fit`: which measuring protocol the paper's Tables 1, 4 and 6 match (paper_fit.py).

Writes paper_fit.json into the output folder and, when a results store is there, re-renders its
report.md with the section "What the paper's numbers match".
"""
from __future__ import annotations

import json
from pathlib import Path

def run_paper_fit(args) -> int:
    import torch

    from ..store.atomic import write_text
    from ..measure.environment import collect_environment
    from ..measure.paper_fit import fit, to_json
    from ..render.paper_fit import best_per_table
    from ..render.terminal import make_console
    from ..store.store import Store
    from .outputs import PAPER_FIT_NAME, STORE_NAME, check_output_folder, device_slug, write_outputs

    out = Path(args.out) if args.out else Path("reports") / device_slug(
        collect_environment(torch.device("cpu")).device_name)
    check_output_folder(out)
    console = make_console()
    command = args.command_line
    console.print("estimating the paper's models under each protocol:", highlight=False)
    fits = fit(say=lambda line: console.print(line, highlight=False))
    write_text(out / PAPER_FIT_NAME, json.dumps(to_json(fits, command=command, torch_version=torch.__version__),
                                                indent=1) + "\n")
    for table, best in best_per_table(fits).items():
        console.print(f"Table {table}: best {best.protocol} (score {best.score:.2f}, median ours/paper "
                      f"{best.median_ratio:.2f})", highlight=False)
    written = [out / PAPER_FIT_NAME]
    if (out / STORE_NAME).exists():
        written += write_outputs(Store(out / STORE_NAME).read(), out, command=f"wavemix-profile report {out / STORE_NAME}",
                                 console=console)
    console.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
    return 0
