"""The `scaling` command: a thin map from subcommands onto plain functions.

Each subcommand lives in scaling/commands/<name>.py with a `register(subparsers)` that adds its parser
and sets `func` to the module's `run(args) -> int`. The modules are imported here, plainly, so a missing
one fails at once; they import their heavy dependencies (torch, scipy) inside `run`, so that `scaling plan`
starts without torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from gptcore.errors import UserError
from scaling.commands import data, demo, fit, generate, launch, plan, predict, sweep, train, tune
from scaling.commands import eval as eval_  # not to shadow the builtin

# In the order `scaling --help` lists them.
COMMANDS = {"train": train, "generate": generate, "eval": eval_, "data": data, "plan": plan, "fit": fit,
            "predict": predict, "sweep": sweep, "tune": tune, "launch": launch, "demo": demo}

# Commands that train: they run faster with glibc keeping freed memory (see _reexec_with_fast_malloc).
TRAINING_COMMANDS = {"train", "sweep", "tune", "launch", "demo"}
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ("scaling plan: error: ...") and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    """The installed distribution's version; from pyproject.toml when run from a checkout that is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("scaling")
    except PackageNotFoundError:
        pyproject = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
        try:
            with open(pyproject, encoding="utf-8") as f:
                return next(line.split('"')[1] for line in f if line.startswith("version = "))
        except (OSError, StopIteration, IndexError):
            return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="scaling",
        description="Scaling laws and compute planning for GPT-style pretraining.",
    )
    parser.add_argument("--version", action="version", version=f"scaling {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def _reexec_with_fast_malloc(argv: list[str]) -> None:
    """Re-run this process once with glibc malloc tunables that stop it returning big buffers to the OS.

    Without them every step page-faults its logits buffers afresh, and a small model trains up to 1.9x
    slower (measured on a 2-core CPU). The setting must be in the environment
    before the process starts, hence the exec. Skipped off Linux and when already set.
    """
    if sys.platform != "linux" or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    current = os.environ.get("GLIBC_TUNABLES")
    env = dict(os.environ, GLIBC_TUNABLES=f"{current}:{MALLOC_TUNABLES}" if current else MALLOC_TUNABLES)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "scaling", *argv], env)


def exit_process(code: int) -> None:
    """sys.exit(code), or gptcore.train.exit_process if this process trained (it may have joined a process
    group); torch is never imported for it."""
    trainer = sys.modules.get("gptcore.train")
    if trainer is not None:
        trainer.exit_process(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    from_console = argv is None
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if from_console and args.command in TRAINING_COMMANDS:
        _reexec_with_fast_malloc(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))  # "data prepare"
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"scaling {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scaling {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`scaling plan | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # a path the user gave is a file, a directory, read-only, full...: say which, in one line
        where = f": {e.filename}" if e.filename else ""
        print(f"scaling {command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
