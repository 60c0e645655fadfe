"""``qvggt`` entry point: the subcommand registry and error handling.

Each subcommand lives in its own module; one that fails to import (a missing optional package,
say) is replaced by a stub that reports the import error only when it is invoked, so the other
commands keep working. User errors (:class:`QvggtError`) print one line and exit 1.
"""
from __future__ import annotations

import argparse
import importlib
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


def build_parser(commands) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    log.configure(-1 if args.quiet else args.verbose)
    logger = log.get_logger("qvggt_deploy.cli")
    start = time.perf_counter()
    try:
        code = args._command.run(args)
    except QvggtError as exc:
        logger.error("%s", exc)
        logger.error("FAILED: qvggt %s (%.1f s)", args.command, time.perf_counter() - start)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    status = "PASSED" if code == 0 else "FAILED"
    logger.info("%s: qvggt %s (%.1f s)", status, args.command, time.perf_counter() - start)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
