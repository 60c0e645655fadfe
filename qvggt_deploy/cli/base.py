"""Base class for subcommands.

A subcommand is a class whose docstring is its ``--help`` text; it adds its options in
``add_arguments`` and does its work in ``run(args) -> int``. Raising :class:`QvggtError` ends the
command with the message and exit code 1 (no traceback).
"""
from __future__ import annotations

import argparse
import inspect


class Command:
    """Override: the first docstring line is the one-line summary, the rest is the help text."""

    name: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def description(cls) -> str:
        return inspect.getdoc(cls) or ""


class MissingCommand(Command):
    """Placeholder for a subcommand whose module could not be imported."""

    def __init__(self, name: str, error: BaseException):
        self.name = name
        self.error = error

    def summary(self) -> str:  # type: ignore[override]
        return f"(unavailable: {self.error})"

    def description(self) -> str:  # type: ignore[override]
        return self.summary()

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.errors import QvggtError

        raise QvggtError(f"'qvggt {self.name}' is unavailable here: {self.error}")
