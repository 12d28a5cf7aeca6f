"""`wavemix-profile validate`: every CUDA path checked on a real GPU, into committed reference reports.

Writes reports/<device-slug>/ (report.md, results.csv, results.jsonl, the charts) and
VALIDATION.md beside them, staged and resumable: run it again and it continues where it stopped.
`--rehearse` runs the same pipeline on the CPU with two small models, every figure labelled.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..core.errors import BadInputError
from ..validation.plan import REHEARSAL_DEVICE_BYTES, REHEARSAL_LABEL, REHEARSAL_SLUG, STAGE_NAMES, STAGES, Plan


def _stage_command(plan: Plan, stage: str) -> str:
    """How to rerun a stage from the project root, naming no path of this machine: --out is left out
    for the default folder, and given relative to the working folder (or by its name) otherwise."""
    out = ""
    if plan.out != _default_out(plan):
        try:
            out = f" --out {plan.out.resolve().relative_to(Path.cwd())}"
        except ValueError:
            out = f" --out {plan.out.name}"
    return f"wavemix-profile validate{' --rehearse' if plan.rehearse else ''} --stage {stage}{out}"


def _default_out(plan: Plan) -> Path:
    return Path("reports") / plan.slug


def _plan(args) -> Plan:
    """The validation asked for; a rehearsal's plan (and so `--rehearse --list`) imports no torch."""
    from .outputs import device_slug
    if args.rehearse:
        device, device_bytes, name = "cpu", REHEARSAL_DEVICE_BYTES, REHEARSAL_SLUG
    else:
        import torch

        from ..measure.measure import parse_device
        device = args.device or "cuda"
        if not torch.cuda.is_available():
            raise BadInputError("validate needs a CUDA device and none is available; "
                                "run `wavemix-profile validate --rehearse` to rehearse it on the CPU")
        parsed = parse_device(device)
        device_bytes = torch.cuda.get_device_properties(parsed).total_memory
        name = device_slug(torch.cuda.get_device_name(parsed))
    out = Path(args.out) if args.out else Path("reports") / name
    return Plan(device=device, device_bytes=device_bytes, out=out, slug=name, rehearse=args.rehearse)


def run_validate(args) -> int:
    from ..render.terminal import make_console
    from ..validation.run import left, plan_lines, run_stage
    from .outputs import check_output_folder

    plan = _plan(args)
    stages = tuple(s for s in STAGES if s.name in (args.stage or STAGE_NAMES))
    console = make_console()
    if args.list:
        for line in plan_lines(plan, stages):
            console.print(line, highlight=False)
        return 0
    check_output_folder(plan.out)
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    stopped = False
    for stage in stages:
        todo = len(left(plan, stage))
        console.print(f"stage {plan_lines(plan, (stage,))[0]}", highlight=False)
        if todo and not run_stage(plan, stage, deadline=deadline, say=lambda s: console.print(s, highlight=False)):
            stopped = True
            break
    written = write_validation(plan)
    console.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False)
    remaining = [line for line in plan_lines(plan, stages) if " 0 left" not in line]
    if remaining:
        console.print(("stopped at the time limit; " if stopped else "") + "left, rerun to continue:",
                      highlight=False)
        for line in remaining:
            console.print(f"  {line}", highlight=False)
    else:
        console.print("validation complete", highlight=False)
    return 0


def write_validation(plan: Plan) -> list[Path]:
    """The comparison's report files (from the compare stage) and VALIDATION.md, from what is stored."""
    from ..store.atomic import write_text
    from ..estimate.cuda_overheads import overheads_for
    from ..render.validation import ValidationData, render_validation
    from ..store.store import Store
    from ..validation.checks import read_checks
    from ..validation.plan import CV_TARGET
    from ..validation.run import left
    from .outputs import latest_per_key, write_outputs

    commands = {s.name: _stage_command(plan, s.name) for s in STAGES}
    compare = latest_per_key(Store(plan.store("compare")).read())
    written = []
    if compare:
        written = write_outputs(compare, plan.out, command=commands["compare"].replace(" --stage compare", ""),
                                banner=REHEARSAL_LABEL if plan.rehearse else "")
    device = next((r.environment.device_name for r in compare if r.environment), plan.device)
    cuda = next((r.environment.cuda_version for r in compare if r.environment), None)
    data = ValidationData(
        device_name=device, label=REHEARSAL_LABEL if plan.rehearse else "", compare=compare,
        whole_device=latest_per_key(Store(plan.store("whole-device")).read()),
        cpu_estimates=latest_per_key(Store(plan.store("cpu-estimates")).read()),
        checks=read_checks(plan.store("max-batch-checks")),
        repeats=latest_per_key(Store(plan.store("repeatability")).read()),
        left={s.name: len(left(plan, s)) for s in STAGES}, commands=commands, cv_target=CV_TARGET,
        context_allowance_bytes=overheads_for(device, cuda_version=cuda).row.outside_allocator_bytes)
    path = plan.out / "VALIDATION.md"
    write_text(path, render_validation(data))
    return [*written, path]
