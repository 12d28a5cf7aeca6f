"""wavemix-profile: what an image-classification network costs to train and run.

Bad input ends with one line on stderr naming what was wrong and what is accepted, exit code 2.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading

from .core.version import __version__
from .models import PAPER_NUM_CLASSES
from .core.results import CPU_QUICK_TIMING, DEFAULT_OPTIMIZER, INFERENCE_MODES, OPTIMIZER_NAMES, Settings

RAW = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's multi-line usage dump becomes one line
        raise UsageError(f"{self.prog}: {message}")


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= minimum, errors naming `what`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} {text!r} must be >= {minimum}")
        return value
    return parse


def _at_least_one(what: str):
    return _int_at_least(1, what)


def _at_least_zero(what: str):
    return _int_at_least(0, what)


_positive_int = _at_least_one("value")
_image_size = _at_least_one("image size")


def _folder(text: str) -> str:
    """An output folder: anything but an existing file."""
    import os
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    return text


def _seconds(text: str) -> float:
    """A time limit in seconds >= 0; 0 means none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0 (0: no limit)")
    return value


def _add_timeout(p: argparse.ArgumentParser) -> None:
    from .run.isolation import DEFAULT_TIMEOUT_S
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"time limit of one measurement (one model at one size); past it the measuring process "
                        f"is killed and the row says so (default {DEFAULT_TIMEOUT_S:g}; 0: no limit)")


def _add_script_options(p: argparse.ArgumentParser) -> None:
    """--json and --quiet: what a script reads on stdout, and how much a person sees on stderr."""
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (the records the store keeps); tables and progress "
                        "go to stderr")
    p.add_argument("--quiet", action="store_true", help="no progress and no tables; errors only (and --json's output)")


def _add_timing_options(p: argparse.ArgumentParser) -> None:
    """How images/s are timed; the CPU's quick preset (results.CPU_QUICK_TIMING) unless --full or set here."""
    quick = CPU_QUICK_TIMING
    p.add_argument("--warmup", type=_at_least_zero("--warmup"), default=None, metavar="N",
                   help=f"untimed steps before timing (default {Settings.warmup_steps}; "
                        f"{quick['warmup_steps']} on CPU without --full)")
    p.add_argument("--iterations", type=_at_least_one("--iterations"), default=None, metavar="N",
                   help=f"steps per timed block, the fewest when blocks have a minimum time (default "
                        f"{Settings.timed_iterations}; {quick['timed_iterations']} on CPU without --full)")
    p.add_argument("--repeats", type=_at_least_one("--repeats"), default=None, metavar="N",
                   help=f"timed blocks; images/s is their median and ± their spread (default {Settings.repeats}; "
                        f"{quick['repeats']} on CPU without --full)")
    p.add_argument("--min-block-time", type=_seconds, default=None, metavar="SECONDS",
                   help=f"each timed block runs as many steps as last this long (default: none; "
                        f"{quick['min_block_s']:g} on CPU without --full; 0: exactly --iterations steps)")


def _add_accuracy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accuracy", default=None, metavar="FILE.csv",
                   help="top-1 accuracies to chart against cost beside the paper's: CSV columns model, dataset, "
                        "top1 (percent), optionally image_size (px; default the paper's for its datasets)")


