"""Loading and saving VGGT weights (.safetensors, .pt, .pth) strictly and without a second copy.

``load_checkpoint`` validates the whole file (keys, shapes, dtypes) against the model before it
touches a single parameter, so on any error the model is unchanged. Two memory strategies:

- model built on the meta device (``build_model(..., device="meta")``): the checkpoint's tensors
  become the parameters (``assign=True``); nothing is copied. For ``.pt`` files the tensors are
  memory-mapped (``torch.load(mmap=True, weights_only=True)``).
- materialised model: tensors are copied in one at a time (safetensors streams them), so peak
  memory is the model plus one tensor.
"""
from __future__ import annotations

import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_path
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return "torch"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise QvggtError(f"{path}: not a checkpoint (expected .safetensors, .pt or .pth)")


class _Source:
    """Read-only view of a checkpoint's tensors: names, (shape, dtype) metadata, and tensors on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.format = _format_of(path)
        self._sd: Optional[Dict[str, torch.Tensor]] = None
        self._st = None
        if self.format == "safetensors":
            self._open_safetensors()
        else:
            self._open_torch()

    def _open_safetensors(self) -> None:
        from safetensors import safe_open

        size = self.path.stat().st_size
        try:
            with open(self.path, "rb") as f:
                header_len = struct.unpack("<Q", f.read(8))[0]
            if header_len > size - 8:
                raise QvggtError(f"{self.path}: truncated or corrupt safetensors file "
                                 f"(header claims {header_len} bytes, file has {size})")
            self._st = safe_open(str(self.path), framework="pt", device="cpu")
            self._meta = {}
            for name in self._st.keys():
                sl = self._st.get_slice(name)
                self._meta[name] = (tuple(sl.get_shape()), _st_dtype(sl.get_dtype()))
        except QvggtError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise QvggtError(f"{self.path}: truncated, corrupt or not a safetensors checkpoint ({exc})") from exc

    def _open_torch(self) -> None:
        if not zipfile.is_zipfile(self.path):
            raise QvggtError(f"{self.path}: not a PyTorch checkpoint (not a zip archive; truncated or "
                             f"saved with the legacy format?)")
        try:
            obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise QvggtError(f"{self.path}: cannot be read as a PyTorch checkpoint with weights_only=True "
                             f"(truncated, corrupt, or contains non-tensor objects): {exc}") from exc
        self._sd = _unwrap_state_dict(obj, self.path)
        self._meta = {k: (tuple(v.shape), v.dtype) for k, v in self._sd.items()}

    def keys(self) -> List[str]:
        return list(self._meta)

    def meta(self, name: str) -> Tuple[Tuple[int, ...], torch.dtype]:
        return self._meta[name]

    def tensor(self, name: str) -> torch.Tensor:
        if self._sd is not None:
            return self._sd[name]
        try:
            return self._st.get_tensor(name)
        except Exception as exc:
            raise QvggtError(f"{self.path}: tensor {name!r} cannot be read (truncated or corrupt file): {exc}") from exc


def _st_dtype(name: str) -> torch.dtype:
    table = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
             "U8": torch.uint8, "BOOL": torch.bool}
    return table.get(name, torch.float32)


def _unwrap_state_dict(obj, path: Path) -> Dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise QvggtError(f"{path}: not a checkpoint (expected a dict of tensors, got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise QvggtError(f"{path}: not a state dict: {len(bad)} entries are not tensors (first: {bad[0]!r})")
    return dict(obj)


def _first(names: Iterable[str], n: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else f" ({len(names)})")


def _validate(source: _Source, expected: Mapping[str, Tuple[Tuple[int, ...], torch.dtype]], label: str) -> None:
    have = set(source.keys())
    want = set(expected)
    missing, unexpected = want - have, have - want
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        raise QvggtError(f"{source.path} does not match the {label} model: " + "; ".join(parts))
    for name in sorted(want):
        shape, dtype = source.meta(name)
        exp_shape, exp_dtype = expected[name]
        if tuple(shape) != tuple(exp_shape):
            raise QvggtError(f"{source.path}: shape mismatch for {name!r}: checkpoint {list(shape)}, "
                             f"{label} model {list(exp_shape)} (a checkpoint of another preset?)")
        if dtype != exp_dtype:
            raise QvggtError(f"{source.path}: dtype mismatch for {name!r}: checkpoint {dtype}, "
                             f"model {exp_dtype}")


def _finite(tensor: torch.Tensor, name: str, path: Path) -> torch.Tensor:
    """NaN/Inf weights (a diverged run, a bad conversion) would surface much later as NaN outputs."""
    if tensor.is_floating_point():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise QvggtError(f"{path}: tensor {name} has {bad} NaN/Inf values of {tensor.numel()}; "
                             f"the checkpoint is corrupt (a diverged training run?)")
    return tensor


def load_checkpoint(path: PathLike, model: nn.Module) -> nn.Module:
    """Load weights into ``model`` strictly (every key, shape and dtype must match).

    Args:
        path: ``.safetensors``, ``.pt`` or ``.pth`` (a plain state dict, or a dict with a
            ``model``/``state_dict`` entry). ``.pt`` files are read with ``weights_only=True``.
        model: a VGGT (or any module). If its parameters are on the meta device they are replaced
            by the checkpoint's tensors without a copy.

    Returns:
        the model, in eval mode.

    Raises:
        QvggtError: missing/unexpected keys (the first few named, with counts), shape or dtype
            mismatch, NaN/Inf values (the tensor named), a truncated or corrupt file, or a file
            that is not a checkpoint. The model
            is left untouched.
    """
    path = Path(path)
    if not path.is_file():
        raise QvggtError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise QvggtError(f"{path}: empty file, not a checkpoint")
    source = _Source(path)
    expected = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    label = getattr(getattr(model, "cfg", None), "name", type(model).__name__)
    _validate(source, expected, label)

    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta:
        state = {name: _finite(source.tensor(name), name, path) for name in expected}
        model.load_state_dict(state, strict=True, assign=True)
    else:
        for name in expected:  # all checked before the first copy: the model stays untouched
            _finite(source.tensor(name), name, path)
        params = model.state_dict()
        with torch.no_grad():
            for name in expected:  # one tensor alive at a time (safetensors streams them)
                params[name].copy_(source.tensor(name))
    logger.info("loaded %d tensors from %s", len(expected), path)
    return model.eval()


def iter_state_dict(path: PathLike) -> Iterator[Tuple[str, torch.Tensor]]:
    """Yield (name, tensor) from a checkpoint one at a time (for inspection tools)."""
    source = _Source(Path(path))
    for name in source.keys():
        yield name, source.tensor(name)


def save_checkpoint(model_or_state: Union[nn.Module, Mapping[str, torch.Tensor]], path: PathLike,
                    metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write a state dict as ``.safetensors`` (or ``.pt``/``.pth`` by suffix), atomically."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
        else:
            torch.save(state, tmp)
    return path


ASSETS = Path(__file__).resolve().parent.parent / "assets"
EMBEDDED_CHECKPOINTS = {"tiny": ASSETS / "vggt_tiny.safetensors"}


def default_checkpoint(preset: str) -> Optional[Path]:
    """The checkpoint shipped inside the package for ``preset``, if any."""
    path = EMBEDDED_CHECKPOINTS.get(preset)
    return path if path is not None and path.is_file() else None


#: Presets whose random weights are their purpose (fast unit tests): no --allow-random-weights needed.
TEST_PRESETS = frozenset({"micro"})
#: The file of a Hugging Face model repository that holds the weights (as facebook/VGGT-1B).
HUB_FILENAME = "model.pt"
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def parse_hub_id(spec: str) -> Optional[Tuple[str, Optional[str]]]:
    """``owner/name[@revision]`` -> (repo id, revision); None for anything that reads as a file
    (an existing path, a checkpoint suffix, more than one folder)."""
    text = str(spec)
    if Path(text).exists() or text.lower().endswith(_CHECKPOINT_SUFFIXES):
        return None
    match = _HUB_ID.match(text)
    return (match["repo"], match["revision"]) if match else None


def resolve_checkpoint(spec: PathLike) -> Path:
    """A local checkpoint path as given, or ``owner/name[@revision]`` fetched through
    huggingface_hub (its cache; the repository's ``model.pt``)."""
    hub = parse_hub_id(str(spec))
    if hub is None:
        return Path(spec)
    repo, revision = hub
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise QvggtError(f"--checkpoint {spec} is a Hugging Face model id, which needs huggingface_hub: "
                         f"pip install 'qvggt-deploy[hub]' (or pass a local checkpoint file)") from None
    where = f"{repo}{'@' + revision if revision else ''}"
    download = (f"on a machine with network run `hf download {repo} {HUB_FILENAME}"
                f"{' --revision ' + revision if revision else ''}` and pass the file it prints as --checkpoint PATH")
    try:
        path = huggingface_hub.hf_hub_download(repo, HUB_FILENAME, revision=revision)
    except hub_errors.LocalEntryNotFoundError:
        raise QvggtError(f"{where}/{HUB_FILENAME} is not in the Hugging Face cache and the Hub cannot be reached "
                         f"(offline?): {download}") from None
    except hub_errors.RevisionNotFoundError:
        raise QvggtError(f"{repo} has no revision {revision!r} on the Hugging Face Hub") from None
    except hub_errors.EntryNotFoundError:
        raise QvggtError(f"{where} on the Hugging Face Hub has no {HUB_FILENAME} (the file qvggt loads)") from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.HFValidationError) as exc:
        raise QvggtError(f"{where}: no such Hugging Face model repository, or it needs a login "
                         f"(`hf auth login`): {str(exc).splitlines()[0]}") from None
    except (hub_errors.HfHubHTTPError, OSError) as exc:
        raise QvggtError(f"cannot download {where}/{HUB_FILENAME}: {str(exc).splitlines()[0]}; {download}") from None
    logger.info("%s -> %s", where, path)
    return Path(path)


