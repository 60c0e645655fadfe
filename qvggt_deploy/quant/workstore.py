"""Resumable calibration: each unit's result is saved as it finishes, in a work folder next to
the output (``RECIPE.work/``), and reused on restart when the options, the model and the
calibration data are the same (a ``key.json`` digest); otherwise the folder is cleared.

One file per unit, ``NNN-<unit>.safetensors``: its tensors (packed weights, scales, smoothing
factors, compensation rows) with the JSON part of the partial recipe in the safetensors metadata;
named results (e.g. the sensitivity table) as ``<name>.json``. All writes are atomic, so an
interrupt leaves either a whole unit or none.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_path, write_json
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

KEY_FILE = "key.json"


def key_digest(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class WorkStore:
    """Per-unit results of one calibration run, keyed by ``key`` (options, fingerprints)."""

    def __init__(self, folder, key: Dict[str, Any]):
        self.folder = Path(folder)
        self.digest = key_digest(key)
        key_path = self.folder / KEY_FILE
        if self.folder.exists():
            try:
                old = json.loads(key_path.read_text(encoding="utf-8")).get("digest")
            except (OSError, json.JSONDecodeError):
                old = None
            if old != self.digest:
                logger.warning("%s: made with other options, model or data; starting afresh", self.folder)
                shutil.rmtree(self.folder)
            else:
                done = len(list(self.folder.glob("*.safetensors")))
                if done:
                    logger.info("resuming from %s (%d unit(s) done)", self.folder, done)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not key_path.exists():
            write_json(key_path, {"digest": self.digest, "key": json.loads(json.dumps(key, default=str))})

    def _unit_path(self, index: int, unit: str) -> Path:
        return self.folder / f"{index:03d}-{unit}.safetensors"

    def load_unit(self, index: int, unit: str) -> Optional[Tuple[Dict[str, Any], Dict[str, torch.Tensor]]]:
        path = self._unit_path(index, unit)
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = json.loads(f.metadata()["part"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # a damaged file: recalibrate that unit
            logger.warning("%s: unreadable (%s); recalibrating %s", path, exc, unit)
            return None
        return meta, tensors

    def save_unit(self, index: int, unit: str, meta: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        with atomic_path(self._unit_path(index, unit)) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"part": json.dumps(meta)})

    def load_json(self, name: str) -> Optional[Any]:
        path = self.folder / f"{name}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise QvggtError(f"{path}: unreadable ({exc}); delete it to recompute") from exc

    def save_json(self, name: str, obj: Any) -> None:
        write_json(self.folder / f"{name}.json", obj)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
