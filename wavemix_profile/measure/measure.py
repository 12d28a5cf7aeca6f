"""Measure one model at one image size: params, FLOPs, peak memory, max batch, throughput.

This runs in the current process; `isolation.run_isolated` runs it in a fresh child process per
model, which is what the CLI does. `validate` checks a request before anything runs or is stored
(`isolation.check_request` without running a user's model file in this process).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import re
import time
from typing import Callable

import torch

from .environment import collect_environment
from ..core.errors import BadInputError
from ..core.protocol import Event, Probe, Stage, Timing
from ..core.results import INFERENCE_MODES, MEASUREMENTS, FlopsResult, Result, Settings
from ..sources.sources import ModelSource, display_name, resolve_source
from ..sources.training import StepConfig, TrainStep, check_amp, check_logits, optimizer_recipe

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def parse_device(text: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N'; CUDA must be present."""
    if not _DEVICE.match(text or ""):
        raise BadInputError(f"unknown device {text!r}; accepted: cpu, cuda, cuda:N")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"device {text!r} asked for, but CUDA is not available "
                                f"(torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BadInputError(f"device {text!r} does not exist; this machine has "
                                f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def validate(settings: Settings, source: ModelSource | None = None) -> ModelSource:
    """Raise BadInputError (or the registry's errors) for a request that cannot run, building its
    source in this process (a python: model's file runs here). `source`: a model given in this
    process (sources.local_source) rather than by the spec in settings.model."""
    _check_settings(settings)
    return _check_model(settings, source or resolve_source(settings.model))


def _check_settings(settings: Settings) -> None:
    if not isinstance(settings.batch_size, int) or settings.batch_size < 1:
        raise BadInputError(f"batch size must be an integer >= 1, got {settings.batch_size!r}")
    if settings.inference not in (None, *INFERENCE_MODES):
        raise BadInputError(f"unknown inference mode {settings.inference!r}; accepted: {', '.join(INFERENCE_MODES)}")
    if settings.throughput_batch_size is not None and settings.throughput_batch_size < 1:
        raise BadInputError(f"throughput batch size must be >= 1, got {settings.throughput_batch_size!r}")
    if not isinstance(settings.image_size, int) or settings.image_size < 1:
        raise BadInputError(f"image size must be a positive integer (pixels), got {settings.image_size!r}")
    if settings.num_classes < 1:
        raise BadInputError(f"num_classes must be >= 1, got {settings.num_classes!r}")
    if settings.threads is not None and (not isinstance(settings.threads, int) or settings.threads < 1):
        raise BadInputError(f"--threads must be an integer >= 1, got {settings.threads!r}")
    if settings.min_block_s is not None and not 0 < settings.min_block_s < float("inf"):
        raise BadInputError(f"minimum timed block must be a finite number of seconds > 0, got {settings.min_block_s!r}")
    if min(settings.warmup_steps, settings.timed_iterations - 1, settings.repeats - 1) < 0:
        raise BadInputError(f"timing needs --warmup >= 0, --iterations >= 1 and --repeats >= 1, got "
                            f"{settings.warmup_steps}, {settings.timed_iterations} and {settings.repeats}")
    bad_modes = sorted(set(settings.max_batch_modes) - {"train", "infer"})
    if bad_modes:
        raise BadInputError(f"unknown max-batch mode {bad_modes[0]!r}; accepted: train, infer, both")
    from .maxbatch import MAX_BATCH_LIMIT
    if not 1 <= settings.multiple_of <= MAX_BATCH_LIMIT:
        raise BadInputError(f"--multiple-of must be between 1 and {MAX_BATCH_LIMIT:,} (the largest batch the "
                            f"search tries), got {settings.multiple_of!r}")
    unknown = sorted(set(settings.skip) - set(MEASUREMENTS))
    if unknown:
        raise BadInputError(f"unknown measurement to skip {', '.join(unknown)}; accepted: {', '.join(MEASUREMENTS)}")
    check_amp(settings.amp)
    optimizer_recipe(settings.optimizer)
    if settings.target_cuda is not None and not re.fullmatch(r"\d+(\.\d+)*", settings.target_cuda):
        raise BadInputError(f"bad target CUDA version {settings.target_cuda!r}; give one as torch.version.cuda "
                            "prints it, e.g. 12.4")
    device = parse_device(settings.device)
    if settings.target_gpu is not None:
        from ..estimate.cuda_overheads import find_generation
        if device.type == "cuda":
            raise BadInputError(f"--target-gpu names the GPU a CPU prediction is for; on {settings.device} the "
                                "device itself is measured: leave it out, or use --device cpu")
        if find_generation(settings.target_gpu) is None:
            raise BadInputError(f"unknown target GPU {settings.target_gpu!r}; accepted: a card of `wavemix-profile "
                                "gpus` ('RTX 4090', V100-SXM2-16GB, 'NVIDIA H100 80GB HBM3'), a generation (volta, "
                                "turing, ampere, ada, hopper, blackwell) or a compute capability (sm86, 8.6)")
    if settings.memory_budget_bytes is not None:
        from .maxbatch import format_bytes
        from .probes import target_overheads
        overheads = target_overheads(settings)
        if settings.memory_budget_bytes <= overheads.row.fixed_bytes("train"):
            raise BadInputError(f"memory budget {format_bytes(settings.memory_budget_bytes)} leaves nothing for "
                                f"tensors: a GPU's CUDA context, libraries and cuBLAS workspaces take about "
                                f"{format_bytes(overheads.row.fixed_bytes('train'))} on {overheads.describe()}; "
                                "give a budget above that, e.g. 16GiB")
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            if settings.memory_budget_bytes > total:
                raise BadInputError(f"memory budget {settings.memory_budget_bytes / 2**30:.1f} GiB is larger "
                                    f"than {settings.device} ({total / 2**30:.1f} GiB)")