def _add_measure_options(p: argparse.ArgumentParser, *, single_size: bool, max_batch: bool = True,
                         default_sizes: tuple[int, ...] = (32, 64)) -> None:
    """The options of a measurement; `max_batch` False leaves out those only the max-batch search reads."""
    if single_size:
        p.add_argument("--image-size", type=_image_size, default=32, help="square input size in pixels (default 32)")
    else:
        p.add_argument("--image-sizes", type=_image_size, nargs="+", default=list(default_sizes),
                       help=f"square input sizes in pixels (default: {' '.join(map(str, default_sizes))}"
                            + (", as the paper)" if default_sizes == (32, 64) else ")"))
    p.add_argument("--batch-size", type=_positive_int, default=64,
                   help="batch for peak memory (and throughput on CUDA); default 64, as the paper")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=_at_least_one("--threads"), default=None, metavar="N",
                   help="CPU threads of the measuring process (torch.set_num_threads; default: torch's, one per core)")
    p.add_argument("--amp", default="fp16", choices=("fp16", "bf16", "off"),
                   help="autocast precision of the training step (default fp16 with GradScaler, as the paper)")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZER_NAMES,
                   help="optimizer of the training step: adam (default, the paper's) and adamw keep 8 bytes of "
                        "state per fp32 parameter, sgd-momentum (torchvision's and timm's recipes) 4, sgd 0; none "
                        "runs forward and backward only")
    p.add_argument("--keep-grads", action="store_true",
                   help="zero gradients in place between steps (zero_grad(set_to_none=False), torch's default "
                        "before 2.0) instead of releasing them: they are held through the forward pass too")
    if max_batch:
        p.add_argument("--memory-budget", default=None, metavar="SIZE",
                       help="max-batch budget, e.g. 16GiB: GiB and MiB are powers of 2 (what the tables print), "
                            "GB and MB powers of 10 (8GB = 7.45GiB); default: the whole GPU, or on the CPU the "
                            "memory of the --target-gpu card, else 16GiB (the paper's '16 GB' V100)")
        p.add_argument("--multiple-of", type=_positive_int, default=1, help="max batch must be a multiple of N")
    p.add_argument("--inference", default=None, choices=INFERENCE_MODES,
                   help="how inference runs: inference_mode (default; nothing kept for backward) or autograd "
                        "(a plain eval-mode forward that records the graph, as a script without no_grad)")
    p.add_argument("--target-gpu", default=None, metavar="GPU",
                   help="on the CPU, the GPU a prediction is for: a card of `wavemix-profile gpus` ('RTX 4090', "
                        "V100-SXM2-16GB, 'NVIDIA H100 80GB HBM3'), whose memory becomes the max-batch budget, or a "
                        "generation (ampere) or compute capability (sm86) for its overheads only; default: the "
                        "largest overheads of wavemix_profile/estimate/cuda_overheads.py within 16GiB")
    p.add_argument("--target-cuda", default=None, metavar="VERSION",
                   help="on the CPU, the CUDA version of the torch the prediction is for, e.g. 12.4 (default: "
                        "this torch's); it picks the CUDA context's size")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model before timing")
    p.add_argument("--num-classes", type=_positive_int, default=None,
                   help="classifier outputs (default: the model's own: 1000 for torchvision's and most timm "
                        "models, the pretrained config's; 100 (CIFAR-100, as the paper) for the zoo and python: "
                        "factories)")


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    """compare on several devices of this node, or on a Ray cluster (docs/scaling-out.md)."""
    p.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                   help="measure on these GPUs in parallel, one measuring process per GPU at a time: cuda:0 cuda:1 "
                        "..., or all; `cpu cpu` gives two CPU lanes, each timing alone (the default on a CPU "
                        "with 2+ cores)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run each measurement as a Ray task: on the cluster at ADDRESS, `auto` for the one the "
                        "environment names (RAY_ADDRESS), or without ADDRESS a local cluster started for the run "
                        "(needs pip install 'wavemix-profile[ray]')")
    p.add_argument("--gpu-types", nargs="+", default=None, metavar="TYPE",
                   help="with --ray, measure every model on each of these Ray accelerator types (H100 A100 V100 ...)")


