"""Strongly typed TensorRT engine builder, as Polygraphy-style loader functors.

The chain for ``qvggt build-engine``::

    plugins = LoadPluginLibrary("kernels/build/cmake/trt_plugin/libqvggt_trt_plugin.so")
    network = NetworkFromOnnx("vggt.onnx", plugins=plugins)          # -> (builder, network, parser)
    config = ConfigFromProfile(profile, timing_cache=cache_path)      # (builder, network) -> config
    plan = SerializedEngineFromNetwork(network, config, save_timing_cache=cache_path)
    SaveEngine(plan, "vggt.engine")()                                 # atomic write

Precision is expressed in the graph (QDQ / Cast nodes from ``qvggt export --target trt``), so the
network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` and no precision builder
flag (FP16/INT8/BF16) is ever set: a strongly typed network takes its types from the graph, which
is what keeps LayerNorm in fp32 and stops an engine from silently staying fp32.

Every TensorRT call here was checked against the TensorRT 10.3 Python API; the table is in
docs/tensorrt-api-audit.md. ``tensorrt`` is imported lazily: without it, calling any loader raises
:class:`QvggtError` with :data:`NO_TENSORRT`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from polygraphy.backend.base import BaseLoader

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_path
from qvggt_deploy.lazy import is_available, lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.trt.profiles import KIB, FrameRange, Profile

logger = get_logger(__name__)

NO_TENSORRT = ("tensorrt is not installed: it ships with JetPack on Jetson (create the venv with "
               "--system-site-packages to see it; see docs/jetson.md), on a desktop GPU pip install tensorrt")
trt = lazy_import("tensorrt", hint=NO_TENSORRT)

_LOGGER = None
_LOADED_LIBRARIES: Dict[str, object] = {}


def require_tensorrt() -> None:
    """Raise :class:`QvggtError` with :data:`NO_TENSORRT` when ``tensorrt`` does not import."""
    if not is_available("tensorrt"):
        raise QvggtError(NO_TENSORRT)


def trt_logger():
    """One ``trt.Logger`` per process (TensorRT wants the same logger for builder and runtime)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _invoke(obj, *args):
    return obj(*args) if callable(obj) else obj


class LoadPluginLibrary(BaseLoader):
    """Load the plugin shared library into TensorRT's global plugin registry (once per process).

    Must run before parsing (the ONNX parser looks plugin nodes up by op type, ``plugin_version``
    and ``plugin_namespace``) and before deserialising an engine that contains the plugin.
    """

    def __init__(self, path: Optional[Union[str, Path]]):
        self.path = Path(path) if path else None

    def call_impl(self) -> Optional[Path]:
        if self.path is None:
            return None
        require_tensorrt()
        if not self.path.is_file():
            raise QvggtError(f"{self.path}: plugin library not found (build it: cmake -S kernels -B kernels/build/cmake "
                             f"&& cmake --build kernels/build/cmake; see docs/jetson.md)")
        key = str(self.path.resolve())
        if key in _LOADED_LIBRARIES:
            return self.path
        handle = trt.get_plugin_registry().load_library(key)
        if handle is None:
            # TensorRT 10.3: load_library "will fail and return None if any of the plugins are already
            # registered" - e.g. loaded through ctypes by someone else. Not an error then.
            logger.warning("TensorRT did not register %s (already registered in this process?)", key)
        _LOADED_LIBRARIES[key] = handle
        logger.info("loaded TensorRT plugin library %s", key)
        return self.path


class NetworkFromOnnx(BaseLoader):
    """Parse an ONNX file into a *strongly typed* TensorRT network.

    Returns ``(builder, network, parser)``; the parser owns the weights and must stay alive until the
    engine is built.
    """

    def __init__(self, path: Union[str, Path], plugins: Optional[Callable] = None):
        self.path = Path(path)
        self.plugins = plugins

    def call_impl(self):
        require_tensorrt()
        if not self.path.is_file():
            raise QvggtError(f"{self.path}: ONNX file not found")
        _invoke(self.plugins)
        builder = trt.Builder(trt_logger())
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, trt_logger())
        if not parser.parse_from_file(str(self.path)):
            errors = []
            for i in range(parser.num_errors):
                err = parser.get_error(i)
                errors.append(f"node {err.node_name() or err.node()} ({err.node_operator()}): {err.desc()}")
            raise QvggtError(f"{self.path}: TensorRT could not parse the graph: " + "; ".join(errors[:5])
                             + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""))
        return builder, network, parser


