"""The ``qvggt.*`` metadata of an exported ONNX file: the one writer and reader of those keys.

``qvggt export`` records what it did (preset, size, target, precision plan, recipe digest, passes)
as ONNX ``metadata_props`` named ``qvggt.<field>``, all strings. :class:`ExportMetadata` is the
typed form; :meth:`ExportMetadata.to_props` writes it and :meth:`ExportMetadata.from_props` reads
it back, refusing a file of another format version (``qvggt.format``). Files without a
``qvggt.format`` key are read as the current version (every file this code base wrote carries
``qvggt-onnx/1``). Other ``qvggt.*`` keys (an engine's ``profile``, a split part's ``split`` and
``part``) are kept in :attr:`ExportMetadata.extra`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import import_or_raise

PREFIX = "qvggt."
FORMAT = "qvggt-onnx/1"
#: What a file needs to be read as a qvggt export.
REQUIRED = ("preset", "target", "height", "width")
_BOOLS = ("dense_loop", "calibration_graph")
_INTS = ("height", "width", "tokens_per_frame", "num_special")


@dataclass(frozen=True)
class ExportMetadata:
    """What one exported file holds, typed (field = ``qvggt.<field>`` key).

    ``plan`` maps each Linear to its precision; ``recipe_digest`` is "none" for a float export;
    the ``ort_*`` fields are set on ``--target ort`` files only.
    """

    preset: str
    target: str
    height: int
    width: int
    tokens_per_frame: Optional[int] = None
    num_special: Optional[int] = None
    float_precision: str = "fp32"
    conv_precision: str = "fp32"
    dense_loop: bool = False
    calibration_graph: bool = False
    recipe_digest: str = "none"
    recipe_method: str = "none"  # the recipe's method as JSON, or "none"
    passes: Tuple[str, ...] = ()
    plan: Dict[str, str] = field(default_factory=dict)
    tool: str = ""
    ort_int4: Optional[str] = None
    ort_accuracy_level: Optional[str] = None  # "0".."4" or "session"
    ort_int8_kernel: Optional[str] = None
    ort_compute: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)
    format: str = FORMAT

    @property
    def size_hw(self) -> Tuple[int, int]:
        return self.height, self.width

    def to_strings(self) -> Dict[str, str]:
        """The fields as the file stores them, without the prefix (unset optional fields left out)."""
        out: Dict[str, str] = {"format": self.format}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("format", "extra") or value is None:
                continue
            if f.name in _BOOLS:
                value = str(bool(value)).lower()
            elif f.name == "passes":
                value = ",".join(value)
            elif f.name == "plan":
                value = json.dumps(value)
            out[f.name] = str(value)
        out.update(self.extra)
        return out

    def to_props(self) -> Dict[str, str]:
        """``{"qvggt.<field>": value}``, for ``onnx.helper.set_model_props``."""
        return {PREFIX + k: v for k, v in self.to_strings().items()}

    def write(self, model_proto) -> None:
        """Set the ``qvggt.*`` properties of ``model_proto`` (others are kept)."""
        onnx = import_or_raise("onnx")
        props = {p.key: p.value for p in model_proto.metadata_props if not p.key.startswith(PREFIX)}
        onnx.helper.set_model_props(model_proto, {**props, **self.to_props()})

    @classmethod
    def from_strings(cls, values: Mapping[str, str], source: str = "the file") -> "ExportMetadata":
        """Parse unprefixed strings (as :func:`read_metadata` returns them)."""
        check_format(values, source)
        missing = [k for k in REQUIRED if k not in values]
        if missing:
            raise QvggtError(f"{source}: not a qvggt export (metadata {PREFIX}{missing[0]} missing); "
                             f"make it with `qvggt export`")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "format"}
        kwargs: Dict[str, object] = {}
        for key, value in values.items():
            if key not in names:
                continue
            try:
                if key in _INTS:
                    kwargs[key] = int(value)
                elif key in _BOOLS:
                    kwargs[key] = value == "true"
                elif key == "passes":
                    kwargs[key] = tuple(p for p in value.split(",") if p)
                elif key == "plan":
                    kwargs[key] = dict(json.loads(value))
                else:
                    kwargs[key] = value
            except ValueError:
                raise QvggtError(f"{source}: bad {PREFIX}{key} metadata {value!r}") from None
        extra = {k: v for k, v in values.items() if k not in names and k != "format"}
        return cls(**kwargs, extra=extra, format=values.get("format", FORMAT))

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the file") -> "ExportMetadata":
        """Parse ``{"qvggt.<field>": value}`` (keys without the prefix are ignored)."""
        return cls.from_strings(_strip(props), source)

    @classmethod
    def read(cls, path) -> "ExportMetadata":
        """The metadata of an exported file (its weights are not loaded)."""
        return cls.from_strings(read_metadata(path), str(path))


def extra_props(**fields: str) -> Dict[str, str]:
    """``qvggt.<key>`` properties of files that are not ``qvggt export`` outputs (split parts, the
    engine profile): kept in :attr:`ExportMetadata.extra` when read back."""
    return {PREFIX + k: str(v) for k, v in fields.items()}


def _strip(props: Mapping[str, str]) -> Dict[str, str]:
    return {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}


def check_format(values: Mapping[str, str], source: str = "the file") -> None:
    """Refuse metadata written in another format version (missing = the current one)."""
    found = values.get("format", FORMAT)
    if found != FORMAT:
        raise QvggtError(f"{source} was written in metadata format {found!r}, but this qvggt-deploy reads "
                         f"{FORMAT!r}; re-export it with `qvggt export` from this version")


def proto_metadata(model_proto, source: str = "the file") -> Dict[str, str]:
    """The ``qvggt.*`` properties of a loaded ModelProto without the prefix, format checked
    ({} for a file that is not a qvggt export)."""
    values = _strip({p.key: p.value for p in model_proto.metadata_props})
    if values:
        check_format(values, source)
    return values


def read_metadata(path) -> Dict[str, str]:
    """The ``qvggt.*`` metadata of an ONNX file as strings without the prefix, format checked
    (without loading its weights; {} for a file that is not a qvggt export)."""
    onnx = import_or_raise("onnx")
    path = Path(path)
    if not path.is_file():
        raise QvggtError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own types
        raise QvggtError(f"{path}: not a readable ONNX file ({exc})") from exc
    return proto_metadata(model, str(path))


def is_export(path) -> bool:
    """Whether ``path`` is an ONNX file that ``qvggt export`` wrote."""
    return bool(read_metadata(path))