# The README's questions, one command each; `wavemix-profile COMMAND --help` has each command's own.
TOP_LEVEL_EXAMPLES = """examples:
  wavemix-profile max-batch timm:resnet18 --image-size 64 --target-gpu 'RTX 4090'  # the largest batch on that GPU
  wavemix-profile compare --models WaveMix-16/5 torchvision:resnet18 --image-sizes 32 --out reports/mine
  wavemix-profile profile WaveMix-128/7 --image-size 64     # per-module MACs, what the memory consists of
  wavemix-profile scale --models ResNet-18 WaveMix-128/7    # cost against image size

every command has --help with examples: wavemix-profile COMMAND --help"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wavemix-profile", description=__doc__.splitlines()[0], formatter_class=RAW,
                     epilog=TOP_LEVEL_EXAMPLES)
    parser.add_argument("--version", action="version", version=f"wavemix-profile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="the model registry with family, params and the paper's figures",
                       epilog="example:\n  wavemix-profile list --models 'WaveMix-*'", formatter_class=RAW)
    p.add_argument("--models", nargs="+", default=["*"], metavar="NAME", help="registry names or globs (default: all)")
    p.add_argument("--num-classes", type=_positive_int, default=PAPER_NUM_CLASSES,
                   help=f"classes for the parameter count (default {PAPER_NUM_CLASSES}, the paper's CIFAR-100)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table with why counts differ from the paper")
    p.set_defaults(func=lambda a: _run("listing", "run_list", a))

    p = sub.add_parser("gpus", help="the GPUs --target-gpu names: memory (the max-batch budget), compute capability, "
                                    "and where each figure was seen",
                       epilog="examples:\n  wavemix-profile gpus\n  wavemix-profile gpus 'RTX 4090'\n"
                              "  wavemix-profile gpus --markdown", formatter_class=RAW)
    p.add_argument("name", nargs="?", default=None, help="show the card this name means (as --target-gpu reads it)")
    p.add_argument("--markdown", action="store_true", help="a Markdown table")
    p.set_defaults(func=lambda a: _run("gpus", "run_gpus", a))

    p = sub.add_parser("compare", help="measure models at several image sizes and render the comparison",
                       epilog="examples:\n  wavemix-profile compare\n"
                              "  wavemix-profile compare --models 'WaveMix-*' ResNet-18 --image-sizes 32 "
                              "--memory-budget 16GiB --out reports/mine\n"
                              "  wavemix-profile compare --models torchvision:resnet50 timm:convnext_atto --skip throughput\n"
                              "  wavemix-profile compare --devices all --resume          # every GPU of this node\n"
                              "  wavemix-profile compare --ray auto --gpu-types H100 A100  # each GPU kind of a Ray cluster",
                       formatter_class=RAW)
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="registry names, globs ('WaveMix-*'), torchvision:NAME, timm:NAME, python:MODULE:FACTORY or "
                        "python:path/to/file.py:FACTORY, where FACTORY(num_classes=..., image_size=...) returns the "
                        "model (default: the paper's zoo)")
    _add_measure_options(p, single_size=False)
    p.add_argument("--skip", nargs="+", default=[], metavar="WHAT",
                   help="measurements to skip: params, flops, memory, max-batch, throughput")
    p.add_argument("--throughput-batch-size", type=_positive_int, default=None,
                   help=f"batch for images/s (default: --batch-size on CUDA, "
                        f"{CPU_QUICK_TIMING['throughput_batch_size']} on CPU without --full)")
    p.add_argument("--full", action="store_true", help="on CPU, time as many iterations as on CUDA (slow)")
    _add_timing_options(p)
    _add_script_options(p)
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default reports/<device-slug>/)")
    p.add_argument("--resume", action="store_true",
                   help="skip measurements already in DIR/results.jsonl; stored errors are measured again; "
                        "temporary files a killed run left in DIR are removed")
    p.add_argument("--keep-errors", action="store_true", help="with --resume, skip stored errors too")
    _add_accuracy(p)
    _add_timeout(p)
    _add_scale_out(p)
    p.set_defaults(func=lambda a: _run("compare", "run_compare", a, measures=True))

    from .commands.scale import SCALE_MODELS, SCALE_SIZES
    p = sub.add_parser("scale", help="cost against image size: MACs, peak training memory and max training batch, "
                                     "log-log with fitted exponents",
                       epilog="examples:\n  wavemix-profile scale\n"
                              "  wavemix-profile scale --models 'WaveMix-*' ResNet-18 --image-sizes 32 64 128 "
                              "--out reports/mine/scale --resume",
                       formatter_class=RAW)
    p.add_argument("--models", nargs="+", default=list(SCALE_MODELS), metavar="NAME",
                   help="registry names, globs or torchvision:/timm:/python: specs (default: "
                        f"{' '.join(SCALE_MODELS)})")
    _add_measure_options(p, single_size=False, default_sizes=SCALE_SIZES)
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default reports/<device-slug>/scale/)")
    p.add_argument("--resume", action="store_true",
                   help="skip measurements already in DIR/results.jsonl; stored errors are measured again; "
                        "temporary files a killed run left in DIR are removed")
    p.add_argument("--keep-errors", action="store_true", help="with --resume, skip stored errors too")
    _add_timeout(p)
    p.set_defaults(func=lambda a: _run("scale", "run_scale", a, measures=True))

    p = sub.add_parser("max-batch", help="the largest batch that trains or infers within a memory budget",
                       epilog="examples:\n  wavemix-profile max-batch WaveMix-256/7 --memory-budget 16GiB\n"
                              "  wavemix-profile max-batch ResNet-50 --image-size 64 --mode train --multiple-of 8",
                       formatter_class=RAW)
    p.add_argument("model", help="registry name or torchvision:/timm:/python: spec")
    p.add_argument("--mode", default="both", choices=("train", "infer", "both"),
                   help="search the largest training batch, inference batch, or both (default both)")
    _add_measure_options(p, single_size=True)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also append the result to DIR/results.jsonl, the store compare and report use")
    _add_script_options(p)
    _add_timeout(p)
    p.set_defaults(func=lambda a: _run("max_batch", "run_max_batch", a, measures=True))

    p = sub.add_parser("profile", help="one model in depth: per-module FLOPs and params, memory split",
                       epilog="example:\n  wavemix-profile profile WaveMix-128/7 --image-size 64", formatter_class=RAW)
    p.add_argument("model", help="registry name or torchvision:/timm:/python: spec")
    _add_measure_options(p, single_size=True, max_batch=False)
    p.add_argument("--depth", type=_positive_int, default=2, help="module nesting depth shown (default 2)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the profile to DIR/profile-MODEL-SIZEpx.json (and .md)")
    p.add_argument("--timeline", type=_folder, default=None, metavar="DIR",
                   help="also write a memory timeline of one training step to DIR/timeline-MODEL-SIZEpx.png, .svg "
                        "and .json (on CUDA also .pickle, the allocator's history for https://pytorch.org/memory_viz)")
    _add_script_options(p)
    p.set_defaults(func=lambda a: _run("profile", "run_profile", a))

    p = sub.add_parser("validate", help="check every CUDA path on this GPU and write the reference reports",
                       epilog="examples:\n  wavemix-profile validate --list\n"
                              "  wavemix-profile validate --time-limit 520    # stops cleanly; rerun to continue\n"
                              "  wavemix-profile validate --rehearse --out /tmp/rehearsal   # the same, on the CPU",
                       formatter_class=RAW)
    from .validation.plan import STAGE_NAMES
    p.add_argument("--stage", nargs="+", choices=STAGE_NAMES, metavar="STAGE",
                   help=f"run these stages only: {', '.join(STAGE_NAMES)} (default: all, in that order)")
    p.add_argument("--list", action="store_true", help="print each stage, what is left and its expected time; run nothing")
    p.add_argument("--time-limit", type=_seconds, default=0, metavar="SECONDS",
                   help="start no work that would end past this many seconds; rerun to continue (default 0: none)")
    p.add_argument("--rehearse", action="store_true",
                   help="run the whole pipeline on the CPU with two small models; every figure is labelled")
    p.add_argument("--device", default=None, help="cuda or cuda:N (default cuda)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default reports/<device-slug>/)")
    p.set_defaults(func=lambda a: _run("validate", "run_validate", a, measures=not a.list))

    p = sub.add_parser("paper-fit", help="which way of measuring the paper's Tables 1, 4 and 6 match, from first "
                                         "principles",
                       epilog="example:\n  wavemix-profile paper-fit --out reports/cpu-amd-epyc", formatter_class=RAW)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for paper_fit.json; its report.md gains the section (default reports/<device-slug>/)")
    p.set_defaults(func=lambda a: _run("paper_fit", "run_paper_fit", a))

    p = sub.add_parser("report", help="re-render tables, files and charts from stored results, without measuring",
                       epilog="examples:\n  wavemix-profile report reports/cpu/results.jsonl\n"
                              "  wavemix-profile report a100/results.jsonl v100/results.jsonl --out reports/merged",
                       formatter_class=RAW)
    p.add_argument("stores", nargs="+", metavar="RESULTS.jsonl")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write report.md, results.csv and charts (default: the first store's folder)")
    p.add_argument("--reference", default=None, metavar="DEVICE",
                   help="with results from several devices, the device cross_device.md divides by: its device "
                        "name, host, or 'NAME (HOST)' label (default: the first device in the stores)")
    _add_accuracy(p)
    p.set_defaults(func=lambda a: _run("report", "run_report", a))
    return parser


def _run(module: str, function: str, args, *, measures: bool = False) -> int:
    """The command's run function; a command that measures in children starts their fork server
    first, before anything else has run here: forked from this process once it has imported torch
    (forkserver.start_server), it imports the rest of what a measurement needs meanwhile."""
    import importlib
    here = getattr(args, "ray", None) is None and set(getattr(args, "devices", None) or ["cpu"]) == {"cpu"}
    if measures and here:  # not the slot processes of GPUs (devices.py) nor Ray's workers, which fork their own
        from .run.forkserver import start_server
        start_server()
    return getattr(importlib.import_module(f".commands.{module}", __package__), function)(args)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that every cleanup on the way out runs, as for Ctrl-C."""


