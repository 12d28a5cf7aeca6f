"""Put into .whl/ the wheels the offline GPU machine lacks, and check that they install there.

The GPU machine runs Python 3.12 on manylinux x86-64 with torch, torchvision, timm and the other
packages in GPU_IMAGE_HAS already installed, and reaches no package index. This script (`make
gpu-wheels`, run where pip reaches the index) fetches every other package the project needs at run
time and in its tests, pinned as constraints.txt pins it, or else at the version installed beside
this script (the one `make test` ran with). It builds them in a fresh folder and replaces .whl/ only
once two checks pass:

- closure: the Requires-Dist of the project's own wheel and of every carried wheel, read for
  CPython 3.12 on Linux x86-64, reach only carried wheels (whose versions must satisfy them) or
  packages the image has, and every carried wheel is reached;
- pip: `pip install --dry-run` for CPython 3.12 manylinux x86-64 with no index, from the folder alone,
  accepts the whole set.

The project's own wheel is built only for these checks: the GPU machine installs the project from the
working tree it is sent (`make gpu-install`), so a wheel built earlier can never run stale code there.
Run it with the project's venv Python: it needs pip and `packaging`.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = canonicalize_name("wavemix-profile")

# The GPU machine's image holds these, among what the project and its tests need: the project's own
# requirements that the image is built around, and what those require in turn. Their versions there
# are the image's (torch 2.11 in 2026-11), not constraints.txt's.
GPU_IMAGE_HAS = frozenset(canonicalize_name(n) for n in (
    "torch", "torchvision", "timm", "numpy", "matplotlib", "rich", "nvidia-ml-py", "einops",
    "pytest", "pytest-xdist", "pytest-timeout",
    "pyyaml",             # timm
    "tqdm",               # huggingface-hub, through timm
    "pillow",             # torchvision, matplotlib
    "typing-extensions",  # torch
    "six",                # python-dateutil, through matplotlib
))

# Everything else the project reaches, carried as wheels. Carried packages come first on the path,
# so they also stand in for the image's copies: setuptools is in the image, but pytorch-wavelets
# imports pkg_resources, which setuptools 81 removed; portalocker and tabulate are in today's image
# only by chance (nothing the image is built around needs them), and cost 170 KB.
CARRIED = tuple(canonicalize_name(n) for n in (
    "pytorch-wavelets", "pywavelets", "setuptools",
    "fvcore", "iopath", "yacs", "termcolor", "portalocker", "tabulate",
))
# Needed by the test extra but neither carried nor in the image, each with why: the tests that use it
# skip without it there.
LEFT_BEHIND = {
    canonicalize_name("ray"): "Ray, for `compare --ray`: its wheel and dependencies exceed what a device call "
                              "carries (64 MiB); tests/test_ray.py skips without it",
}
# Published only as source distributions: built here into pure-Python wheels.
SOURCE_ONLY = frozenset(canonicalize_name(n) for n in ("fvcore", "iopath"))

PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TARGET_FLAGS = ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", ""), "--abi", "abi3",
                "--abi", "none"] + [f for p in PLATFORMS for f in ("--platform", p)]
# Requirement markers as the GPU machine's Python evaluates them.
MARKER_ENV = {"python_version": PYTHON_VERSION, "python_full_version": f"{PYTHON_VERSION}.3", "os_name": "posix",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
# The extras the GPU machine uses: `test`, for `make test-gpu`.
EXTRAS = ("", "test")


def applies(req: Requirement, extras: Iterable[str] = ("",)) -> bool:
    """Whether `req` is needed on the GPU machine when the named extras are asked for."""
    return req.marker is None or any(req.marker.evaluate({**MARKER_ENV, "extra": e}) for e in extras)


Requires = Callable[[NormalizedName], "list[str] | None"]  # a package's Requires-Dist; None: not found


def walk(root: NormalizedName, requires: Requires) -> tuple[
        dict[NormalizedName, list[tuple[str, Requirement]]], list[str]]:
    """Follow requirements from `root` (with EXTRAS) through carried packages; stop at the image's.

    Returns, for each carried package reached, who required it and how; and one line for each
    requirement that is neither carried nor in the image, and for each carried package not found.
    """
    reached: dict[NormalizedName, list[tuple[str, Requirement]]] = {}
    missing: list[str] = []
    queue, seen = [root], {root}
    while queue:
        name = queue.pop()
        lines = requires(name)
        if lines is None:
            missing.append(f"{name} is carried but was not found, so neither are its requirements")
            continue
        for line in lines:
            req = Requirement(line)
            if not applies(req, EXTRAS if name == root else ("",)):
                continue
            dep = canonicalize_name(req.name)
            if dep in CARRIED:
                reached.setdefault(dep, []).append((name, req))
                if dep not in seen:
                    seen.add(dep)
                    queue.append(dep)
            elif dep not in GPU_IMAGE_HAS and dep not in LEFT_BEHIND:
                missing.append(f"{dep} (required by {name} as {req}): add it to CARRIED in {Path(__file__).name}"
                               " or, if the GPU image has it, to GPU_IMAGE_HAS")
    return reached, missing


def closure_problems(root: NormalizedName, requires: Requires,
                     versions: dict[NormalizedName, str] | None = None) -> list[str]:
    """What is wrong with CARRIED for `root`: needs nobody carries, stale entries, versions that don't fit."""
    reached, problems = walk(root, requires)
    problems += [f"{name} is carried but nothing requires it" for name in CARRIED if name not in reached]
    for name, version in (versions or {}).items():
        problems += [f"{name} {version} does not satisfy {req} (required by {who})"
                     for who, req in reached.get(name, []) if not req.specifier.contains(version, prereleases=True)]
    return problems