def _check_model(settings: Settings, source: ModelSource) -> ModelSource:
    if source.family is not None:  # zoo models say which sizes they take before building
        from ..models import get_entry
        get_entry(source.spec).sizes.validate(source.display_name, settings.image_size)
    return source


def probe(settings: Settings, mode: str, batch: int) -> Probe:
    """Does `batch` fit for `mode` ("train" or "infer") within the request's budget? The search's own
    probe, of a model built afresh: on CUDA two training steps or one inference pass under the emulated
    budget (probes.cuda_probe); on the CPU the estimate's allocations replayed under the target GPU's
    limit (probes.device_fit), its tensors as peak_bytes. `validate` rechecks a found max batch with it."""
    from .memory import CpuEstimator
    from .probes import cuda_probe, device_fit, emulate_budget
    source = validate(settings)
    config = StepConfig.of(settings)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    if config.device.type == "cuda":
        if settings.memory_budget_bytes is not None:
            emulate_budget(config.device, settings.memory_budget_bytes)
        outcome = cuda_probe(TrainStep(build(), config), mode, batch=batch, image_size=settings.image_size)
        return Probe(mode, batch, outcome.fits, outcome.peak_bytes)
    step = CpuEstimator(build, config).estimate(mode, batch=batch, image_size=settings.image_size,
                                                warmup_steps=settings.warmup_steps)
    return Probe(mode, batch, device_fit(settings, mode).fits(step), step.allocated_bytes)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def measure(settings: Settings, *, on_event: Callable[[Event], None] | None = None,
            source: ModelSource | None = None, untimed_threads: int | None = None) -> Result:
    """Every measurement not in settings.skip, in this process; `on_event` hears each Stage as it
    begins, each max-batch Probe as it lands, and Timing around the timed blocks. A model that cannot
    be built or gives the wrong output raises; a later stage's failure is the result's error
    ("STAGE: cause; ..."), the other stages' figures kept. `untimed_threads` caps the threads of the
    stages that time nothing (a share of the cores while other measurements run beside this one);
    the timed blocks use settings.threads, or all."""
    source = validate(settings, source)
    device = parse_device(settings.device)
    if settings.threads:  # before any work, so every stage and the timed blocks use them
        torch.set_num_threads(settings.threads)
    timed_threads = torch.get_num_threads()
    if untimed_threads:
        torch.set_num_threads(min(untimed_threads, timed_threads))
    began = time.perf_counter()
    on_event = on_event or (lambda event: None)

    def stage(name: str) -> None:
        on_event(Stage(name))

    config = StepConfig.of(settings)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    # On the CPU one fake model serves the memory estimate and every max-batch probe.
    made: dict = {}

    def estimator():
        if device.type != "cpu":
            return None
        if "estimator" not in made:
            from .memory import CpuEstimator
            made["estimator"] = CpuEstimator(build, config)
        return made["estimator"]

    fields: dict = {}
    stage("params")
    model = build()
    fields["params_total"] = sum(p.numel() for p in model.parameters())
    fields["params_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():  # a wrong output shape fails here, whatever the other stages skip
        check_logits(model.eval()(torch.randn(2, 3, settings.image_size, settings.image_size)), 2,
                     settings.num_classes)
    failures: list[str] = []

    def attempt(name: str, run: Callable[[], None]) -> None:
        """One stage: a failure is recorded with its stage and the next stages still run, so what
        the other stages measured is kept (a partial record, marked failed)."""
        stage(name)
        try:
            run()
        except (Exception, SystemExit) as exc:  # the model's failure, not ours: keep the rest
            failures.append(f"{name}: {describe_failure(exc)}")

    if "flops" not in settings.skip:
        def flops(built=model) -> None:
            from .flops import count_flops
            # ours on fake tensors (the same count without the arithmetic), fvcore's on real ones
            count = count_flops(built, torch.randn(2, 3, settings.image_size, settings.image_size), on_fakes=True)
            fields["flops"] = FlopsResult(**{f: getattr(count, f) for f in FlopsResult.__dataclass_fields__})
        attempt("flops", flops)
        del flops
    del model

    if "memory" not in settings.skip:
        attempt("memory", lambda: fields.update(memory=_memory(build, config, settings, estimator())))

    if "max-batch" not in settings.skip:
        from .probes import search_max_batch
        for mode in ("train", "infer"):
            if mode not in settings.max_batch_modes:
                stage(f"max-batch ({mode})")
                continue

            def search(mode: str = mode) -> None:
                fields[f"max_batch_{mode}"] = search_max_batch(
                    build, config, settings, mode=mode, estimator=estimator(),
                    on_probe=lambda p: on_event(Probe(mode, p.batch, p.fits, p.peak_bytes)))
            attempt(f"max-batch ({mode})", search)

    torch.set_num_threads(timed_threads)
    environment = collect_environment(device)
    if "throughput" not in settings.skip:
        attempt("throughput", lambda: fields.update(throughput=_throughput(
            build, config, settings, fields.get("flops"), device_name=environment.device_name, on_event=on_event)))

    return Result(settings=settings, model_name=source.display_name, family=source.family,
                  environment=environment, wall_s=time.perf_counter() - began,
                  created_at=_now(), error="; ".join(failures)[:1000] or None, **_provenance(), **fields)


def _provenance() -> dict:
    from ..core.version import __version__
    from .environment import source_commit
    return {"tool_version": __version__, "git_commit": source_commit()}


def describe_failure(exc: BaseException) -> str:
    """One line for a model's exception, or for its code calling sys.exit (which must not end a run)."""
    if isinstance(exc, SystemExit):
        return f"model code called sys.exit({exc.code!r}) during the measurement"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:500]


