"""Weights in ONNX form: INT4 packing, one consolidated external-data file, raw reads.

ONNX INT4 (``TensorProto.INT4``, opset 21): signed two's-complement nibbles, two per byte, over
the *flattened* tensor, element ``2j`` in the low nibble of byte ``j`` (odd element counts pad the
last high nibble with 0). This differs from the canonical recipe format
(:mod:`qvggt_deploy.quant.quantizer`: ``[N, K/2]``, value ``q + 8``), so the two are converted
here and only here.

onnx-graphsurgeon corrupts INT4 constants whose ``.values`` are read and exported again, so every
weight enters the graph as ``gs.Constant(name, LazyValues(TensorProto))`` made here, and passes read
raw bytes with :func:`read_array` instead of ``.values``.

:class:`TensorStore` decides where bytes live: with an external-data file, float weights are
streamed to it as they are made (peak memory stays one tensor above the model's) and everything
else is appended at :meth:`TensorStore.save`, so the ``.onnx`` file holds the graph and one
``<name>.onnx.data`` file holds every weight, 4 KiB-aligned.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.walk import iter_graphs
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger

onnx = lazy_import("onnx")
gs = lazy_import("onnx_graphsurgeon")
gs_tensor = lazy_import("onnx_graphsurgeon.ir.tensor")

logger = get_logger(__name__)

ALIGN = 4096
EXTERNAL_MIN_BYTES = 1024  # smaller tensors stay inside the .onnx file
INT4 = 22  # onnx.TensorProto.INT4
UINT4 = 21


def pack_onnx_int4(q: np.ndarray) -> bytes:
    """int8 values in [-8, 7] (any shape) -> ONNX INT4 raw bytes (flattened, low nibble first)."""
    flat = np.ascontiguousarray(q, dtype=np.int8).reshape(-1)
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise QvggtError("INT4 packing: values outside [-8, 7]")
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nib = (flat.view(np.uint8) & 0x0F)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_onnx_int4(raw: bytes, shape: Sequence[int], signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_onnx_int4`: raw bytes -> int8 array of ``shape``."""
    count = int(np.prod(shape)) if len(shape) else 1
    b = np.frombuffer(raw, dtype=np.uint8)
    if b.size != (count + 1) // 2:
        raise QvggtError(f"INT4 tensor: {b.size} bytes for {count} elements (expected {(count + 1) // 2})")
    low, high = (b & 0x0F).astype(np.int8), (b >> 4).astype(np.int8)
    vals = np.stack([low, high], axis=-1).reshape(-1)[:count]
    if signed:
        vals = np.where(vals > 7, vals - 16, vals).astype(np.int8)
    return vals.reshape(shape)


def canonical_from_onnx_int4(raw: bytes, K: int, N: int) -> np.ndarray:
    """ONNX INT4 ``[K, N]`` (MatMul layout) raw bytes -> the canonical recipe format uint8
    ``[N, K/2]`` (low nibble = even k, value q + 8), which is also MatMulNBits' B.

    Works on nibbles: ``q + 8`` of a two's-complement nibble is the nibble XOR 8.
    """
    b = np.frombuffer(raw, dtype=np.uint8)
    if b.size != (K * N + 1) // 2 or K % 2:
        raise QvggtError(f"INT4 [{K}, {N}]: {b.size} bytes (expected {(K * N + 1) // 2}, K even)")
    u = np.empty(b.size * 2, dtype=np.uint8)
    np.bitwise_and(b, 0x0F, out=u[0::2])
    np.right_shift(b, 4, out=u[1::2])
    u ^= 8
    nk = u[: K * N].reshape(K, N).T  # [N, K] view
    packed = np.left_shift(nk[:, 1::2], 4)
    packed |= nk[:, 0::2]
    return packed


def int4_raw(const) -> bytes:
    """Raw bytes of an INT4 gs.Constant (inline or external), never through ``.values``."""
    values = const._values
    return _raw_bytes(values.tensor, getattr(values, "_qvggt_base_dir", None))


