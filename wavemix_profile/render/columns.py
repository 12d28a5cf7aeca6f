"""The comparison table's columns, shared by the terminal and Markdown renderers.

Each :class:`Column` reads one value off a :class:`Result`, says its unit in the header, which
direction is best, and how an estimated or predicted value is labelled. :func:`comparison_grids`
turns results into one :class:`Grid` per image size with the text of every cell, the best cells
marked and error rows kept, so each renderer only adds its own markup. Never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from ..core.gpus import budget_label
from ..measure.maxbatch import MAX_BATCH_LIMIT
from ..models import FAMILIES
from ..core.results import MaxBatchResult, Result
from .paper import GIB, device_of

MISSING = "–"


@dataclass(frozen=True)
class Label:
    """A mark appended to a value that is not a GPU measurement, explained once in a legend line."""

    mark: str
    legend: str


ESTIMATE = Label("~", "the tensors (allocated), estimated on the CPU (live tensor storage during the same "
                      "training step), not measured on a GPU")
UPPER = Label("≤", "the predicted band's upper end, what nvidia-smi would show on the target GPU: the caching "
                   "allocator's rounding and cache, cuBLAS workspaces, the CUDA context, lazily loaded kernels and "
                   "library handles added to the tensors (wavemix_profile/estimate/cuda_overheads.py)")
NEEDED = ("the least device memory the step runs in: its allocations replayed through the caching allocator's "
          "model under the budget (which releases its cache and tries again when a segment would not fit, as on "
          "a full GPU), with cuBLAS workspaces, plus the CUDA context, lazily loaded kernels and library handles "
          "(wavemix_profile/estimate/cuda_overheads.py)")
PREDICTED = Label(" (pred.)", "predicted from CPU memory estimates, not found by probing a GPU: the largest batch "
                              "whose step runs within the budget on the target GPU (" + NEEDED + ")")
_CAP = f"the search stopped at its limit of {MAX_BATCH_LIMIT:,} images and that still fitted: the true maximum may be larger"
CAPPED = Label(" (cap)", _CAP)
PREDICTED_CAPPED = Label(" (pred., cap)", f"{PREDICTED.legend}; {_CAP}")
# Images/s carry their spread, the coefficient of variation across the timed blocks ("±4%"). Above
# this a figure is marked: its blocks disagree too much for it to be ranked against its neighbours.
UNSTEADY_CV = 0.10
UNSTEADY = Label("?", f"spread above {UNSTEADY_CV:.0%}: the timed blocks disagree by more than that, so this "
                      "figure cannot be ranked against figures within its spread; rerun on an idle machine, with "
                      "longer blocks (--min-block-time) or more of them (--repeats)")
SPREAD_NOTE = ("±: the spread of images/s, the coefficient of variation (standard deviation / mean) across the "
               "timed blocks; the best figure is marked together with every figure whose range (value ± its spread) "
               "overlaps the best's range")


def format_number(value: float, unit: str) -> str:
    """Numbers as the tables print them: two decimals for M and GiB; counts (images) and rates of
    100 or more as whole numbers with thousands separators (1,048, never 1.05e+03)."""
    if unit in ("M", "GiB"):
        return f"{value:.2f}"
    if unit == "G":
        return f"{value:.3f}"
    if unit == "images":
        return f"{value:,.0f}"
    if unit in ("images/s", "images/J"):  # small CPU rates keep three significant digits
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if unit == "%":
        return f"{value:.1f}"
    if unit == "×":
        return f"{value:.2f}"
    return f"{value:g}"


def _batch_qualifier(result: Result) -> Optional[str]:
    return f"batch {result.memory.batch_size}" if result.memory else None


def _budget_qualifier(which: str) -> Callable[[Result], Optional[str]]:
    def qualifier(result: Result) -> Optional[str]:
        found = getattr(result, which)
        return f"{found.budget_bytes / GIB:.1f} GiB" if found else None
    return qualifier


def _max_batch(which: str) -> Callable[[Result], Optional[float]]:
    return lambda r: getattr(r, which).max_batch if getattr(r, which) else None


def max_batch_label(found: MaxBatchResult) -> Optional[Label]:
    """The mark of a max-batch answer: predicted on the CPU, capped by the search's limit, both or neither."""
    return {(True, True): PREDICTED_CAPPED, (True, False): PREDICTED,
            (False, True): CAPPED}.get((found.predicted, found.capped))


