"""Engine loaders: ``EngineFromPath`` reads an engine and its sidecar, loads the plugin library the
engine was built with, checks the TensorRT version and GPU against the sidecar, and deserialises.

    engine = EngineFromPath("vggt.engine")()              # trt.ICudaEngine
    with TrtRunner(EngineFromPath("vggt.engine")) as runner: ...
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from polygraphy.backend.base import BaseLoader

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import sha256_file
from qvggt_deploy.log import get_logger
from qvggt_deploy.trt import sidecar as sidecar_mod
from qvggt_deploy.trt.builder import LoadPluginLibrary, require_tensorrt, trt, trt_logger

logger = get_logger(__name__)


def plugin_library_for(engine_path: Union[str, Path], doc: Optional[dict],
                       explicit: Optional[Union[str, Path]] = None) -> Optional[Path]:
    """The plugin library to load for an engine: ``explicit`` if given, else the one its sidecar
    names (relative to the current folder, then to the engine's folder). A library whose hash
    differs from the one the engine was built with is used with a warning."""
    if explicit:
        return Path(explicit)
    plugin = (doc or {}).get("plugin")
    if not plugin:
        return None
    candidates = [Path(plugin["library"]), Path(engine_path).parent / Path(plugin["library"]).name]
    for path in candidates:
        if path.is_file():
            if plugin.get("sha256") and sha256_file(path) != plugin["sha256"]:
                logger.warning("%s differs from the plugin library the engine was built with; rebuild the engine if "
                               "inference fails", path)
            return path
    raise QvggtError(f"engine {engine_path} needs the plugin library {plugin['library']} (not found); build it "
                     f"(docs/jetson.md) or pass --plugin")


class EngineFromPath(BaseLoader):
    """Deserialise ``path`` into a ``trt.ICudaEngine`` (plugins loaded and sidecar checked first)."""

    def __init__(self, path: Union[str, Path], plugin_library: Optional[Union[str, Path]] = None,
                 check_sidecar: bool = True):
        self.path = Path(path)
        self.plugin_library = plugin_library
        self.check_sidecar = check_sidecar

    def call_impl(self):
        require_tensorrt()
        if not self.path.is_file():
            raise QvggtError(f"{self.path}: engine not found (build one with qvggt build-engine)")
        doc = sidecar_mod.read_sidecar(self.path) if self.check_sidecar else None
        if doc is not None:
            device = None
            try:
                from qvggt_deploy.trt.cuda import get_api

                device = get_api().device_info()
            except QvggtError as exc:
                logger.debug("no device facts for the sidecar check: %s", exc)
            sidecar_mod.check_compatible(doc, tensorrt_version=str(trt.__version__),
                                         compute_capability=(device or {}).get("compute_capability"))
        LoadPluginLibrary(plugin_library_for(self.path, doc, self.plugin_library))()
        runtime = trt.Runtime(trt_logger())
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise QvggtError(f"{self.path}: TensorRT could not deserialise the engine (its log above says why: "
                             f"built with another TensorRT or GPU, or a plugin is missing)")
        return engine