def frame_shapes(network, frames: FrameRange) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    """(min, opt, max) shapes of every network input, the dynamic (-1) axis being the frame count.

    Raises:
        QvggtError: an input with more than one dynamic axis (H and W are fixed per export).
    """
    shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        dynamic = [a for a, d in enumerate(dims) if d < 0]
        if len(dynamic) > 1:
            raise QvggtError(f"network input {tensor.name} has shape {dims} with {len(dynamic)} dynamic axes; only "
                             f"the frame axis may be dynamic (export with fixed height and width)")

        def at(n: int) -> Tuple[int, ...]:
            return tuple(n if d < 0 else d for d in dims)

        shapes[tensor.name] = (at(frames.min), at(frames.opt), at(frames.max))
    return shapes


class ConfigFromProfile(BaseLoader):
    """Builder configuration from a deployment profile: memory pools, optimisation level, one
    optimisation profile over the frame count, the timing cache, no precision flags."""

    def __init__(self, profile: Profile, timing_cache: Optional[Union[str, Path]] = None,
                 plugin_library: Optional[Union[str, Path]] = None, frames: Optional[FrameRange] = None):
        self.profile = profile
        self.timing_cache = Path(timing_cache) if timing_cache else None
        self.plugin_library = Path(plugin_library) if plugin_library else None
        self.frames = frames or profile.frames

    def call_impl(self, builder, network):
        spec = self.profile.builder
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
        if spec.tactic_shared_memory_kib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.TACTIC_SHARED_MEMORY, spec.tactic_shared_memory_kib * KIB)
        config.builder_optimization_level = spec.optimization_level
        if spec.max_aux_streams is not None:
            config.max_aux_streams = spec.max_aux_streams

        opt_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in frame_shapes(network, self.frames).items():
            opt_profile.set_shape(name, lo, opt, hi)
        if config.add_optimization_profile(opt_profile) < 0:
            raise QvggtError(f"TensorRT rejected the optimisation profile frames {self.frames} of profile "
                             f"{self.profile.name}")

        serialized = b""
        if self.timing_cache and self.timing_cache.is_file():
            serialized = self.timing_cache.read_bytes()
            logger.info("timing cache: %s (%d bytes)", self.timing_cache, len(serialized))
        cache = config.create_timing_cache(serialized)
        # ignore_mismatch=False: a cache from another device/TensorRT is refused, not trusted.
        if not config.set_timing_cache(cache, False):
            logger.warning("timing cache %s does not match this device/TensorRT; building without it",
                           self.timing_cache)
            config.set_timing_cache(config.create_timing_cache(b""), False)

        if spec.version_compatible:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            if self.plugin_library:
                config.plugins_to_serialize = [str(self.plugin_library.resolve())]
        return config


def save_timing_cache(config, path: Union[str, Path]) -> None:
    """Serialize the builder's timing cache and write it atomically."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(memoryview(cache.serialize()))
    logger.info("timing cache saved: %s", path)


class SerializedEngineFromNetwork(BaseLoader):
    """Build and serialize the engine; saves the timing cache after a successful build."""

    def __init__(self, network: Callable, config: Callable, save_timing_cache: Optional[Union[str, Path]] = None):
        self.network = network
        self.config = config
        self.save_timing_cache = Path(save_timing_cache) if save_timing_cache else None

    def call_impl(self):
        builder, network, parser = _invoke(self.network)
        config = self.config(builder, network) if callable(self.config) else self.config
        start = time.perf_counter()
        plan = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if plan is None:
            raise QvggtError("TensorRT could not build the engine (its log above says why); on a Jetson the usual "
                             "cause is memory: use split: true or lower frames.max in the profile")
        logger.info("engine built in %.1f s (%d bytes)", seconds, plan.nbytes)
        if self.save_timing_cache:
            save_timing_cache(config, self.save_timing_cache)
        del parser  # the parser owns the weights: keep it alive until here
        return plan


class SaveEngine(BaseLoader):
    """Write a serialized engine atomically (temporary file, then rename)."""

    def __init__(self, plan: Callable, path: Union[str, Path]):
        self.plan = plan
        self.path = Path(path)

    def call_impl(self) -> Path:
        plan = _invoke(self.plan)
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                f.write(memoryview(plan))
        return self.path


def tensorrt_version() -> str:
    require_tensorrt()
    return str(trt.__version__)


def build_engine(onnx_path: Union[str, Path], profile: Profile, out_path: Union[str, Path], *,
                 plugin_library: Optional[Union[str, Path]] = None,
                 timing_cache: Optional[Union[str, Path]] = None,
                 frames: Optional[FrameRange] = None) -> float:
    """Build ``onnx_path`` into ``out_path`` for ``profile``; returns the build time in seconds."""
    require_tensorrt()
    plugins = LoadPluginLibrary(plugin_library)
    network = NetworkFromOnnx(onnx_path, plugins=plugins)
    config = ConfigFromProfile(profile, timing_cache=timing_cache, plugin_library=plugin_library, frames=frames)
    start = time.perf_counter()
    SaveEngine(SerializedEngineFromNetwork(network, config, save_timing_cache=timing_cache), out_path)()
    return time.perf_counter() - start
