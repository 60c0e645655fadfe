"""Stages with dependencies: a stage runs only when the stages it needs succeeded; a failing
stage is reported with its reason and the others go on."""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


@dataclass
class Stage:
    name: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    artifacts: Dict[str, str] = field(default_factory=dict)


def fresh(path: Path) -> None:
    """Remove a stage's outputs from an earlier run into the same folder before the stage runs, so
    the report never shows a result this run did not produce."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class Pipeline:
    """Stages by name, in the order they ran."""

    def __init__(self):
        self.stages: Dict[str, Stage] = {}

    def ok(self, name: str) -> bool:
        return name in self.stages and self.stages[name].status == "ok"

    def run(self, name: str, fn: Callable[[Stage], None], needs=()) -> Stage:
        stage = self.stages.setdefault(name, Stage(name))
        missing = [n for n in needs if not self.ok(n)]
        if missing:
            stage.status, stage.detail = "skipped", f"needs {', '.join(missing)}"
            logger.warning("demo: %s skipped (%s)", name, stage.detail)
            return stage
        logger.info("demo: %s ...", name)
        start = time.perf_counter()
        try:
            fn(stage)
            stage.status = "ok"
        except QvggtError as exc:
            stage.status, stage.detail = "failed", str(exc)
        except Exception as exc:  # a bug in a component: report it, keep the other stages going
            stage.status, stage.detail = "failed", f"{type(exc).__name__}: {exc}"
            logger.debug("%s", traceback.format_exc())
        stage.seconds = time.perf_counter() - start
        log = logger.info if stage.status == "ok" else logger.error
        log("demo: %s %s (%.1f s)%s", name, stage.status.upper(), stage.seconds, f": {stage.detail}" if stage.detail else "")
        return stage
