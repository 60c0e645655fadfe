"""One runner per backend name for a user's photos: PyTorch (preset, checkpoint, recipe), ONNX
Runtime (an exported ``.onnx``) or TensorRT (an ``.engine``, TensorRT 10 imported on activation)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

from qvggt_deploy.backends import BACKENDS, get_backend
from qvggt_deploy.errors import QvggtError

MODEL_FILES = {"ort": ".onnx file (qvggt export)", "trt": ".engine file (qvggt build-engine)"}


@dataclass(frozen=True)
class ModelInfo:
    """What a backend will run: the preset and the fixed input size (None = any) of its file."""

    backend: str
    model: Optional[Path] = None
    preset: str = "tiny"
    size_hw: Optional[Tuple[int, int]] = None
    metadata: Dict[str, str] = field(default_factory=dict)


def _size(meta: Dict[str, str]) -> Optional[Tuple[int, int]]:
    h, w = str(meta.get("height", "")), str(meta.get("width", ""))
    return (int(h), int(w)) if h.isdigit() and w.isdigit() else None


def describe_model(backend: str, model=None, preset: str = "tiny") -> ModelInfo:
    """Check the backend and model file and read the file's qvggt metadata (ONNX properties, or
    the engine's sidecar), without loading weights."""
    if backend not in BACKENDS:
        raise QvggtError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        if model is not None:
            raise QvggtError("--model names the file of the ort and trt backends; the torch backend takes "
                             "--preset, --checkpoint and --recipe")
        return ModelInfo("torch", preset=preset)
    if model is None:
        raise QvggtError(f"--backend {backend} needs --model, the {MODEL_FILES[backend]}")
    path = Path(model)
    if not path.is_file():
        raise QvggtError(f"--model {path}: file not found")
    if backend == "ort":
        from qvggt_deploy.graph.metadata import read_metadata

        meta = read_metadata(path)
    else:
        from qvggt_deploy.trt.sidecar import read_sidecar

        meta = dict(((read_sidecar(path) or {}).get("onnx") or {}).get("metadata") or {})
    return ModelInfo(backend, path, meta.get("preset", preset), _size(meta), meta)


def make_runner(info: ModelInfo, *, checkpoint=None, recipe=None, device="cpu", dtype: Optional[str] = None,
                threads: Optional[int] = None, allow_random: bool = False):
    """A runner for ``info`` (not yet active).

    Args:
        info: from :func:`describe_model`.
        checkpoint, recipe: torch only (an exported file has its weights and recipe baked in).
        allow_random: torch only: run a preset without weights on random ones. Defaults to False.
        device: torch only; ORT runs on the CPU, TensorRT on its GPU. Defaults to "cpu".
        dtype: torch autocast dtype ("bfloat16", "float16") or None for fp32. Defaults to None.
        threads: CPU threads (torch, ORT). Defaults to the library's choice.
    """
    import torch

    if info.backend == "torch":
        from qvggt_deploy.backends.torch.loader import ModelFromPreset

        loader = ModelFromPreset(info.preset, checkpoint, recipe, threads=threads, device=device,
                                 allow_random=allow_random)
        return get_backend("torch")(loader, device=device, dtype=dtype)
    given = [name for name, value in (("--checkpoint", checkpoint), ("--recipe", recipe), ("--dtype", dtype))
             if value]
    if torch.device(device).type != "cpu" and info.backend == "ort":
        given.append("--device")
    if given:
        raise QvggtError(f"{', '.join(given)} apply to the torch backend; the {info.backend} backend runs "
                         f"{info.model} as it was built")
    if info.backend == "ort":
        from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx

        return get_backend("ort")(SessionFromOnnx(info.model, threads=threads))
    return get_backend("trt")(str(info.model))
