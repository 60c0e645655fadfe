"""The sidecar JSON written next to every engine (``E.engine`` -> ``E.engine.json``).

A serialized TensorRT engine only runs on the TensorRT version and GPU it was built for, and says
nothing about the model it holds. The sidecar records what is needed to tell whether an engine
fits a device and what it computes::

    {
      "format": "qvggt-engine-sidecar", "version": 1,
      "engine": {"file": "vggt-orin-nano.engine", "sha256": "...", "bytes": 123},
      "part": "full" | "aggregator" | "heads",
      "tensorrt": "10.3.0", "cuda": {"driver": 12060, "runtime": 12060},
      "device": {"name": "Orin", "compute_capability": [8, 7], "total_memory": ...},
      "onnx": {"file": "...", "sha256": "...", "metadata": {...}},
      "recipe_digest": "0123abcd..." | null,
      "profile": {...},            # the parsed deployment profile
      "plan": {...},               # memory estimate and split decision
      "plugin": {"library": "...", "sha256": "..."} | null,
      "build": {"seconds": 812.4, "finished": "2025-...Z", "tool": "qvggt-deploy 0.1.0", "host": "..."}
    }

:func:`check_compatible` compares a sidecar with the running TensorRT and device before an engine
is deserialised, so a mismatch is one clear sentence instead of a TensorRT error.
"""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from qvggt_deploy import __version__
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import sha256_file, write_json
from qvggt_deploy.graph.metadata import PREFIX

FORMAT = "qvggt-engine-sidecar"
VERSION = 1
#: ONNX metadata key under which the exporter records the recipe digest.
RECIPE_DIGEST_KEYS = (PREFIX + "recipe_digest", "recipe_digest")


def sidecar_path(engine_path: Union[str, Path]) -> Path:
    """``E.engine`` -> ``E.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def onnx_metadata(onnx_path: Union[str, Path]) -> Dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (external data is not loaded)."""
    from qvggt_deploy.lazy import import_or_raise

    onnx = import_or_raise("onnx")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise QvggtError(f"{onnx_path}: not a readable ONNX file ({exc})") from exc
    return {p.key: p.value for p in model.metadata_props}


def recipe_digest(metadata: Mapping[str, str]) -> Optional[str]:
    """The recipe digest the exporter recorded, or None for a float export."""
    for key in RECIPE_DIGEST_KEYS:
        if metadata.get(key):
            return metadata[key]
    return None


def make_sidecar(*, engine_path: Union[str, Path], onnx_path: Union[str, Path], profile: Mapping[str, Any],
                 plan: Optional[Mapping[str, Any]] = None, part: str = "full",
                 tensorrt_version: Optional[str] = None, device: Optional[Mapping[str, Any]] = None,
                 cuda: Optional[Mapping[str, Any]] = None, plugin_library: Optional[Union[str, Path]] = None,
                 build_seconds: Optional[float] = None) -> Dict[str, Any]:
    """Assemble the sidecar document for an engine that has been written to ``engine_path``."""
    engine_path, onnx_path = Path(engine_path), Path(onnx_path)
    metadata = onnx_metadata(onnx_path)
    plugin = None
    if plugin_library:
        plugin = {"library": str(plugin_library), "sha256": sha256_file(plugin_library)}
    return {
        "format": FORMAT,
        "version": VERSION,
        "engine": {"file": engine_path.name, "sha256": sha256_file(engine_path),
                   "bytes": engine_path.stat().st_size},
        "part": part,
        "tensorrt": tensorrt_version,
        "cuda": dict(cuda or {}),
        "device": dict(device or {}),
        "onnx": {"file": str(onnx_path), "sha256": sha256_file(onnx_path), "metadata": metadata},
        "recipe_digest": recipe_digest(metadata),
        "profile": dict(profile),
        "plan": dict(plan or {}),
        "plugin": plugin,
        "build": {
            "seconds": None if build_seconds is None else round(float(build_seconds), 2),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": f"qvggt-deploy {__version__}",
            "host": platform.node(),
            "machine": platform.machine(),
        },
    }


def write_sidecar(engine_path: Union[str, Path], doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` atomically next to the engine; returns the sidecar path."""
    path = sidecar_path(engine_path)
    write_json(path, dict(doc))
    return path


def read_sidecar(engine_path: Union[str, Path], required: bool = False) -> Optional[Dict[str, Any]]:
    """Read and validate the sidecar of ``engine_path``; None when absent and not ``required``."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        if required:
            raise QvggtError(f"{path}: missing (engines built by qvggt build-engine have one)")
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise QvggtError(f"{path}: unreadable sidecar ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise QvggtError(f"{path}: not a qvggt engine sidecar")
    if doc.get("version") != VERSION:
        raise QvggtError(f"{path}: sidecar version {doc.get('version')} is not supported (reads {VERSION})")
    return doc


def check_compatible(doc: Mapping[str, Any], *, tensorrt_version: Optional[str] = None,
                     compute_capability=None, engine_path: Optional[Union[str, Path]] = None) -> None:
    """Raise :class:`QvggtError` when the engine was built for another TensorRT or GPU architecture,
    or when its bytes are not the ones the sidecar describes.

    TensorRT plans are tied to the exact TensorRT version (unless built version-compatible) and to
    the compute capability of the build GPU (unless built hardware-compatible).
    """
    version_compatible = bool(doc.get("profile", {}).get("builder", {}).get("version_compatible"))
    built = doc.get("tensorrt")
    if tensorrt_version and built and built != tensorrt_version and not version_compatible:
        raise QvggtError(f"engine {doc['engine']['file']} was built with TensorRT {built}, this is "
                         f"TensorRT {tensorrt_version}: rebuild it here with qvggt build-engine")
    want_cc = doc.get("device", {}).get("compute_capability")
    if compute_capability and want_cc and tuple(want_cc) != tuple(compute_capability):
        raise QvggtError(f"engine {doc['engine']['file']} was built for sm_{want_cc[0]}{want_cc[1]}, this "
                         f"GPU is sm_{compute_capability[0]}{compute_capability[1]}: rebuild it on this device")
    if engine_path is not None and doc.get("engine", {}).get("sha256"):
        if sha256_file(engine_path) != doc["engine"]["sha256"]:
            raise QvggtError(f"{engine_path}: content does not match its sidecar (rebuilt or corrupt); "
                             f"rebuild with qvggt build-engine")