def _raw_bytes(tensor, base_dir: Optional[Path]) -> bytes:
    """The raw little-endian bytes of a TensorProto (inline or external)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        if base_dir is None:
            raise QvggtError(f"tensor {tensor.name}: external data but no base folder to read it from")
        path = Path(base_dir) / info["location"]
        try:
            with open(path, "rb") as f:
                f.seek(int(info.get("offset", 0)))
                length = info.get("length")
                return f.read(int(length)) if length is not None else f.read()
        except OSError as exc:
            raise QvggtError(f"tensor {tensor.name}: cannot read external data {path}: {exc}") from exc
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return onnx.numpy_helper.to_array(tensor).tobytes()


def read_array(tensor, base_dir: Optional[Path] = None) -> np.ndarray:
    """Values of a TensorProto, or of a gs.Constant without touching ``.values``.

    INT4/UINT4 come back unpacked as int8/uint8 arrays of the tensor's shape (never re-exported:
    callers build new tensors with :meth:`TensorStore.add`).
    """
    if hasattr(tensor, "_values"):  # gs.Constant
        values = tensor._values
        if isinstance(values, gs_tensor.LazyValues):
            tensor = values.tensor
            base_dir = base_dir or getattr(values, "_qvggt_base_dir", None)
        else:
            return np.asarray(values)
    dims = list(tensor.dims)
    if tensor.data_type in (INT4, UINT4):
        return unpack_onnx_int4(_raw_bytes(tensor, base_dir), dims, signed=tensor.data_type == INT4)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        return np.frombuffer(_raw_bytes(tensor, base_dir), dtype=dtype).reshape(dims)
    return onnx.numpy_helper.to_array(tensor)


def constant_dtype(const) -> int:
    """ONNX data type of a gs.Constant (INT4-safe)."""
    values = const._values
    if isinstance(values, gs_tensor.LazyValues):
        return values.tensor.data_type
    return onnx.helper.np_dtype_to_tensor_dtype(np.asarray(values).dtype)


def _save_or_clean(model, tmp: Path) -> None:
    """``onnx.save_model`` to ``tmp``; a partial file is removed if it fails (disk full, kill)."""
    try:
        onnx.save_model(model, str(tmp))
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _replace_or_clean(tmp: Path, path: Path) -> None:
    """``os.replace``; the temporary file goes if the rename fails (a folder at ``path``)."""
    try:
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


class TensorStore:
    """Makes weight constants and writes them, inline or into one external-data file.

    Args:
        external (path, optional): the ``.onnx`` path whose ``<name>.data`` file receives every
            tensor of at least ``EXTERNAL_MIN_BYTES``. None keeps all bytes inline (models under
            2 GB). Defaults to None.
    """

    def __init__(self, onnx_path: Optional[os.PathLike] = None, external: bool = False):
        self.external = external
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self.data_name = f"{self.onnx_path.name}.data" if self.onnx_path else None
        self._file = None
        self._offset = 0
        if external:
            if self.onnx_path is None:
                raise QvggtError("external data needs the output .onnx path")
            self.data_tmp = self.onnx_path.with_name(f".{self.data_name}.tmp")
            self._file = open(self.data_tmp, "wb")

    # ---- making tensors ---------------------------------------------------------------------
    @staticmethod
    def _proto(name: str, data_type: int, shape: Sequence[int]):
        proto = onnx.TensorProto()
        proto.name = name
        proto.data_type = data_type
        proto.dims.extend(int(d) for d in shape)
        return proto

    def add(self, name: str, array: np.ndarray, stream: bool = False):
        """A gs.Constant holding ``array``.

        ``stream=True`` writes the bytes to the external file now (for weights that no later pass
        rewrites), so memory stays flat; otherwise they stay in memory until :meth:`save`.
        """
        array = np.ascontiguousarray(array)
        proto = self._proto(name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
        if stream and self.external and array.nbytes >= EXTERNAL_MIN_BYTES:
            self._write_external(proto, array)
        else:
            proto.raw_data = array.tobytes()
        return self._wrap(proto)

    def add_int4(self, name: str, q: np.ndarray):
        """A gs.Constant of ONNX type INT4 from int8 values ``q`` in [-8, 7] (kept in memory)."""
        proto = self._proto(name, INT4, q.shape)
        proto.raw_data = pack_onnx_int4(q)
        return self._wrap(proto)

    def _wrap(self, proto):
        const = gs.Constant(proto.name, gs_tensor.LazyValues(proto))
        if self.external:
            const._values._qvggt_base_dir = self.data_tmp.parent
        return const

    def _write_external(self, proto, data) -> None:
        pad = (-self._offset) % ALIGN
        if pad:
            self._file.write(b"\0" * pad)
            self._offset += pad
        if isinstance(data, np.ndarray):
            buf = memoryview(np.ascontiguousarray(data)).cast("B")
        else:
            buf = memoryview(data)
        self._file.write(buf)
        length = buf.nbytes
        del proto.external_data[:]
        # While building, the location is the temporary file; save() renames it.
        for key, value in (("location", self.data_tmp.name), ("offset", str(self._offset)), ("length", str(length))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, value
        proto.data_location = onnx.TensorProto.EXTERNAL
        proto.ClearField("raw_data")
        self._offset += length

    # ---- saving ------------------------------------------------------------------------------
    def save(self, model, path: os.PathLike) -> Path:
        """Write ``model`` (a ModelProto) to ``path``; with external data, append every inline
        tensor of at least ``EXTERNAL_MIN_BYTES`` to the data file and point all of them at
        ``<path name>.data``. Files appear atomically (temporary names, then renames)."""
        path = Path(path)
        if not self.external:
            if model.ByteSize() > 2_000_000_000:
                raise QvggtError(f"{path}: the model is over 2 GB; export it with external data")
            tmp = path.with_name(f".{path.name}.tmp")
            _save_or_clean(model, tmp)
            _replace_or_clean(tmp, path)
            stale = path.with_name(f"{path.name}.data")  # an earlier external export to the same name
            if stale.exists():
                stale.unlink()
            return path
        if path != self.onnx_path:
            raise QvggtError(f"TensorStore was opened for {self.onnx_path}, not {path}")
        tensors = [t for g in iter_graphs(model.graph) for t in g.initializer]  # Loop bodies too
        for tensor in tensors:
            if tensor.data_location != onnx.TensorProto.EXTERNAL and tensor.HasField("raw_data") \
                    and len(tensor.raw_data) >= EXTERNAL_MIN_BYTES:
                self._write_external(tensor, tensor.raw_data)
        self._file.close()
        self._file = None
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                for entry in tensor.external_data:
                    if entry.key == "location":
                        entry.value = self.data_name
        tmp = path.with_name(f".{path.name}.tmp")
        _save_or_clean(model, tmp)
        if path.is_dir():
            tmp.unlink()
            raise QvggtError(f"{path}: is a folder, not replaced by an ONNX file")
        # Never leave an old graph next to new data (it would read garbage at the old offsets):
        # the old graph goes first, then the data, then the new graph.
        if path.exists():
            path.unlink()
        os.replace(self.data_tmp, path.with_name(self.data_name))
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        """Drop a half-written data file (after an error)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.external and self.data_tmp.exists():
            self.data_tmp.unlink()
