"""The wheels `make gpu-wheels` carries to the offline GPU machine are what the project needs there.

scripts/gpu_wheels.py names what the GPU image has and what is carried. This walks the project's
requirements, with the `test` extra, through the metadata of the packages installed here, read as the
GPU machine's Python 3.12 reads it: a new dependency that neither list names, or a carried package
that nothing needs any more, fails here, with no network, rather than on a rare GPU lease.
`make gpu-wheels` runs the same walk over the wheels themselves.
"""
import importlib.metadata
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "gpu_wheels", Path(__file__).resolve().parent.parent / "scripts" / "gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_wheels)


def installed_requires(name):
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return None


def test_carried_wheels_are_exactly_what_the_project_needs_beyond_the_gpu_image():
    assert gpu_wheels.closure_problems(gpu_wheels.PROJECT, installed_requires) == []


def test_the_walk_reports_a_requirement_nobody_provides_and_a_carried_one_nobody_needs():
    requires = {"wavemix-profile": ["fvcore", "scipy>=1", "PyWavelets; python_version < '3.12'"],
                "fvcore": ["numpy", "termcolor>=1.1"]}
    problems = gpu_wheels.closure_problems(gpu_wheels.PROJECT, lambda name: requires.get(name, []),
                                           {"termcolor": "1.0"})
    assert problems[0].startswith("scipy (required by wavemix-profile as scipy>=1)")
    assert "pywavelets is carried but nothing requires it" in problems  # its marker is false on 3.12
    assert "termcolor 1.0 does not satisfy termcolor>=1.1 (required by fvcore)" in problems
