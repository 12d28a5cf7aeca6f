"""One max-batch probe in a fresh process: does `batch` fit the request's budget?

`python -m wavemix_profile.validation.probe SETTINGS_JSON MODE BATCH RESULT_PATH` writes
{"fits": bool, "peak_bytes": int | null} to RESULT_PATH (a file only this child is told of, so
nothing the model prints can be taken for the answer). The probe is the search's own: on CUDA two
training steps or one inference pass under the emulated budget (probes.cuda_probe); on the CPU the
estimate's allocations replayed under the target GPU's limit (probes.DeviceFit).
"""
from __future__ import annotations

import json
import sys


def probe_once(settings, mode: str, batch: int) -> tuple[bool, int | None]:
    from ..measure.measure import validate
    from ..measure.memory import CpuEstimator
    from ..measure.probes import cuda_probe, device_fit, emulate_budget
    from ..sources.training import StepConfig, TrainStep

    source = validate(settings)
    config = StepConfig.of(settings)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    if config.device.type == "cuda":
        if settings.memory_budget_bytes is not None:
            emulate_budget(config.device, settings.memory_budget_bytes)
        outcome = cuda_probe(TrainStep(build(), config), mode, batch=batch, image_size=settings.image_size)
        return outcome.fits, outcome.peak_bytes
    step = CpuEstimator(build, config).estimate(mode, batch=batch, image_size=settings.image_size,
                                                warmup_steps=settings.warmup_steps)
    return device_fit(settings, mode).fits(step), step.allocated_bytes


def main(argv: list[str]) -> int:
    from ..core.results import settings_from_dict
    settings_json, mode, batch, result_path = argv
    fits, peak = probe_once(settings_from_dict(json.loads(settings_json)), mode, int(batch))
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump({"fits": fits, "peak_bytes": peak}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