def _max_batch_label(which: str) -> Callable[[Result], Optional[Label]]:
    return lambda r: max_batch_label(getattr(r, which)) if getattr(r, which) else None


def _device_upper(result: Result) -> Optional[float]:
    device = result.memory.predicted_device_train_bytes if result.memory else None
    return None if device is None else device / GIB


def _rate(name: str) -> Callable[[Result], Optional[float]]:
    return lambda r: getattr(r.throughput, name) if r.throughput else None


def _spread(mode: str) -> Callable[[Result], Optional[float]]:
    return lambda r: getattr(r.throughput, f"{mode}_cv") if r.throughput else None


def _steadiness(mode: str) -> Callable[[Result], Optional[Label]]:
    def label(r: Result) -> Optional[Label]:
        cv = _spread(mode)(r)
        return UNSTEADY if cv is not None and cv > UNSTEADY_CV else None
    return label


def _percent(name: str) -> Callable[[Result], Optional[float]]:
    return lambda r: None if not r.throughput or getattr(r.throughput, name) is None else 100 * getattr(r.throughput, name)


MFU_NOTE = ("MFU: model FLOPs utilisation, the counted FLOPs per image times images/s over the GPU's dense "
            "datasheet peak for the precision timed; GPUs in wavemix_profile/core/gpus.py only")
ENERGY_SOURCES = {"nvml": "NVML total energy (whole GPU board)", "rapl": "RAPL (CPU packages)"}
ENERGY_NOTE = ("images/J: timed images per joule the device's energy counter recorded over the timed blocks "
               "(NVML board energy on NVIDIA GPUs, RAPL package energy on CPUs); the environment table says "
               "which, or why there is none")


@dataclass(frozen=True)
class Column:
    """One numeric column: `name` and `unit` make the header; `best` is "min" or "max".

    `qualifier` names a condition of the value (batch size, budget): when every row of a grid shares
    it, it goes in the header, otherwise beside each value.
    """

    key: str
    name: str
    unit: str
    best: str
    short: str                   # compact header with its unit, for the terminal
    value: Callable[[Result], Optional[float]]
    label: Callable[[Result], Optional[Label]] = lambda r: None
    qualifier: Callable[[Result], Optional[str]] = lambda r: None
    optional: bool = False       # shown only in a grid where some row has a value (GPU-only figures)
    note: str = ""               # what the column means, for the legend of a grid that shows it
    upper: Callable[[Result], Optional[float]] = lambda r: None   # a prediction's upper end, marked UPPER
    spread: Callable[[Result], Optional[float]] = lambda r: None  # coefficient of variation, shown "±N%"


COLUMNS: tuple[Column, ...] = (
    Column("params", "params", "M", "min", "params (M)", lambda r: None if r.params_total is None else r.params_total / 1e6),
    Column("macs", "forward MACs/image", "G", "min", "MACs/img (G)",
           lambda r: r.flops.forward_macs_per_image / 1e9 if r.flops else None),
    Column("memory", "peak train memory", "GiB", "min", "train mem (GiB)",
           lambda r: r.memory.peak_train_bytes / GIB if r.memory else None,
           label=lambda r: ESTIMATE if r.memory and r.memory.is_estimate else None,
           qualifier=_batch_qualifier, upper=_device_upper),
    Column("max_batch_train", "max train batch", "images", "max", "max train (img)", _max_batch("max_batch_train"),
           label=_max_batch_label("max_batch_train"), qualifier=_budget_qualifier("max_batch_train")),
    Column("max_batch_infer", "max infer batch", "images", "max", "max infer (img)", _max_batch("max_batch_infer"),
           label=_max_batch_label("max_batch_infer"), qualifier=_budget_qualifier("max_batch_infer")),
    Column("train_images_per_s", "train throughput", "images/s", "max", "train (img/s)", _rate("train_images_per_s"),
           label=_steadiness("train"), spread=_spread("train"), note=SPREAD_NOTE),
    Column("infer_images_per_s", "infer throughput", "images/s", "max", "infer (img/s)", _rate("infer_images_per_s"),
           label=_steadiness("infer"), spread=_spread("infer"), note=SPREAD_NOTE),
    Column("train_mfu", "train MFU", "%", "max", "train MFU (%)", _percent("train_mfu"), optional=True,
           note=MFU_NOTE),
    Column("infer_mfu", "infer MFU", "%", "max", "infer MFU (%)", _percent("infer_mfu"), optional=True,
           note=MFU_NOTE),
    Column("train_images_per_joule", "train energy efficiency", "images/J", "max", "train (img/J)",
           _rate("train_images_per_joule"), optional=True, note=ENERGY_NOTE),
    Column("infer_images_per_joule", "infer energy efficiency", "images/J", "max", "infer (img/J)",
           _rate("infer_images_per_joule"), optional=True, note=ENERGY_NOTE),
)


