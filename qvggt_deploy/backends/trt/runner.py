"""TensorRT runner: one engine, or the split pair (aggregator engine -> heads engine), behind the
common I/O contract (input ``images``; outputs ``pose_enc``, ``depth``, ``depth_conf``,
``world_points``, ``world_points_conf``).

``TrtRunner("vggt.engine")`` reads the engine's sidecar: for a split build (``part: split``) it
chains the two engines it lists, keeping the tapped tokens on the device between them, and gives
both execution contexts one shared scratch buffer (they run one after the other on one stream,
so the activation memory is the larger of the two, not the sum).

Buffers and streams come from :mod:`qvggt_deploy.trt.cuda` (cuda-bindings, or PyCUDA where
present). ``inference_time`` covers the host-to-device copies, execution and the copies back.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from qvggt_deploy.backends.trt.loader import EngineFromPath
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.io import INPUT_NAME, OUTPUT_NAMES
from qvggt_deploy.lazy import is_available as _importable
from qvggt_deploy.log import get_logger
from qvggt_deploy.trt.builder import NO_TENSORRT, trt
from qvggt_deploy.trt.cuda import NO_CUDA_PYTHON, DeviceBuffer, get_api
from qvggt_deploy.trt.sidecar import read_sidecar

logger = get_logger(__name__)


@dataclass(frozen=True)
class Availability:
    """Whether the backend can run here; false with a one-sentence ``reason`` otherwise."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def is_available() -> Availability:
    """``Availability(False, "tensorrt is not installed: ...")`` where the backend cannot run."""
    if not _importable("tensorrt"):
        return Availability(False, NO_TENSORRT)
    if not (_importable("cuda.bindings.runtime") or _importable("pycuda.driver")):
        return Availability(False, NO_CUDA_PYTHON)
    return Availability(True)


@dataclass
class _DeviceTensor:
    ptr: int
    shape: Tuple[int, ...]
    dtype: np.dtype


