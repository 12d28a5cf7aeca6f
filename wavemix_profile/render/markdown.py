"""The GitHub-ready Markdown report: environment, one table per image size, the paper beside ours, charts.

Reads result objects only; never imports torch. Deterministic for a given input, so it is compared
against a golden file in the tests.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from ..core.gpus import PAPER_CARD
from ..models import PAPER, paper_values
from ..core.results import Environment, Result, ThroughputResult
from .columns import (ENERGY_SOURCES, MISSING, Grid, best_legend, column_notes, comparison_grids, devices,
                      format_number, shown_columns)
from .paper import (GIB, MEASURED_UNITS, METRIC_LABELS, TABLE_CAPTIONS, PaperComparison,
                    compare_with_paper, device_of, ratio_text)


def _md(text: object) -> str:
    """Cell text made safe for a GitHub table: pipes and tildes escaped, one line."""
    return str(text).replace("|", "\\|").replace("~", "\\~").replace("\n", " ")


def _table(headers: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    rule = {"l": ":---", "r": "---:"}
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule[a] for a in align) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _yes_no(flag: Optional[bool]) -> str:
    return MISSING if flag is None else ("on" if flag else "off")


def _environment(results: Sequence[Result]) -> list[str]:
    names = devices(results)
    if not names:
        return []
    envs: dict[str, Environment] = {}
    for r in results:
        if r.environment and r.environment.device_name not in envs:
            envs[r.environment.device_name] = r.environment

    def on(name: str) -> list[Result]:
        # a measurement whose process died records no device: with one device it is that device's
        return [r for r in results if device_of(r) == name or (len(names) == 1 and r.environment is None)]

    def joined(values) -> str:
        return ", ".join(dict.fromkeys(str(v) for v in values if v not in (None, ""))) or MISSING

    fields = (
        ("device memory", lambda e, rs: MISSING if e.device_memory_bytes is None
         else f"{e.device_memory_bytes / GIB:.1f} GiB"),
        ("driver", lambda e, rs: e.driver_version or MISSING),
        ("CUDA", lambda e, rs: MISSING if not e.cuda_version else e.cuda_version if e.device_memory_bytes
         else f"torch built for {e.cuda_version}; no GPU used"),
        ("torch", lambda e, rs: e.torch_version),
        ("torchvision", lambda e, rs: e.torchvision_version or MISSING),
        ("Python", lambda e, rs: e.python_version),
        ("platform", lambda e, rs: e.platform),
        ("CPU threads", lambda e, rs: str(e.cpu_threads)),
        ("cudnn.benchmark", lambda e, rs: _yes_no(e.cudnn_benchmark)),
        ("TF32 matmul", lambda e, rs: _yes_no(e.tf32_matmul)),
        ("AMP (training step)", lambda e, rs: joined(r.settings.amp for r in rs)),
        ("precision timed", lambda e, rs: joined(r.throughput.precision for r in rs if r.throughput)),
        ("timer", lambda e, rs: joined(r.throughput.timer for r in rs if r.throughput)),
        ("energy counter", lambda e, rs: joined(energy_counter(r.throughput) for r in rs if r.throughput)),
        ("results (failed)", lambda e, rs: f"{len(rs)} ({sum(not r.ok for r in rs)})"),
    )
    rows = [[name] + [_md(get(envs[d], on(d))) for d in names] for name, get in fields]
    return ["## Environment", "", *_table(["", *(_md(d) for d in names)], "l" * (len(names) + 1), rows), ""]


def energy_counter(timing: ThroughputResult) -> Optional[str]:
    """Which counter gave the energy figures, or why there are none (None for records older than energy)."""
    if timing.energy_source:
        return ENERGY_SOURCES.get(timing.energy_source, timing.energy_source)
    return f"none: {timing.energy_note}" if timing.energy_note else None


def _grid_lines(grid: Grid) -> list[str]:
    lead = ["model", "family"] + (["device"] if grid.show_device else [])
    rows = []
    for row in grid.rows:
        first = [_md(row.model), _md(row.family)] + ([_md(row.device)] if grid.show_device else [])
        if row.error is not None:
            rows.append(first + [f"error: {_md(row.error)}"] + [""] * (len(grid.headers) - 1))
        else:
            rows.append(first + [f"**{_md(c.text)}**" if c.best else _md(c.text) for c in row.cells])
    return _table(lead + [_md(h) for h in grid.headers], "l" * len(lead) + "r" * len(grid.headers), rows)


def _legend(grids: Sequence[Grid]) -> list[str]:
    if not grids:
        return []
    labels = list(dict.fromkeys(label for grid in grids for label in grid.labels))
    lines = [f"- **bold**: {best_legend(shown_columns(grids))}"]
    lines += [f"- `{label.mark.strip()}`: {label.legend}" for label in labels]
    lines += [f"- {note}" for note in column_notes(shown_columns(grids))]
    lines.append(f"- {MISSING}: not measured (skipped, or not available on this device)")
    return ["Legend:", "", *lines, ""]


def _paper_table(table: int, comparisons: Sequence[PaperComparison], show_device: bool,
                 protocol: Mapping[tuple[int, str, str, int], tuple[float, str]]) -> list[str]:
    published = [v for v in paper_values() if v.table == table]
    measured = {(c.metric, c.image_size) for c in comparisons}
    ratioed = {(c.metric, c.image_size) for c in comparisons if c.ratio is not None}  # else no ratio column
    groups = [g for g in dict.fromkeys((v.metric, v.image_size) for v in published) if g in measured]
    several_sizes = len({size for _, size in groups}) > 1
    paper_of = {(v.model, v.metric, v.image_size): v for v in published}
    headers = ["model"] + (["device"] if show_device else [])
    for metric, size in groups:
        name = METRIC_LABELS[metric] + (f" {size} px" if several_sizes else "")
        unit = next(v.unit for v in published if (v.metric, v.image_size) == (metric, size))
        headers += [f"{name}: paper ({unit})", f"{name}: ours ({MEASURED_UNITS[metric]})"]
        headers += [f"{name}: ours/paper"] if (metric, size) in ratioed else []
        if any(k[0] == table and (k[2], k[3]) == (metric, size) for k in protocol):
            headers += [f"{name}: ours, paper's protocol", f"{name}: paper's protocol / paper"]
    rows = []
    for model, device in dict.fromkeys((c.model, c.device_name) for c in comparisons):
        mine = [c for c in comparisons if (c.model, c.device_name) == (model, device)]
        row = [_md(model)] + ([_md(device)] if show_device else [])
        for metric, size in groups:
            paper = paper_of.get((model, metric, size))
            ours = next((c for c in mine if (c.metric, c.image_size) == (metric, size)), None)
            row += [MISSING if paper is None else f"{paper.value:,g}",
                    MISSING if ours is None else format_number(ours.measured_value, ours.unit)]
            if (metric, size) in ratioed:
                row += [MISSING if ours is None or ours.ratio is None else ratio_text(ours.ratio)]
            if any(k[0] == table and (k[2], k[3]) == (metric, size) for k in protocol):
                fitted = protocol.get((table, model, metric, size))
                row += [MISSING if fitted is None else format_number(fitted[0], MEASURED_UNITS[metric]),
                        MISSING if fitted is None or paper is None else ratio_text(fitted[0] / paper.value)]
        rows.append(row + [_md("; ".join(dict.fromkeys(c.note for c in mine)))])
    align = "l" * (1 + show_device) + "r" * (len(headers) - 1 - show_device) + "l"
    return _table(headers + ["notes"], align, rows)


def _incomparable_note(comparisons: Sequence[PaperComparison]) -> list[str]:
    """A line naming the devices whose values have no ratio to the paper's, and why; none if all have one."""
    apart = list(dict.fromkeys(c.device_name for c in comparisons if c.ratio is None))
    if not apart:
        return []
    return [f"No ours/paper for images/s timed on {_md(', '.join(apart))}: the paper timed a V100 "
            f"({PAPER_CARD}), and a ratio across machines says how fast the machine is, not the model.", ""]