@dataclass(frozen=True)
class Cell:
    text: str                    # formatted value with its label mark; MISSING when absent
    value: Optional[float]
    label: Optional[Label] = None
    best: bool = False
    spread: Optional[float] = None   # coefficient of variation of the value, where it has one


@dataclass(frozen=True)
class Row:
    result: Result
    model: str
    family: str
    device: str
    cells: tuple[Cell, ...]      # one per numeric column; empty for an error row
    error: Optional[str] = None


@dataclass(frozen=True)
class Grid:
    """One image size: headers of the numeric columns, rows in family order, the labels used.

    `headers` carry the qualifier every row shares ("@ batch 64"); `short_headers` leave it to the title.
    """

    image_size: int
    title: str
    headers: tuple[str, ...]
    short_headers: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    labels: tuple[Label, ...]
    show_device: bool


@dataclass(frozen=True)
class Machine:
    """One device of one host; `label` is how tables, charts and --reference name it."""

    device_name: str
    host: Optional[str]
    label: str


def machine_of(r: Result) -> Optional[tuple[str, Optional[str]]]:
    """(device name, host) of the machine that measured a result; None for one that recorded none."""
    return (r.environment.device_name, r.environment.host) if r.environment else None


def machines(results: Sequence[Result]) -> list[Machine]:
    """Distinct (device name, host) in first-seen order; a name seen on several hosts gets its host
    in the label (an unknown host, from a record older than the field, as "host unknown")."""
    seen = list(dict.fromkeys(i for i in map(machine_of, results) if i))
    hosts: dict[str, int] = {}
    for name, _ in seen:
        hosts[name] = hosts.get(name, 0) + 1
    return [Machine(name, host, f"{name} ({host or 'host unknown'})" if hosts[name] > 1 else name)
            for name, host in seen]


def devices(results: Iterable[Result]) -> list[str]:
    """Distinct device names, in first-seen order; results without an environment are left out."""
    return list(dict.fromkeys(r.environment.device_name for r in results if r.environment))


def family_order(results: Sequence[Result]) -> list[Result]:
    """Results in the paper's family order (unknown families last), then in the order given, with the
    results of one model (several devices) kept together."""
    rank = {family: i for i, family in enumerate(FAMILIES)}
    first = {name: i for i, name in reversed(list(enumerate(r.model_name for r in results)))}
    return sorted(results, key=lambda r: (rank.get(r.family or "", len(FAMILIES)), first[r.model_name]))


def _joined(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values))


def step_label(results: Sequence[Result]) -> str:
    """The training step the results share, each part joined where they differ: "100 classes · adam · AMP
    fp16" (with ", gradients kept" where zero_grad kept them)."""
    classes = _joined(r.settings.num_classes for r in results)
    optimizer = _joined(r.settings.optimizer + (", gradients kept" if r.settings.keep_grads else "") for r in results)
    return f"{classes} classes · {optimizer} · AMP {_joined(r.settings.amp for r in results)}"


def grid_title(image_size: int, results: Sequence[Result]) -> str:
    """"32×32 px · DEVICE · batch 64, throughput batch 64 · 100 classes · adam · AMP fp16 · max batch within
    RTX 4090's 23.6 GiB (25.4 GB)"."""
    names = devices(results)
    device = names[0] if len(names) == 1 else "several devices" if names else "unknown device"
    batch = _joined(r.settings.batch_size for r in results)
    timed = _joined(r.throughput.batch_size for r in results if r.throughput)
    budget = _joined(budget_label(found.budget_bytes, r.settings.target_gpu) for r in results
                     for found in (r.max_batch_train, r.max_batch_infer) if found)
    return (f"{image_size}×{image_size} px · {device} · batch {batch}"
            + (f", throughput batch {timed}" if timed else "") + f" · {step_label(results)}"
            + (f" · max batch within {budget}" if budget else ""))


def _within_spread(value: float, spread: float, top: float, top_spread: float, best: str) -> bool:
    """Whether `value` cannot be told from the best, `top`: their ranges of one spread each overlap."""
    if best == "max":
        return value * (1 + spread) >= top * (1 - top_spread)
    return value * (1 - spread) <= top * (1 + top_spread)


