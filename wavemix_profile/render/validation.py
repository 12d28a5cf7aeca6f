"""VALIDATION.md: what `wavemix-profile validate` found, each table with the command behind it.

Reads stored records only; never imports torch. Every ratio is a plain division of two stored
figures; every sentence that judges (a check failed, a CV above target, the paper contradicted) is
derived from the numbers in the same section.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..models import PAPER
from ..core.results import MaxBatchResult, Result
from ..validation.checks import CheckRecord
from .columns import MISSING, format_number
from .markdown import _md, _table
from .paper import GIB, METRIC_LABELS, MEASURED_UNITS, PaperComparison, compare_with_paper, device_of, ratio_text

LOWER_IS_BETTER = {"gpu_train_batch64", "params"}


@dataclass(frozen=True)
class ValidationData:
    """Everything the stages stored, and how to reproduce each stage (stage name -> command)."""

    device_name: str
    label: str                       # "" on a GPU; the rehearsal's label otherwise
    compare: Sequence[Result]
    whole_device: Sequence[Result]
    cpu_estimates: Sequence[Result]
    checks: Sequence[CheckRecord]
    repeats: Sequence[Result]
    left: dict[str, int]
    commands: dict[str, str]
    cv_target: float
    context_allowance_bytes: int
    notes: Sequence[str] = field(default_factory=tuple)


def _gib(n: Optional[int]) -> str:
    return MISSING if n is None else f"{n / GIB:.2f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return MISSING if a is None or not b else f"{a / b:.2f}"


def _fits(flag: Optional[bool], peak: Optional[int]) -> str:
    if flag is None:
        return MISSING
    return ("fits" if flag else "does not fit") + (f" ({peak / GIB:.2f} GiB)" if peak else "")


def _section(title: str, data: ValidationData, stage: str, intro: str = "") -> list[str]:
    label = f" ({data.label})" if data.label else ""
    lines = [f"## {title}{label}", "", f"Command: `{data.commands[stage]}`", ""]
    return lines + ([intro, ""] if intro else [])


def _checks(data: ValidationData) -> list[str]:
    lines = _section("Max batch checked directly", data, "max-batch-checks",
                     "The batch b the search found, probed again in a fresh process, then b + step in another: "
                     "b must fit and b + step must not.")
    rows = [[_md(c.model), str(c.image_size), c.mode, f"{c.budget_bytes / GIB:.1f}", f"{c.found:,}",
             _fits(c.fits_at_found, c.peak_at_found_bytes), _fits(c.fits_at_next, c.peak_at_next_bytes),
             "passed" if c.passed else _md(f"FAILED: {c.error or 'b + step fits too'}")] for c in data.checks]
    if not rows:
        return lines + ["Not run yet.", ""]
    table = _table(["model", "px", "mode", "budget (GiB)", "found b", "b", "b + step", "verdict"],
                   "lrlrrlll", rows)
    failed = sum(not c.passed for c in data.checks)
    return lines + table + ["", f"{len(rows) - failed} of {len(rows)} checks passed.", ""]


def _repeats(data: ValidationData) -> list[str]:
    lines = _section("Throughput repeatability", data, "repeatability",
                     f"Coefficient of variation of images/s over the timed blocks; target at most "
                     f"{data.cv_target:.0%}. Where a first try misses it, a second uses longer blocks after a "
                     "longer warm-up (GPU clocks ramp up and settle in the first seconds).")
    rows, verdicts = [], []
    for r in data.repeats:
        t, s = r.throughput, r.settings
        if t is None:
            rows.append([_md(r.model_name), str(s.warmup_steps), f"{s.timed_iterations} x {s.repeats}",
                         *[MISSING] * 4, _md(r.error or MISSING)])
            continue
        worst = max(cv for cv in (t.train_cv, t.infer_cv) if cv is not None)
        within = worst <= data.cv_target
        rows.append([_md(r.model_name), str(s.warmup_steps), f"{s.timed_iterations} x {s.repeats}",
                     format_number(t.train_images_per_s, "images/s"), f"{t.train_cv:.2%}",
                     format_number(t.infer_images_per_s, "images/s"),
                     f"{t.infer_cv:.2%}", "yes" if within else "no"])
        verdicts.append((r.model_name, within))
    if not rows:
        return lines + ["Not run yet.", ""]
    sentences = []
    for model in dict.fromkeys(m for m, _ in verdicts):
        tries = [w for m, w in verdicts if m == model]
        if not tries[0] and len(tries) > 1:
            sentences.append(f"{model}: the first try missed the target; the longer blocks "
                             + ("met it." if tries[-1] else "still miss it: treat its images/s as +- that CV."))
    return lines + _table(["model", "warm-up steps", "iterations x blocks", "train img/s", "train CV",
                           "infer img/s", "infer CV", f"within {data.cv_target:.0%}"], "lrrrrrrl", rows) + [
        "", *sentences, *([""] if sentences else [])]


def _by_key(results: Sequence[Result]) -> dict[tuple[str, int], Result]:
    return {(r.model_name, r.settings.image_size): r for r in results if r.ok}


def _estimates(data: ValidationData) -> list[str]:
    lines = _section("CPU estimate against the measured CUDA peak", data, "cpu-estimates",
                     "Training step and inference pass at batch 64. The estimate counts what tensors hold "
                     "(against `max_memory_allocated`); its replay through a model of the caching allocator "
                     "predicts `max_memory_reserved`. A ratio below 1 means the prediction is low.")
    measured = _by_key(data.compare)
    rows = []
    for r in data.cpu_estimates:
        got, est = measured.get((r.model_name, r.settings.image_size)), r.memory
        if not r.ok or est is None or got is None or got.memory is None:
            continue
        m = got.memory
        rows.append([_md(r.model_name), str(r.settings.image_size), _gib(est.peak_train_bytes),
                     _gib(m.peak_train_bytes), _ratio(est.peak_train_bytes, m.peak_train_bytes),
                     _gib(est.reserved_train_bytes), _gib(m.reserved_train_bytes),
                     _ratio(est.reserved_train_bytes, m.reserved_train_bytes),
                     _gib(est.peak_infer_bytes), _gib(m.peak_infer_bytes),
                     _ratio(est.peak_infer_bytes, m.peak_infer_bytes)])
    lines += (_table(["model", "px", "train est. (GiB)", "allocated", "est./alloc.", "reserved pred.", "reserved",
                      "pred./meas.", "infer est.", "infer alloc.", "est./alloc."], "lrrrrrrrrrr", rows)
              if rows else ["Not run yet."])
    lines += ["", "### Predicted against found max batch", ""]
    rows = []
    for r in data.cpu_estimates:
        for mode in ("train", "infer"):
            pred = _found(r, mode)
            source = measured if pred and _is_paper_budget(pred, data) else _by_key(data.whole_device)
            got = source.get((r.model_name, r.settings.image_size))
            found = _found(got, mode) if got else None
            if pred is None or found is None:
                continue
            rows.append([_md(r.model_name), str(r.settings.image_size), mode, f"{pred.budget_bytes / GIB:.1f}",
                         f"{pred.max_batch:,}", f"{found.max_batch:,}", _ratio(pred.max_batch, found.max_batch)])
    lines += (_table(["model", "px", "mode", "budget (GiB)", "predicted", "found", "predicted/found"], "lrlrrrr", rows)
              if rows else ["Not run yet."])
    return lines + [""]


def _is_paper_budget(found: MaxBatchResult, data: ValidationData) -> bool:
    return any(c.settings.memory_budget_bytes == found.budget_bytes for c in data.compare)


def _found(result: Optional[Result], mode: str) -> Optional[MaxBatchResult]:
    if result is None or not result.ok:
        return None
    return result.max_batch_train if mode == "train" else result.max_batch_infer


def _whole_device(data: ValidationData) -> list[str]:
    c = data.context_allowance_bytes
    lines = _section("Emulated 16 GiB against the whole device", data, "whole-device",
                     "Max batch grows with the memory left after fixed costs (weights, gradients and Adam state "
                     f"for training, weights for inference, about {c / GIB:.1f} GiB of CUDA context, kernels and "
                     "library handles, wavemix_profile/estimate/cuda_overheads.py): the "
                     "expected ratio is (device - context - fixed) / (16 GiB - context - fixed). A measured ratio "
                     "below it means larger batches cost more per image (bigger cuDNN workspaces, allocator "
                     "fragmentation); above it, less (per-batch temporaries amortised over more images).")
    emulated = _by_key(data.compare)
    rows = []
    for r in data.whole_device:
        small = emulated.get((r.model_name, r.settings.image_size))
        for mode in ("train", "infer"):
            whole, budget16 = _found(r, mode), _found(small, mode)
            if whole is None or budget16 is None or small.memory is None:
                continue
            m = small.memory
            fixed = (m.params_bytes or 0) + (((m.grads_bytes or 0) + (m.optimizer_state_bytes or 0))
                                             if mode == "train" else 0)
            expected = (whole.budget_bytes - c - fixed) / (budget16.budget_bytes - c - fixed)
            found = whole.max_batch / budget16.max_batch if budget16.max_batch else None
            verdict = MISSING if found is None else (
                "as expected" if abs(found / expected - 1) <= 0.1 else ("below" if found < expected else "above"))
            rows.append([_md(r.model_name), str(r.settings.image_size), mode, f"{budget16.max_batch:,}",
                         f"{whole.max_batch:,}", f"{whole.budget_bytes / GIB:.1f}",
                         MISSING if found is None else f"{found:.2f}", f"{expected:.2f}", verdict])
    return lines + (_table(["model", "px", "mode", "16 GiB", "whole device", "device (GiB)", "ratio", "expected",
                            "within 10%"], "lrlrrrrrl", rows) if rows else ["Not run yet."]) + [""]


def contradictions(comparisons: Sequence[PaperComparison]) -> list[str]:
    """A sentence for each WaveMix / other-model pair whose measured order is the paper's reversed."""
    out = []
    groups: dict[tuple[str, int, int], list[PaperComparison]] = {}
    for c in comparisons:
        if c.metric != "params":
            groups.setdefault((c.metric, c.image_size, c.table), []).append(c)
    for (metric, size, table), group in groups.items():
        sign = -1 if metric in LOWER_IS_BETTER else 1
        for a in (c for c in group if c.model.startswith("WaveMix")):
            for b in (c for c in group if not c.model.startswith("WaveMix")):
                paper, ours = sign * (a.paper_value - b.paper_value), sign * (a.measured_value - b.measured_value)
                if paper * ours < 0:
                    word = "better" if paper > 0 else "worse"
                    out.append(f"Table {table}, {METRIC_LABELS[metric]} at {size} px: the paper has {a.model} "
                               f"{word} than {b.model} ({a.paper_value:,g} vs {b.paper_value:,g}); measured, it is "
                               f"the other way round ({format_number(a.measured_value, a.unit)} vs "
                               f"{format_number(b.measured_value, b.unit)} {MEASURED_UNITS[metric]}).")
    return out