def _paper_section(results: Sequence[Result],
                   protocol: Mapping[tuple[int, str, str, int], tuple[float, str]]) -> list[str]:
    comparisons = compare_with_paper(results)
    if not comparisons:
        return []
    show_device = len({c.device_name for c in comparisons}) > 1
    names = {table: name for (table, *_), (_, name) in protocol.items()}
    lines = ["## Compared with the paper", "",
             f"{PAPER}. Ratios are ours / paper. The paper's GPU \"GB\" is read as GiB; \"ours\" is what this "
             "run measured with its own settings (the CUDA caching allocator's peak, or a CPU estimate, said in "
             "the notes), which leaves out the CUDA context that nvidia-smi counts. Max batch sizes are compared "
             "only for a 16 GiB budget or the paper's V100-SXM2-16GB. Images/s are compared only when timed on the "
             "paper's GPU (a V100-SXM2): timed on another device they stand beside the paper's without a ratio, "
             "which would measure the machine rather than the model."
             + (" \"Paper's protocol\" is the same quantity under the protocol `wavemix-profile paper-fit` found "
                "to fit the table best, on the V100-SXM2-16GB (see \"What the paper's numbers match\")."
                if protocol else " Run `wavemix-profile paper-fit` to add each table's best-fitting protocol."), ""]
    for table in dict.fromkeys(c.table for c in comparisons):
        caption = TABLE_CAPTIONS.get(table, f"Table {table}")
        lines += [f"### {caption}", ""]
        if table in names:
            lines += [f"Paper's protocol: {names[table]}, on the V100-SXM2-16GB.", ""]
        mine = [c for c in comparisons if c.table == table]
        lines += [*_paper_table(table, mine, show_device, protocol), ""]
        lines += _incomparable_note(mine)
    return lines


