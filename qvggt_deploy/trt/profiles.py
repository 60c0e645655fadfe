"""Deployment profiles: one YAML file per target device (``engines/*.yaml``).

A profile says what the device can hold and how to build for it::

    name: orin-nano-8gb
    device:
      description: Jetson Orin Nano 8GB developer kit, JetPack 6.x (TensorRT 10.3, CUDA 12.6)
      compute_capability: [8, 7]
      memory_gib: 7.4            # what CUDA can allocate from (unified: MemTotal of /proc/meminfo)
      unified_memory: true       # Jetson: CPU and GPU share DRAM
      os_reserved_gib: 1.3       # OS, services, our Python process (subtracted on unified memory)
      cuda_context_gib: 0.6      # CUDA context + TensorRT/cuBLAS libraries once loaded
    model:
      preset: vggt-1b
      height: 350                # fixed per engine, multiples of 14
      width: 518
      weights: w4a16             # precision of the Linear layers, for estimates without an ONNX file
      attention: fused           # fused (MHA kernel, O(N) memory) or explicit (O(N^2) scores)
    frames: {min: 1, opt: 4, max: 6}   # optimisation profile of the dynamic ``frames`` dim
    builder:
      workspace_mib: 512         # MemoryPoolType.WORKSPACE
      tactic_shared_memory_kib: null   # MemoryPoolType.TACTIC_SHARED_MEMORY (null: device max)
      optimization_level: 3      # builder_optimization_level, 0..5
      max_aux_streams: 0         # 0: one stream, lowest activation memory
      timing_cache: orin-nano-8gb.timing   # relative to the engine's folder; null: none
      version_compatible: false  # BuilderFlag.VERSION_COMPATIBLE (+ plugins_to_serialize)
    split: auto                  # true | false | auto (decided by the memory estimate)

Unknown keys are errors (a typo must not silently fall back to a default). Every error names the
file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from qvggt_deploy.errors import QvggtError

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10

SPLIT_CHOICES = (True, False, "auto")
ATTENTION_CHOICES = ("fused", "explicit")
WEIGHT_CHOICES = ("fp32", "fp16", "w8a16", "w4a16")
MAX_OPTIMIZATION_LEVEL = 5  # TensorRT 10.3: "Valid values include integers from 0 to ... 5"
MAX_TACTIC_SHARED_MEMORY_KIB = 1024 * 1024  # "This value must be less than 1GiB"


@dataclass(frozen=True)
class DeviceSpec:
    description: str
    memory_gib: float
    unified_memory: bool
    os_reserved_gib: float = 0.0
    cuda_context_gib: float = 0.5
    compute_capability: Optional[Tuple[int, int]] = None

    @property
    def budget_bytes(self) -> int:
        """Bytes an engine may use: device memory less the OS share (unified memory only) and the
        CUDA context."""
        reserved = self.os_reserved_gib if self.unified_memory else 0.0
        return int((self.memory_gib - reserved - self.cuda_context_gib) * GIB)


@dataclass(frozen=True)
class ModelSpec:
    preset: str = "vggt-1b"
    height: int = 350
    width: int = 518
    weights: str = "w4a16"
    attention: str = "fused"


@dataclass(frozen=True)
class FrameRange:
    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class BuilderSpec:
    workspace_mib: int = 1024
    tactic_shared_memory_kib: Optional[int] = None
    optimization_level: int = 3
    max_aux_streams: Optional[int] = 0
    timing_cache: Optional[str] = None
    version_compatible: bool = False

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_mib) * MIB


@dataclass(frozen=True)
class Profile:
    name: str
    device: DeviceSpec
    model: ModelSpec
    frames: FrameRange
    builder: BuilderSpec
    split: Union[bool, str] = "auto"
    path: Optional[Path] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form (recorded in the sidecar)."""
        out = dataclasses.asdict(self)
        out["path"] = str(self.path) if self.path else None
        return out

    def timing_cache_path(self, engine_path: Union[str, Path]) -> Optional[Path]:
        """The timing cache file for an engine written to ``engine_path`` (relative paths are taken
        from the engine's folder), or None."""
        if not self.builder.timing_cache:
            return None
        p = Path(self.builder.timing_cache).expanduser()
        return p if p.is_absolute() else Path(engine_path).parent / p