def pins() -> dict[NormalizedName, tuple[str, str]]:
    """Version and its source for each carried package: constraints.txt, else the one installed here."""
    pinned: dict[NormalizedName, tuple[str, str]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = (version.strip(), "constraints.txt")
    out = {}
    for name in CARRIED:
        if name in pinned:
            out[name] = pinned[name]
        else:
            out[name] = (importlib.metadata.version(name), "installed in " + sys.prefix)
    return out


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, cwd=ROOT)


def wheel_metadata(path: Path) -> tuple[NormalizedName, str, list[str]]:
    """Name, version and Requires-Dist lines of a wheel file."""
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(meta).decode())
    return canonicalize_name(msg["Name"]), msg["Version"], msg.get_all("Requires-Dist") or []


def fetch(dest: Path, versions: dict[NormalizedName, tuple[str, str]]) -> None:
    specs = {name: f"{name}=={version}" for name, (version, _) in versions.items()}
    pip("wheel", "-q", "--no-deps", "-w", str(dest), *(specs[n] for n in CARRIED if n in SOURCE_ONLY))
    pip("download", "-q", "--no-deps", "--only-binary=:all:", *TARGET_FLAGS, "-d", str(dest),
        *(specs[n] for n in CARRIED if n not in SOURCE_ONLY))


def check(dest: Path, project_wheel: Path) -> list[str]:
    """Both checks of the module docstring; returns the problems found, and prints what pip would install."""
    meta = {name: (version, reqs) for name, version, reqs in map(wheel_metadata, [project_wheel, *dest.glob("*.whl")])}
    problems = closure_problems(PROJECT, lambda name: meta[name][1] if name in meta else None,
                                {name: version for name, (version, _) in meta.items() if name != PROJECT})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = ["install", "--dry-run", "--ignore-installed", "--no-index", "--no-deps", "--only-binary=:all:",
               "--find-links", str(dest), "--find-links", str(project_wheel.parent), *TARGET_FLAGS,
               "--target", str(Path(tmp) / "site"), "--report", str(report), "-q",
               *(f"{name}=={version}" for name, (version, _) in sorted(meta.items()))]
        print("pip " + " ".join(cmd))
        result = subprocess.run([sys.executable, "-m", "pip", *cmd], cwd=ROOT)
        if result.returncode != 0:
            return problems + [f"pip's dry run for CPython {PYTHON_VERSION} failed (exit {result.returncode})"]
        installs = json.loads(report.read_text())["install"]
    print(f"pip would install, on CPython {PYTHON_VERSION} manylinux x86-64 with no index:")
    ours = {project_wheel.resolve(), *(w.resolve() for w in dest.glob("*.whl"))}
    for item in installs:
        source = Path(unquote(urlparse(item["download_info"]["url"]).path))
        print(f"  {item['metadata']['name']} {item['metadata']['version']}  ({source.name})")
        if source.resolve() not in ours:  # pip's configuration may add find-links of its own
            problems.append(f"pip took {item['metadata']['name']} from {source}, not from the new wheels")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl", help="wheel folder (default .whl)")
    args = parser.parse_args()
    start = time.monotonic()
    versions = pins()
    for name in CARRIED:
        print(f"{name}=={versions[name][0]}  ({versions[name][1]})")
    with tempfile.TemporaryDirectory() as tmp:
        fresh, own = Path(tmp) / "wheels", Path(tmp) / "project"
        fetch(fresh, versions)
        pip("wheel", "-q", "--no-deps", "-w", str(own), ".")
        problems = check(fresh, next(own.glob("*.whl")))
        if problems:
            print(f"{args.dest} left as it was:", *problems, sep="\n  ", file=sys.stderr)
            return 1
        shutil.rmtree(args.dest, ignore_errors=True)
        shutil.copytree(fresh, args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"{w.stat().st_size / 2**10:9.0f} KiB  {w.name}")
    print(f"{total / 2**20:9.2f} MiB  in {len(wheels)} wheels in {args.dest}/ "
          f"(a device call carries 64 MiB with the tree); {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