def render_markdown(results: Sequence[Result], *, command: Optional[str] = None,
                    charts: Sequence[str] = (), banner: str = "", extra: Sequence[str] = (),
                    paper_protocol: Mapping[tuple[int, str, str, int], tuple[float, str]] = {}) -> str:
    """The whole report as Markdown. `charts` are paths relative to the report, embedded in order;
    pass only those that were written. A `banner` (the validation rehearsal's label) heads it in bold;
    `extra` lines (a section such as the paper-protocol fit) come before the charts; `paper_protocol`
    (render.paper_fit.protocol_values) adds the paper's protocol beside ours in the paper's tables."""
    results = list(results)
    lines = ["# wavemix-profile report", "", *([f"**{banner}**", ""] if banner else [])]
    if command:
        lines += ["Produced by:", "", "```", command, "```", ""]
    if not results:
        return "\n".join(lines + ["No results.", ""])
    lines += _environment(results)
    grids = comparison_grids(results)
    for grid in grids:
        lines += [f"## {_md(grid.title)}", "", *_grid_lines(grid), ""]
    lines += _legend(grids)
    lines += _paper_section(results, paper_protocol)
    lines += list(extra)
    if charts:
        lines += ["## Charts", ""]
        for path in charts:
            name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("_", " ")
            lines += [f"![{name}]({path})", ""]
    return "\n".join(lines)


def render_overhead_figures() -> str:
    """The figures of cuda_overheads.py as one Markdown table (docs/prediction.md's): each overhead once,
    where it applies, its size, what it rests on and its source."""
    from ..estimate.cuda_overheads import CONTEXT, GENERATIONS, LIBRARIES, MEASURED_OUTSIDE, STEP_KERNELS, cublas_workspace
    rows = [("outside the allocator, all of it", f"{gen}, CUDA {major}, {loading} loading", figure)
            for (gen, major, loading), figure in MEASURED_OUTSIDE.items()]
    rows += [("CUDA context", f"CUDA {major}, {loading} loading", figure) for (major, loading), figure in CONTEXT.items()]
    rows += [("kernels loaded during the step", f"{loading} loading", figure) for loading, figure in STEP_KERNELS.items()]
    rows += [("cuDNN and cuBLAS handles", "every row", LIBRARIES)]
    workspaces: dict[int, tuple] = {}  # one row per size, naming the generations that have it
    for gen in GENERATIONS:
        figure = cublas_workspace(max(gen.sm))
        workspaces.setdefault(figure.bytes, (figure, []))[1].append(gen.name)
    rows += [("cuBLAS workspace, each", ", ".join(names), figure) for figure, names in workspaces.values()]
    return "\n".join(_table(["overhead", "where", "MiB", "basis", "source"], "llrll",
                            [[what, where, f"{f.bytes / 2**20:.1f}", f.basis, _md(f.source)] for what, where, f in rows]))


def render_registry(rows: Sequence[dict], *, num_classes: int) -> str:
    """The `list --markdown` table: our parameter count beside Table 1's, and why they differ."""
    lines = _table(["model", "family", "paper params (M, Table 1)", "ours (params)", "ours / paper", "why they differ"],
                   ["l", "l", "r", "r", "r", "l"],
                   [[_md(r["name"]), r["family"],
                     "" if (p := r["paper"].get("params@32px (T1)")) is None else f"{p:g}",
                     f"{r['params']:,}", "" if p is None else f"{r['params'] / (p * 1e6):.3f}",
                     _md(r.get("note", ""))] for r in rows])
    return "\n".join([f"Parameters at {num_classes} classes, 32 px:", "", *lines])
