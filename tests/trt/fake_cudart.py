"""A stand-in for ``cuda.bindings.runtime`` (CUDA 12 runtime API of cuda-bindings): every call
returns ``(cudaError_t, *values)``; device memory is host bytearrays, copies really copy, events
read the wall clock, a captured graph replays as long as its capture took. For control-flow tests
of the TensorRT runner and bench only. On exit it writes its counters to ``$QVGGT_FAKE_CUDA_LOG``."""
from __future__ import annotations

import atexit
import ctypes
import enum
import json
import os
import time
import types

TOTAL = 8 << 30
_memory = {}
_next = [0x1000]
COUNTS = {"malloc": 0, "htod": 0, "dtoh": 0, "captures": 0, "graph_launches": 0, "events": 0}
_capturing = {}


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0


OK = cudaError_t.cudaSuccess


def cudaGetErrorString(error):
    return OK, b"fake error"


def cudaMalloc(size):
    ptr = _next[0]
    _next[0] += (int(size) + 255) // 256 * 256 + 256
    _memory[ptr] = bytearray(int(size))
    COUNTS["malloc"] += 1
    return OK, ptr


def cudaFree(devPtr):
    _memory.pop(int(devPtr), None)
    return (OK,)


def _buffer(ptr, size):
    base = max(p for p in _memory if p <= ptr)
    buf = _memory[base]
    assert ptr - base + size <= len(buf), "copy beyond the allocation"
    return (ctypes.c_char * len(buf)).from_buffer(buf), ptr - base


def cudaMemcpyAsync(dst, src, count, kind, stream):
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        buf, off = _buffer(int(dst), count)
        ctypes.memmove(ctypes.addressof(buf) + off, src, count)
        COUNTS["htod"] += 1
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        buf, off = _buffer(int(src), count)
        ctypes.memmove(dst, ctypes.addressof(buf) + off, count)
        COUNTS["dtoh"] += 1
    else:
        (dbuf, doff), (sbuf, soff) = _buffer(int(dst), count), _buffer(int(src), count)
        ctypes.memmove(ctypes.addressof(dbuf) + doff, ctypes.addressof(sbuf) + soff, count)
    return (OK,)


class cudaStream_t:
    """Like the real handle: an object whose ``int()`` is the handle (the real calls take either)."""

    def __init__(self, init_value=0):
        self._value = int(init_value)

    def __int__(self):
        return self._value


def cudaStreamCreate():
    return OK, cudaStream_t(7)


def cudaStreamSynchronize(stream):
    return (OK,)


def cudaStreamDestroy(stream):
    return (OK,)


def cudaMemGetInfo():
    return OK, TOTAL - sum(len(b) for b in _memory.values()), TOTAL


def cudaGetDevice():
    return OK, 0


def cudaGetDeviceProperties(device):
    return OK, types.SimpleNamespace(name=b"Fake GPU", major=8, minor=7, totalGlobalMem=TOTAL, integrated=1)


def cudaDriverGetVersion():
    return OK, 12060


def cudaRuntimeGetVersion():
    return OK, 12060


class _Event:
    t = None


def cudaEventCreate():
    COUNTS["events"] += 1
    return OK, _Event()


def cudaEventRecord(event, stream):
    event.t = time.perf_counter()
    return (OK,)


def cudaEventSynchronize(event):
    return (OK,)


def cudaEventElapsedTime(start, end):
    if start.t is None or end.t is None:
        return cudaError_t.cudaErrorInvalidValue, None
    return OK, (end.t - start.t) * 1e3


def cudaEventDestroy(event):
    return (OK,)


def cudaStreamBeginCapture(stream, mode):
    _capturing[stream] = time.perf_counter()
    return (OK,)


def cudaStreamEndCapture(stream):
    COUNTS["captures"] += 1
    return OK, {"seconds": time.perf_counter() - _capturing.pop(stream)}


def cudaGraphInstantiate(graph, flags):
    return OK, dict(graph)


def cudaGraphLaunch(graphExec, stream):
    time.sleep(graphExec["seconds"])
    COUNTS["graph_launches"] += 1
    return (OK,)


def cudaGraphExecDestroy(graphExec):
    return (OK,)


def cudaGraphDestroy(graph):
    return (OK,)


@atexit.register
def _dump():
    path = os.environ.get("QVGGT_FAKE_CUDA_LOG")
    if path:
        with open(path, "w") as f:
            json.dump(COUNTS, f)
