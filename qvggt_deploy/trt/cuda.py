"""Device buffers, streams and device facts through NVIDIA's CUDA Python bindings, or PyCUDA.

Two back ends behind one small interface (:class:`CudaApi`), picked by :func:`get_api`:

- ``cuda-bindings`` (``from cuda.bindings import runtime``; ``pip install "cuda-bindings>=12.6,<13"``
  on JetPack 6 / CUDA 12.6): every call returns ``(cudaError_t, *values)``, checked by ``_check``;
- ``pycuda`` where it is installed (often on Jetson images): ``pycuda.autoinit`` makes the context.

Only what the TensorRT runner needs: allocate/free, async host<->device copies on a stream, stream
create/synchronize/destroy, and device/driver facts for the engine sidecar. Host arrays must be
C-contiguous NumPy arrays (the copies take their address).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import is_available, lazy_import

cudart = lazy_import("cuda.bindings.runtime", hint='pip install "qvggt-deploy[cuda]" (cuda-bindings>=12.6,<13, CUDA 12 drivers)')
pycuda_driver = lazy_import("pycuda.driver", hint="pip install pycuda")

NO_CUDA_PYTHON = ("no CUDA Python bindings are installed: pip install \"cuda-bindings>=12.6,<13\" "
                  "(or install pycuda)")


class CudaApi:
    """The calls the runner uses; pointers and stream handles are plain ints."""

    name = "abstract"

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def copy_htod_async(self, dst: int, host, stream: int) -> None:
        raise NotImplementedError

    def copy_dtoh_async(self, host, src: int, stream: int) -> None:
        raise NotImplementedError

    def copy_dtod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        raise NotImplementedError

    def stream_create(self) -> int:
        raise NotImplementedError

    def stream_synchronize(self, stream: int) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: int) -> None:
        raise NotImplementedError

    def device_info(self) -> Dict[str, Any]:
        """``{"name", "compute_capability": [major, minor], "total_memory", "integrated"}``."""
        raise NotImplementedError

    def versions(self) -> Dict[str, int]:
        """``{"driver": 12060, "runtime": 12060}`` (CUDA's integer encoding)."""
        raise NotImplementedError

    # Timing and graphs (``qvggt bench --backend trt``); event and graph handles are opaque.
    def mem_info(self) -> Tuple[int, int]:
        """(free, total) device bytes."""
        raise QvggtError(f"{self.name} does not give device memory figures here; install cuda-bindings")

    def event_create(self) -> Any:
        raise QvggtError(f"CUDA event timing needs cuda-bindings, not {self.name}: {NO_CUDA_PYTHON}")

    def event_record(self, event, stream: int) -> None:
        raise NotImplementedError

    def event_elapsed_ms(self, start, end) -> float:
        """Milliseconds between two recorded events (waits for ``end``)."""
        raise NotImplementedError

    def event_destroy(self, event) -> None:
        raise NotImplementedError

    def capture_begin(self, stream: int) -> None:
        raise QvggtError(f"CUDA graphs need cuda-bindings, not {self.name}: {NO_CUDA_PYTHON}")

    def capture_end(self, stream: int) -> Any:
        """End the capture and instantiate it: returns (graph, graph_exec)."""
        raise NotImplementedError

    def graph_launch(self, graph_exec, stream: int) -> None:
        raise NotImplementedError

    def graph_destroy(self, graph, graph_exec) -> None:
        raise NotImplementedError


def _check(result, what: str):
    """cuda-bindings return ``(err, *values)``; raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, msg = cudart.cudaGetErrorString(err)
        text = msg.decode() if isinstance(msg, bytes) else str(msg)
        raise QvggtError(f"CUDA error in {what}: {text} ({err})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class CudaBindingsApi(CudaApi):
    name = "cuda-bindings"

    def malloc(self, nbytes: int) -> int:
        return int(_check(cudart.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        _check(cudart.cudaFree(ptr), "cudaFree")

    def copy_htod_async(self, dst: int, host, stream: int) -> None:
        _check(cudart.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync(host to device)")

    def copy_dtoh_async(self, host, src: int, stream: int) -> None:
        _check(cudart.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync(device to host)")

    def copy_dtod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        _check(cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync(device to device)")

    def stream_create(self) -> int:
        return int(_check(cudart.cudaStreamCreate(), "cudaStreamCreate"))

    def stream_synchronize(self, stream: int) -> None:
        _check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        _check(cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def device_info(self) -> Dict[str, Any]:
        device = _check(cudart.cudaGetDevice(), "cudaGetDevice")
        prop = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
        return {"name": name, "compute_capability": [int(prop.major), int(prop.minor)],
                "total_memory": int(prop.totalGlobalMem), "integrated": bool(prop.integrated)}

    def versions(self) -> Dict[str, int]:
        return {"driver": int(_check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")),
                "runtime": int(_check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))}


    def mem_info(self) -> Tuple[int, int]:
        free, total = _check(cudart.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

    def event_create(self) -> Any:
        return _check(cudart.cudaEventCreate(), "cudaEventCreate")

    def event_record(self, event, stream: int) -> None:
        _check(cudart.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_elapsed_ms(self, start, end) -> float:
        _check(cudart.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(_check(cudart.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def event_destroy(self, event) -> None:
        _check(cudart.cudaEventDestroy(event), "cudaEventDestroy")

    def capture_begin(self, stream: int) -> None:
        _check(cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
               "cudaStreamBeginCapture")

    def capture_end(self, stream: int) -> Any:
        graph = _check(cudart.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return graph, _check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def graph_launch(self, graph_exec, stream: int) -> None:
        _check(cudart.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def graph_destroy(self, graph, graph_exec) -> None:
        _check(cudart.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")
        _check(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")


class PyCudaApi(CudaApi):
    """PyCUDA keeps allocations as objects; we hold them by pointer so callers see ints."""

    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates and pushes the primary context)

        self._allocations: Dict[int, Any] = {}
        self._streams: Dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = pycuda_driver.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocations.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def _stream(self, handle: int):
        return self._streams.get(handle)

    def copy_htod_async(self, dst: int, host, stream: int) -> None:
        pycuda_driver.memcpy_htod_async(dst, host, self._stream(stream))

    def copy_dtoh_async(self, host, src: int, stream: int) -> None:
        pycuda_driver.memcpy_dtoh_async(host, src, self._stream(stream))

    def copy_dtod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        pycuda_driver.memcpy_dtod_async(dst, src, nbytes, self._stream(stream))

    def stream_create(self) -> int:
        stream = pycuda_driver.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def stream_synchronize(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def device_info(self) -> Dict[str, Any]:
        dev = pycuda_driver.Context.get_device()
        major, minor = dev.compute_capability()
        integrated = bool(dev.get_attribute(pycuda_driver.device_attribute.INTEGRATED))
        return {"name": dev.name(), "compute_capability": [major, minor], "total_memory": int(dev.total_memory()),
                "integrated": integrated}

    def versions(self) -> Dict[str, int]:
        major, minor, _ = pycuda_driver.get_version()
        return {"driver": int(pycuda_driver.get_driver_version()), "runtime": major * 1000 + minor * 10}


_API: Optional[CudaApi] = None


def get_api(prefer: Optional[str] = None) -> CudaApi:
    """The CUDA back end: ``prefer`` ("cuda-bindings" or "pycuda"), else cuda-bindings when it imports,
    else pycuda. Raises :class:`QvggtError` with the install hint when neither is there."""
    global _API
    if _API is not None and (prefer is None or _API.name == prefer):
        return _API
    order = [prefer] if prefer else ["cuda-bindings", "pycuda"]
    for name in order:
        if name == "cuda-bindings" and is_available("cuda.bindings.runtime"):
            _API = CudaBindingsApi()
            return _API
        if name == "pycuda" and is_available("pycuda.driver"):
            _API = PyCudaApi()
            return _API
        if name not in ("cuda-bindings", "pycuda"):
            raise QvggtError(f"unknown CUDA back end {name!r}; choose cuda-bindings or pycuda")
    raise QvggtError(NO_CUDA_PYTHON)


class DeviceBuffer:
    """A device allocation that grows on demand (never shrinks) and frees itself on ``free()``."""

    def __init__(self, api: CudaApi, nbytes: int = 0):
        self.api = api
        self.ptr = 0
        self.nbytes = 0
        if nbytes:
            self.reserve(nbytes)

    def reserve(self, nbytes: int) -> int:
        """Make room for ``nbytes``; returns the (possibly new) pointer."""
        if nbytes > self.nbytes:
            self.free()
            self.ptr = self.api.malloc(nbytes)
            self.nbytes = int(nbytes)
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self.api.free(self.ptr)
        self.ptr, self.nbytes = 0, 0