def _on_stop(signum, frame):
    """The first Ctrl-C or SIGTERM ends the run, raised where the program is; any later one is ignored,
    so that the way out (ending the children, the fork server, the line that says what was stored)
    is not cut short into a traceback. The process is ending: nothing restores them."""
    from .core.errors import stop_run
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_IGN)
    stop_run(_Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())


_STOPS = (signal.SIGINT, signal.SIGTERM)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line on stderr, without the source line Python would quote under it."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a measurement failed or a file could not be written (a full disk),
    2 bad input, 130 Ctrl-C, 143 SIGTERM."""
    import warnings
    from .core.errors import Interrupted, WriteFailed
    parser = build_parser()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _on_stop) for sig in _STOPS} if in_main_thread else {}
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    stopped = False
    try:
        args = parser.parse_args(argv)
        # what a record names as the command that made it: these arguments, also when main() is called with them
        args.command_line = "wavemix-profile " + shlex.join(sys.argv[1:] if argv is None else argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except KeyboardInterrupt as exc:  # one line, no traceback; children and claims are gone by now
        stopped = True
        stored = (f"; {exc.stored} result{'s' * (exc.stored != 1)} stored, rerun with --resume"
                  if isinstance(exc, Interrupted) else "")
        print(f"interrupted{stored}", file=sys.stderr)
        terminated = isinstance(exc, _Terminated) or isinstance(exc.__context__, _Terminated)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WriteFailed as exc:  # what is stored stays; the failed write was taken back
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyError, ValueError) as exc:
        from .core.errors import is_user_error
        if not is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown
        for sig, handler in previous.items():
            if not stopped:
                signal.signal(sig, handler)