def error_result(settings: Settings, error: str, wall_s: float = 0.0) -> Result:
    """A failed measurement, stored like any other so the run goes on and the table shows why."""
    try:
        name, family = display_name(settings.model)
    except Exception:  # the spec itself is what failed
        name, family = settings.model, None
    return Result(settings=settings, model_name=name, family=family, environment=None,
                  error=error, wall_s=wall_s, created_at=_now(), **_provenance())


def _memory(build, config: StepConfig, settings: Settings, estimator=None):
    from .memory import cpu_memory_result, cuda_memory_result, release_cuda_memory
    if config.device.type == "cuda":
        step = TrainStep(build(), config)
        try:
            return cuda_memory_result(step, batch=settings.batch_size, image_size=settings.image_size,
                                      warmup_steps=settings.warmup_steps)
        finally:
            del step
            release_cuda_memory()
    from ..estimate.cuda_overheads import with_device_band
    from .memory import CpuEstimator
    from .probes import target_overheads
    return with_device_band(cpu_memory_result(estimator or CpuEstimator(build, config), batch=settings.batch_size,
                                              image_size=settings.image_size), target_overheads(settings))


def _throughput(build, config: StepConfig, settings: Settings, flops: FlopsResult | None, *, device_name: str,
                on_event: Callable[[Event], None] = lambda event: None):
    """Images/s, MFU (the peak looked up by `device_name`, the environment's name for the device:
    an unknown device, every CPU among them, gets none) and energy (energy.open_energy_meter).
    Timing events bracket the warm-up and the timed blocks (not the model's build), so a
    run that stops its other children while this one times (time_alone.TimeAlone) stops them no
    longer than it must."""
    from .energy import open_energy_meter
    from ..core.gpus import peak_flops_per_s
    from .throughput import TimingSettings, measure_throughput
    from ..sources.training import timed_precision
    timing = TimingSettings(batch_size=settings.throughput_batch_size or settings.batch_size,
                            warmup=settings.warmup_steps, iterations=settings.timed_iterations,
                            repeats=settings.repeats, min_block_s=settings.min_block_s)
    peak = peak_flops_per_s(device_name, timed_precision(config.amp, config.device))
    per_image = (flops.train_step_flops_per_image, flops.forward_flops_per_image) if flops else None

    @contextlib.contextmanager
    def alone():
        on_event(Timing(begins=True))
        try:
            yield
        finally:
            on_event(Timing(begins=False))

    return measure_throughput(TrainStep(build(), config), timing, image_size=settings.image_size,
                              peak_flops_per_s=peak, flops_per_image=per_image,
                              energy=open_energy_meter(config.device), alone=alone)