# ---- parsing -------------------------------------------------------------------------------------
def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if key else source


def _check_keys(section: Mapping[str, Any], allowed, source: str, prefix: str) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise QvggtError(f"{_where(source, prefix + str(key))}: unknown key{hint}; "
                             f"allowed: {', '.join(allowed)}")


def _section(doc: Mapping[str, Any], key: str, source: str, required: bool = True) -> Mapping[str, Any]:
    if key not in doc:
        if required:
            raise QvggtError(f"{source}: missing section '{key}'")
        return {}
    value = doc[key]
    if not isinstance(value, Mapping):
        raise QvggtError(f"{_where(source, key)}: must be a mapping, got {type(value).__name__}")
    return value


def _number(section, key, source, prefix, kind=float, required=True, default=None, minimum=None,
            maximum=None, allow_none=False):
    name = prefix + key
    if key not in section:
        if required:
            raise QvggtError(f"{_where(source, name)}: required")
        return default
    value = section[key]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QvggtError(f"{_where(source, name)}: must be a number, got {value!r}")
    if kind is int and int(value) != value:
        raise QvggtError(f"{_where(source, name)}: must be an integer, got {value!r}")
    value = kind(value)
    if minimum is not None and value < minimum:
        raise QvggtError(f"{_where(source, name)}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise QvggtError(f"{_where(source, name)}: must be <= {maximum}, got {value}")
    return value


def _choice(section, key, source, prefix, choices, default):
    value = section.get(key, default)
    if value not in choices:
        raise QvggtError(f"{_where(source, prefix + key)}: must be one of "
                         f"{', '.join(str(c).lower() for c in choices)}, got {value!r}")
    return value


def _bool(section, key, source, prefix, default):
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise QvggtError(f"{_where(source, prefix + key)}: must be true or false, got {value!r}")
    return value


def parse_profile(doc: Any, source: str = "<profile>", path: Optional[Path] = None) -> Profile:
    """Validate a profile document (the parsed YAML) and return a :class:`Profile`.

    Raises:
        QvggtError: naming ``source`` and the offending key.
    """
    from qvggt_deploy.model.presets import PRESETS

    if not isinstance(doc, Mapping):
        raise QvggtError(f"{source}: a profile must be a YAML mapping, got {type(doc).__name__}")
    _check_keys(doc, ("name", "device", "model", "frames", "builder", "split"), source, "")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise QvggtError(f"{_where(source, 'name')}: required (a non-empty string)")

    d = _section(doc, "device", source)
    _check_keys(d, [f.name for f in dataclasses.fields(DeviceSpec)], source, "device.")
    cc = d.get("compute_capability")
    if cc is not None:
        if (not isinstance(cc, (list, tuple)) or len(cc) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in cc)):
            raise QvggtError(f"{_where(source, 'device.compute_capability')}: must be [major, minor], "
                             f"got {cc!r}")
        cc = (int(cc[0]), int(cc[1]))
    device = DeviceSpec(
        description=str(d.get("description", name)),
        memory_gib=_number(d, "memory_gib", source, "device.", minimum=0.5),
        unified_memory=_bool(d, "unified_memory", source, "device.", None),
        os_reserved_gib=_number(d, "os_reserved_gib", source, "device.", required=False, default=0.0,
                                minimum=0.0),
        cuda_context_gib=_number(d, "cuda_context_gib", source, "device.", required=False, default=0.5,
                                 minimum=0.0),
        compute_capability=cc,
    )
    if device.budget_bytes <= 0:
        raise QvggtError(f"{_where(source, 'device')}: memory_gib {device.memory_gib} leaves nothing after "
                         f"os_reserved_gib {device.os_reserved_gib} and cuda_context_gib "
                         f"{device.cuda_context_gib}")

    m = _section(doc, "model", source, required=False)
    _check_keys(m, [f.name for f in dataclasses.fields(ModelSpec)], source, "model.")
    preset = m.get("preset", ModelSpec.preset)
    if preset not in PRESETS:
        raise QvggtError(f"{_where(source, 'model.preset')}: unknown preset {preset!r}; choose one of "
                         f"{', '.join(sorted(PRESETS))}")
    model = ModelSpec(
        preset=preset,
        height=_number(m, "height", source, "model.", kind=int, required=False, default=ModelSpec.height,
                       minimum=14),
        width=_number(m, "width", source, "model.", kind=int, required=False, default=ModelSpec.width,
                      minimum=14),
        weights=_choice(m, "weights", source, "model.", WEIGHT_CHOICES, ModelSpec.weights),
        attention=_choice(m, "attention", source, "model.", ATTENTION_CHOICES, ModelSpec.attention),
    )
    for key in ("height", "width"):
        if getattr(model, key) % 14:
            raise QvggtError(f"{_where(source, 'model.' + key)}: must be a multiple of the patch size 14, "
                             f"got {getattr(model, key)}")

    f = _section(doc, "frames", source)
    _check_keys(f, ("min", "opt", "max"), source, "frames.")
    frames = FrameRange(*(_number(f, k, source, "frames.", kind=int, minimum=1) for k in ("min", "opt", "max")))
    if not frames.min <= frames.opt <= frames.max:
        raise QvggtError(f"{_where(source, 'frames')}: need min <= opt <= max, got min {frames.min}, "
                         f"opt {frames.opt}, max {frames.max}")

    b = _section(doc, "builder", source, required=False)
    _check_keys(b, [fl.name for fl in dataclasses.fields(BuilderSpec)], source, "builder.")
    cache = b.get("timing_cache", BuilderSpec.timing_cache)
    if cache is not None and (not isinstance(cache, str) or not cache):
        raise QvggtError(f"{_where(source, 'builder.timing_cache')}: must be a file name or null, got {cache!r}")
    builder = BuilderSpec(
        workspace_mib=_number(b, "workspace_mib", source, "builder.", kind=int, required=False,
                              default=BuilderSpec.workspace_mib, minimum=1),
        tactic_shared_memory_kib=_number(b, "tactic_shared_memory_kib", source, "builder.", kind=int,
                                         required=False, default=None, minimum=1,
                                         maximum=MAX_TACTIC_SHARED_MEMORY_KIB - 1, allow_none=True),
        optimization_level=_number(b, "optimization_level", source, "builder.", kind=int, required=False,
                                   default=BuilderSpec.optimization_level, minimum=0,
                                   maximum=MAX_OPTIMIZATION_LEVEL),
        max_aux_streams=_number(b, "max_aux_streams", source, "builder.", kind=int, required=False,
                                default=BuilderSpec.max_aux_streams, minimum=0, allow_none=True),
        timing_cache=cache,
        version_compatible=_bool(b, "version_compatible", source, "builder.", False),
    )
    split = doc.get("split", "auto")
    if isinstance(split, str):
        split = split.lower()
    if split not in SPLIT_CHOICES or (split in (0, 1) and not isinstance(split, bool)):
        raise QvggtError(f"{_where(source, 'split')}: must be true, false or auto, got {doc.get('split')!r}")
    return Profile(name=name, device=device, model=model, frames=frames, builder=builder, split=split,
                   path=path)


def load_profile(path: Union[str, Path]) -> Profile:
    """Read and validate ``engines/<name>.yaml`` (or any path)."""
    from qvggt_deploy.lazy import import_or_raise

    yaml = import_or_raise("yaml")
    path = Path(path)
    if not path.is_file():
        raise QvggtError(f"{path}: profile not found (the shipped ones are in engines/)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise QvggtError(f"{path}: not valid YAML ({exc})") from exc
    return parse_profile(doc, source=str(path), path=path)