def _best(column: Column, ok: Sequence[Result]) -> Callable[[Result], bool]:
    """Whether a result's value is the column's best: the extreme value, and with a spread every value
    whose range reaches the best's. Nothing is best in a column of fewer than two values."""
    valued = [r for r in ok if column.value(r) is not None]
    if len(valued) < 2:
        return lambda r: False
    pick = min if column.best == "min" else max
    top = pick(valued, key=column.value)
    top_value, top_spread = column.value(top), column.spread(top)
    if top_spread is None:
        return lambda r: column.value(r) == top_value
    return lambda r: column.value(r) is not None and _within_spread(
        column.value(r), column.spread(r) or 0.0, top_value, top_spread, column.best)


def _shared(values: Iterable) -> Optional[object]:
    """The one value every item shares, or None."""
    kinds = set(values)
    return kinds.pop() if len(kinds) == 1 else None


def _grid(image_size: int, results: Sequence[Result], show_device: bool,
          labels: Optional[dict] = None) -> Grid:
    ok = [r for r in results if r.ok]
    columns = tuple(c for c in COLUMNS if not c.optional or any(c.value(r) is not None for r in ok))
    headers, shorts, shared, common_labels = [], [], [], []
    for column in columns:
        valued = [r for r in ok if column.value(r) is not None]
        common = _shared(column.qualifier(r) for r in valued)
        # a label every value of the column carries is said once, in the header
        label = _shared(column.label(r) for r in valued) if len(valued) > 1 else None
        shared.append(common)
        common_labels.append(label)
        mark = label.mark if label else ""
        headers.append(f"{column.name}{f' @ {common}' if common else ''} ({column.unit}){mark}")
        shorts.append(column.short + mark)
    best = [_best(column, ok) for column in columns]
    rows, used = [], []
    for result in family_order(results):
        common = dict(model=result.model_name, family=result.family or "",
                      device=(labels or {}).get(machine_of(result)) or device_of(result))
        if not result.ok:
            rows.append(Row(result=result, cells=(), error=result.error, **common))
            continue
        cells = []
        for column, common_q, common_label, is_best in zip(columns, shared, common_labels, best):
            value = column.value(result)
            if value is None:
                cells.append(Cell(MISSING, None))
                continue
            label = column.label(result)
            own = column.qualifier(result)
            upper = column.upper(result)
            spread = column.spread(result)
            text = format_number(value, column.unit)
            text += "" if spread is None else f" ±{100 * spread:.0f}%"
            text += label.mark if label and label != common_label else ""
            text += "" if upper is None else f" {UPPER.mark}{format_number(upper, column.unit)}"
            text += f" @ {own}" if own and own != common_q else ""
            used += [mark for mark in (label, UPPER if upper is not None else None) if mark and mark not in used]
            cells.append(Cell(text, value, label, best=is_best(result), spread=spread))
        rows.append(Row(result=result, cells=tuple(cells), **common))
    return Grid(image_size=image_size, title=grid_title(image_size, results), headers=tuple(headers),
                short_headers=tuple(shorts),
                columns=columns, rows=tuple(rows), labels=tuple(used), show_device=show_device)


def comparison_grids(results: Sequence[Result]) -> list[Grid]:
    """One grid per image size, smallest first; a device column when the results span devices."""
    found = machines(results)
    labels = {(m.device_name, m.host): m.label for m in found}
    show_device = len(found) > 1
    sizes = sorted({r.settings.image_size for r in results})
    return [_grid(size, [r for r in results if r.settings.image_size == size], show_device, labels)
            for size in sizes]


def shown_columns(grids: Sequence[Grid]) -> tuple[Column, ...]:
    """The columns any of the grids shows, in table order."""
    shown = {c.key for grid in grids for c in grid.columns}
    return tuple(c for c in COLUMNS if c.key in shown)


def best_legend(columns: Sequence[Column] = COLUMNS) -> str:
    """Which direction is best, per column: the sentence after a renderer's own highlight word."""
    lowest = [c.name for c in columns if c.best == "min"]
    highest = [c.name for c in columns if c.best == "max"]
    return f"best in its column: lowest {', '.join(lowest)}; highest {', '.join(highest)}"


def column_notes(columns: Sequence[Column]) -> list[str]:
    """What the shown columns that need explaining mean, once each."""
    return list(dict.fromkeys(c.note for c in columns if c.note))
