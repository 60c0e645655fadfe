"""Logging and progress bars.

Modules log through ``get_logger(__name__)`` (names under ``qvggt.``); only CLI reports print.
Progress bars go to stderr and disappear when stderr is not a terminal or ``QVGGT_NO_PROGRESS=1``.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")

_ROOT = "qvggt"


def get_logger(module_name: str) -> logging.Logger:
    """Return the logger ``qvggt.<last part of module_name>``."""
    short = module_name.split(".", 1)[1] if module_name.startswith("qvggt_deploy.") else module_name
    return logging.getLogger(f"{_ROOT}.{short}")


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted: the stream may be replaced after
    :func:`configure` (pytest's capture, a notebook), and the one seen then may be closed."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure(verbosity: int = 0) -> None:
    """Configure the root ``qvggt`` logger for CLI use: 0 = INFO, >0 = DEBUG, <0 = WARNING."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    root = logging.getLogger(_ROOT)
    root.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):  # others may be tests' collectors
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        root.addHandler(handler)
    root.propagate = False
    # A library's logging.config call (disable_existing_loggers) may have switched ours off.
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and (name == _ROOT or name.startswith(_ROOT + ".")):
            logger.disabled = False


def progress_enabled() -> bool:
    if os.environ.get("QVGGT_NO_PROGRESS") == "1":
        return False
    return sys.stderr.isatty() or os.environ.get("QVGGT_FORCE_PROGRESS") == "1"


def progress(iterable: Iterable[T], desc: str = "", total: Optional[int] = None, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr when progress output is enabled."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not progress_enabled(), leave=False,
                dynamic_ncols=True, file=sys.stderr, **kwargs)