class _Stage:
    """One engine with its execution context; inputs/outputs in engine order."""

    def __init__(self, engine):
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.context = None

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))

    def frame_range(self, name: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(lo), tuple(hi)


def _engine_paths(path: Path) -> List[Path]:
    """The engine files behind ``path``: itself, or the two a split sidecar lists."""
    doc = read_sidecar(path)
    if doc and doc.get("part") == "split":
        return [path.parent / doc["split"]["aggregator"], path.parent / doc["split"]["heads"]]
    return [path]


class TrtRunner(BaseRunner):
    """Runs a VGGT engine (or split pair) built by ``qvggt build-engine``.

    Args:
        engine: engine path (a split build's ``.engine`` path resolves to its two engines), a
            ``trt.ICudaEngine``, a loader returning one, or a sequence of those run in order
            (outputs of a stage feed inputs of the same name in the next).
        name: runner name prefix. Defaults to "trt".
        plugin_library: plugin ``.so`` to load before deserialising. Defaults to the sidecar's.
        cuda: "cuda-bindings" or "pycuda". Defaults to whichever imports (cuda-bindings first).
    """

    def __init__(self, engine, name: Optional[str] = None, plugin_library=None, cuda: Optional[str] = None):
        super().__init__(name=name, prefix="trt")
        if isinstance(engine, (str, Path)):
            engine = [EngineFromPath(p, plugin_library=plugin_library) for p in _engine_paths(Path(engine))]
        self._engines = list(engine) if isinstance(engine, (list, tuple)) else [engine]
        self._cuda_name = cuda
        self.stages: List[_Stage] = []

    is_available = staticmethod(is_available)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def activate_impl(self):
        available = is_available()
        if not available:
            raise QvggtError(available.reason)
        self.cuda = get_api(self._cuda_name)
        self.stages = [_Stage(e() if callable(e) else e) for e in self._engines]
        self.stream = self.cuda.stream_create()
        self.buffers: Dict[str, DeviceBuffer] = {}
        shared = len(self.stages) > 1
        # One scratch buffer for all stages: they run sequentially on one stream.
        self.scratch = DeviceBuffer(self.cuda)
        for stage in self.stages:
            if shared:
                stage.context = stage.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
            else:
                stage.context = stage.engine.create_execution_context()
            if stage.context is None:
                raise QvggtError("TensorRT could not create an execution context (out of device memory?)")
        if shared:
            size = max(stage.engine.device_memory_size_v2 for stage in self.stages)
            self.scratch.reserve(size)
            for stage in self.stages:
                stage.context.set_device_memory(self.scratch.ptr, size)
        produced = {n for s in self.stages for n in s.outputs}
        self.external_inputs = [n for s in self.stages for n in s.inputs if n not in produced]
        self.final_outputs = [n for n in self.stages[-1].outputs]
        missing = [n for n in OUTPUT_NAMES if n not in self.final_outputs]
        if INPUT_NAME not in self.external_inputs or missing:
            logger.warning("engine I/O differs from the common contract (inputs %s, outputs %s)",
                           self.external_inputs, self.final_outputs)

    def deactivate_impl(self):
        for stage in self.stages:
            stage.context = None
        for buf in self.buffers.values():
            buf.free()
        self.scratch.free()
        self.cuda.stream_destroy(self.stream)
        self.stages, self.buffers = [], {}

    # ---- metadata ----------------------------------------------------------------------------------
    def _stage_of(self, name: str) -> _Stage:
        return next(s for s in self.stages if name in s.inputs)

    def get_input_metadata_impl(self):
        meta = TensorMetadata()
        for name in self.external_inputs:
            stage = self._stage_of(name)
            shape = [None if d < 0 else int(d) for d in stage.engine.get_tensor_shape(name)]
            meta.add(name, dtype=stage.dtype(name), shape=shape)
        return meta

    # ---- inference ---------------------------------------------------------------------------------
    def _device(self, name: str, nbytes: int) -> int:
        return self.buffers.setdefault(name, DeviceBuffer(self.cuda)).reserve(nbytes)

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        pool: Dict[str, _DeviceTensor] = {}
        hosts = []  # keep converted host arrays alive until the stream is synchronised
        for name in self.external_inputs:
            if name not in feed_dict:
                raise QvggtError(f"missing input {name!r}; the engine takes {self.external_inputs}")
            stage = self._stage_of(name)
            host = np.ascontiguousarray(feed_dict[name], dtype=stage.dtype(name))
            lo, hi = stage.frame_range(name)
            if host.ndim != len(lo) or any(not a <= d <= b for a, d, b in zip(lo, host.shape, hi)):
                raise QvggtError(f"input {name} has shape {host.shape}; this engine takes shapes from {lo} to {hi} "
                                 f"(frames {lo[0]}..{hi[0]}; rebuild with a profile whose frames.max is larger)")
            ptr = self._device(name, host.nbytes)
            self.cuda.copy_htod_async(ptr, host, self.stream)
            hosts.append(host)
            pool[name] = _DeviceTensor(ptr, host.shape, host.dtype)
        for stage in self.stages:
            ctx = stage.context
            for name in stage.inputs:
                t = pool[name]
                if not ctx.set_input_shape(name, t.shape):
                    raise QvggtError(f"TensorRT refused shape {t.shape} for input {name}")
                ctx.set_tensor_address(name, t.ptr)
            for name in stage.outputs:
                shape = tuple(ctx.get_tensor_shape(name))
                dtype = stage.dtype(name)
                ptr = self._device(name, int(np.prod(shape)) * dtype.itemsize)
                ctx.set_tensor_address(name, ptr)
                pool[name] = _DeviceTensor(ptr, shape, dtype)
            if not ctx.execute_async_v3(self.stream):
                raise QvggtError("TensorRT execution failed (its log above says why)")
        outputs = OrderedDict()
        for name in self.final_outputs:
            t = pool[name]
            host = np.empty(t.shape, dtype=t.dtype)
            self.cuda.copy_dtoh_async(host, t.ptr, self.stream)
            outputs[name] = host
        self.cuda.stream_synchronize(self.stream)
        self.inference_time = time.perf_counter() - start
        return outputs


def SplitTrtRunner(aggregator_engine, heads_engine, **kwargs) -> TrtRunner:
    """A :class:`TrtRunner` over the two engines of a split build (aggregator first)."""
    return TrtRunner([aggregator_engine, heads_engine], **kwargs)