def _paper(data: ValidationData) -> list[str]:
    comparisons = compare_with_paper(data.compare)
    lines = _section("Paper against measured", data, "compare", f"{PAPER}. Ratios are measured / paper.")
    rows = [[str(c.table), _md(c.model), str(c.image_size), METRIC_LABELS[c.metric], f"{c.paper_value:,g}",
             f"{format_number(c.measured_value, c.unit)} {c.unit}", ratio_text(c.ratio) or MISSING]
            for c in comparisons]
    if not rows:
        return lines + ["Not run yet.", ""]
    found = contradictions(comparisons)
    return lines + _table(["table", "model", "px", "metric", "paper", "measured", "ratio"], "llrlrrr", rows) + [
        "", "### Where the measured order contradicts the paper", "",
        *([f"- {s}" for s in found] or ["Nowhere: every WaveMix-versus-other ordering the paper reports holds."]), ""]


def render_validation(data: ValidationData) -> str:
    lines = [f"# Validation on {_md(data.device_name)}", ""]
    if data.label:
        lines += [f"**{data.label}**: every figure below comes from the CPU rehearsal of the GPU validation; "
                  "none of it is a GPU measurement.", ""]
    lines += [*data.notes, *([""] if data.notes else [])]
    status = [[name, str(n), f"`{data.commands[name]}`"] for name, n in data.left.items()]
    lines += ["## Stages", "", *_table(["stage", "left", "command"], "lrl", status), "",
              "The comparison itself (every model's params, FLOPs, memory, max batch and images/s within the "
              "paper's 16 GiB) is in report.md and results.csv beside this file.", ""]
    for part in (_checks, _repeats, _estimates, _whole_device, _paper):
        lines += part(data)
    if data.compare and data.compare[0].environment:
        env = data.compare[0].environment
        lines += ["## Environment", "", f"{_md(device_of(data.compare[0]))}; torch {env.torch_version}, "
                  f"CUDA {env.cuda_version or MISSING}, driver {env.driver_version or MISSING}, "
                  f"Python {env.python_version}.", ""]
    return "\n".join(lines)