def load_model(preset: str, checkpoint: Optional[PathLike] = None, device="cpu",
               allow_random: bool = False) -> nn.Module:
    """Build ``preset`` and load weights: ``checkpoint`` (a path or ``owner/name[@revision]`` on
    the Hugging Face Hub), else the embedded one, else random weights when ``allow_random`` (or
    for a test preset).

    With a checkpoint the model is built on the meta device and the checkpoint's tensors are
    assigned (one copy of the weights in memory), then moved to ``device``.

    Raises:
        QvggtError: no weights for ``preset`` and random ones not allowed (random weights give
            plausible-looking, meaningless predictions).
    """
    from qvggt_deploy.model.vggt import build_model

    path = resolve_checkpoint(checkpoint) if checkpoint else default_checkpoint(preset)
    if path is None:
        if not (allow_random or preset in TEST_PRESETS):
            hint = " facebook/VGGT-1B (the official weights) or a file" if preset == "vggt-1b" else ""
            raise QvggtError(f"preset {preset!r} has no embedded weights: pass --checkpoint{hint}, or "
                             f"--allow-random-weights to run on random weights (meaningless predictions)")
        logger.warning("no checkpoint for preset %s: using RANDOM weights (predictions are meaningless)", preset)
        return build_model(preset, device=device)
    model = build_model(preset, device="meta")
    load_checkpoint(path, model)
    return model.to(device)


@dataclass(frozen=True)
class ModelSource:
    """Which model a run uses (``--preset``, ``--checkpoint``, ``--allow-random-weights``)."""

    preset: str = "tiny"
    checkpoint: Optional[str] = None
    allow_random: bool = False

    def load(self, device="cpu") -> nn.Module:
        return load_model(self.preset, self.checkpoint, device=device, allow_random=self.allow_random)
