"""``qvggt`` entry point: the subcommand registry and error handling.

Each subcommand lives in its own module; one that fails to import (a missing optional package,
say) is replaced by a stub that reports the import error only when it is invoked, so the other
commands keep working. User errors (:class:`QvggtError`, an option value out of range, and the
environment's: OSError, images PIL refuses, out of memory) print one line and exit 1; a malformed
command line (unknown option, missing argument) prints one line and exits 2. Any other exception
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import time
from typing import List, Optional

from qvggt_deploy import __version__
from qvggt_deploy.cli.base import Command, MissingCommand
from qvggt_deploy.errors import QvggtError

# name -> "module:Class". Order is the order shown in --help.
REGISTRY = {
    "infer": "qvggt_deploy.cli.infer:Infer",
    "eval": "qvggt_deploy.cli.evaluate:Evaluate",
    "train": "qvggt_deploy.cli.train:Train",
    "scenes": "qvggt_deploy.cli.scenes:Scenes",
    "sensitivity": "qvggt_deploy.cli.sensitivity:Sensitivity",
    "calibrate": "qvggt_deploy.cli.calibrate:Calibrate",
    "ablate": "qvggt_deploy.cli.ablate:Ablate",
    "export": "qvggt_deploy.cli.export:Export",
    "lint": "qvggt_deploy.cli.lint:Lint",
    "check": "qvggt_deploy.cli.check:Check",
    "bench": "qvggt_deploy.cli.bench:Bench",
    "build-engine": "qvggt_deploy.cli.build_engine:BuildEngine",
    "demo": "qvggt_deploy.cli.demo:Demo",
}


def load_command(name: str) -> Command:
    target = REGISTRY[name]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return MissingCommand(name, RuntimeError("not implemented in this version"))
        return MissingCommand(name, exc)
    except (ImportError, AttributeError) as exc:
        return MissingCommand(name, exc)
    command = cls()
    command.name = name
    return command


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage block hides the message on a narrow terminal).

    A value out of its option's range (:class:`~qvggt_deploy.cli.args.OptionValueError`) exits 1
    like any other user error; a malformed command line (unknown option, missing argument) exits 2.
    """

    def error(self, message: str):
        from qvggt_deploy.cli.args import OptionValueError

        cause = sys.exc_info()[1]
        code = 1 if isinstance(getattr(cause, "__context__", None), OptionValueError) else 2
        self.exit(code, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def describe_error(exc: BaseException) -> str:
    """One sentence for an error of the user's environment, naming the path when there is one."""
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer frames or scenes, or a machine with more memory"
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else None
        what = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno == errno.ENOSPC:
            what = "no space left on the device"
        return f"{where}: {what}" if where else what
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _user_errors() -> tuple:
    """Exception types that are the input's or environment's fault, not a bug."""
    errors = [QvggtError, OSError, MemoryError]
    try:
        from PIL import Image

        errors.append(Image.DecompressionBombError)
    except ImportError:
        pass
    return tuple(errors)


def _terminate(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so the temporary outputs are removed by their ``finally``."""
    raise KeyboardInterrupt


def build_parser(commands) -> argparse.ArgumentParser:
    parser = Parser(
        prog="qvggt",
        description="QVGGT post-training quantization of VGGT and deployment through ONNX Runtime "
                    "and TensorRT.",
    )
    parser.add_argument("--version", action="version", version=f"qvggt-deploy {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in commands.items():
        p = sub.add_parser(name, help=command.summary(), description=command.description(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(p)
        p.set_defaults(_command=command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from qvggt_deploy import log

    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the command that is asked for (fast --help for one command, robust to breakage
    # elsewhere); the top-level help imports all of them to show their summaries.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    names = [wanted] if wanted in REGISTRY else list(REGISTRY)
    commands = {name: load_command(name) for name in names}
    parser = build_parser(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    log.configure(-1 if args.quiet else args.verbose)
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; a user's MPLBACKEND wins
    logger = log.get_logger("qvggt_deploy.cli")
    start = time.perf_counter()
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        code = args._command.run(args)
    except _user_errors() as exc:
        message = str(exc) if isinstance(exc, QvggtError) else describe_error(exc)
        logger.error("%s", " ".join(message.split("\n")))
        logger.error("FAILED: qvggt %s (%.1f s)", args.command, time.perf_counter() - start)
        return 1
    except RuntimeError as exc:  # torch reports a failed allocation as RuntimeError
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        logger.error("%s", describe_error(MemoryError()))
        logger.error("FAILED: qvggt %s (%.1f s)", args.command, time.perf_counter() - start)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    status = "PASSED" if code == 0 else "FAILED"
    logger.info("%s: qvggt %s (%.1f s)", status, args.command, time.perf_counter() - start)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
