"""Where `compare` measures: this process's one device, several devices of this node (--devices) or a
Ray cluster (--ray, --gpu-types). Each gives the requests' device, the default output folder, how a
request is checked, and the runner's executor."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from ..core.errors import BadInputError
from ..core.results import Settings


@dataclass
class Placement:
    device: str                                   # what every request asks for: cpu, cuda or cuda:N
    folder: str                                   # the default output folder's name under reports/
    executor: Optional[object] = None             # runner.Executor; None: one child at a time here
    validate: Callable[[Settings], object] = None
    expand: Callable[[list[Settings]], list[Settings]] = field(default=lambda requests: requests)


def _check_options(args) -> None:
    if args.devices and args.ray is not None:
        raise BadInputError("--devices and --ray both say where to measure; give one (Ray schedules GPUs itself)")
    if args.devices and args.device:
        raise BadInputError("--device and --devices both say where to measure; give one")
    if args.gpu_types and args.ray is None:
        raise BadInputError("--gpu-types picks Ray accelerator types; add --ray [ADDRESS]")
    if args.gpu_types and args.device not in (None, "cuda"):
        raise BadInputError(f"--gpu-types measures on GPUs; leave out --device {args.device}")


@contextlib.contextmanager
def placement(args) -> Iterator[Placement]:
    """The Placement `args` ask for; a Ray cluster started for the run is stopped on leaving."""
    from ..run.isolation import check_request
    from ..measure.measure import default_device, parse_device
    from .outputs import device_slug
    _check_options(args)

    def validate(settings: Settings) -> None:  # a python: model loads in a child, within --timeout
        check_request(settings, args.timeout)

    if args.ray is not None:
        from ..run.ray_runner import RayExecutor, for_gpu_types
        with RayExecutor(args.ray, timeout_s=args.timeout) as executor:
            device = args.device or ("cuda" if args.gpu_types or executor.resources().get("GPU") else "cpu")
            kinds = list(dict.fromkeys(args.gpu_types or []))

            def expand(requests: list[Settings]) -> list[Settings]:
                requests = for_gpu_types(requests, kinds) if kinds else requests
                executor.plan(requests)
                return requests
            yield Placement(device, device_slug("ray " + (" ".join(kinds) or device)), executor,
                            executor.validate, expand)
        return
    if args.devices:
        from ..run.devices import DevicePool, parse_devices
        slots = parse_devices(args.devices)
        device = slots[0].device
        if device == "cpu":  # CPU slots share the cores: lanes that time alone
            from ..run.runner import Lanes
            yield Placement(device, device_slug(_device_name(device)), Lanes(len(slots), timeout_s=args.timeout),
                            validate)
            return
        name = _device_name(slots[0].label)
        yield Placement(device, device_slug(name), DevicePool(slots, timeout_s=args.timeout), validate)
        return
    device = args.device or default_device()
    parse_device(device)
    yield Placement(device, device_slug(_device_name(device)), None, validate)


def _device_name(device: str) -> str:
    from ..measure.environment import collect_environment
    from ..measure.measure import parse_device
    return collect_environment(parse_device(device)).device_name
