"""The recipe: every quantization decision of a calibration run, as a versioned folder.

Layout::

    RECIPE/
      recipe.json          format, version, model (preset, config, fingerprint), method options,
                           per-layer specs, scale groups, token filtering, weights digest
      weights.safetensors  <layer>.qweight (INT4 packed uint8 [N, K/2] | INT8 int8 [N, K]),
                           <layer>.scales (fp16 [N, K/group]), smooth.<prev>[.rowsA_B] (fp32 [K]),
                           comp.<layer> (fp32 [R, K]: compensation rows of the token rule,
                           docs/method.md; listed in token_filter["layers"])

``extra`` holds what explains the recipe but is not needed to apply it: ``plan`` (unit ->
precision, budget, weight bytes), ``search`` (per-layer chosen exponent/clip and losses).

Applying a recipe (:func:`apply_recipe`) to the float model it was made for: (1) fold every
smoothing factor (the float function is unchanged up to rounding), (2) swap each listed Linear for
a :class:`~qvggt_deploy.quant.fake.QuantLinear` holding the stored integers. The exporter applies
the same function before emitting QDQ, which is why the ONNX graph and the PyTorch fake-quantized
model compute the same thing.

Loading validates format, version, the model it was made for (preset, config and weight
fingerprint) and that every tensor is present with the right shape; errors name what is wrong.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from qvggt_deploy import __version__
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import atomic_dir, sha256_file
from qvggt_deploy.log import get_logger
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.capture import set_submodule
from qvggt_deploy.quant.config import ACT_GRANULARITIES, get_precision
from qvggt_deploy.quant.fake import QuantLinear, ScaledActivation
from qvggt_deploy.quant.targets import ScaleGroup

logger = get_logger(__name__)

FORMAT = "qvggt-recipe"
VERSION = 1
RECIPE_JSON = "recipe.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class LayerSpec:
    """How one Linear is deployed. ``group`` is along the input dimension."""

    precision: str
    group: Optional[int] = None
    clip: float = 1.0
    act_granularity: Optional[str] = None
    act_scale: Optional[float] = None
    special_bypass: bool = False
    source: str = ""

    @property
    def wbits(self) -> Optional[int]:
        return get_precision(self.precision).wbits

    @property
    def abits(self) -> Optional[int]:
        return get_precision(self.precision).abits

    def validate(self, name: str) -> None:
        p = get_precision(self.precision)
        if p.is_quantized and not self.group:
            raise QvggtError(f"recipe layer {name}: precision {self.precision} needs a group size")
        if p.abits:
            if self.act_granularity not in ACT_GRANULARITIES:
                raise QvggtError(f"recipe layer {name}: activation granularity must be one of "
                                 f"{ACT_GRANULARITIES}, got {self.act_granularity!r}")
            if self.act_granularity == "per_tensor" and not self.act_scale:
                raise QvggtError(f"recipe layer {name}: per_tensor activations need act_scale")


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the float state dict (names, shapes, dtypes, bytes): identifies the weights a
    recipe was calibrated on, whatever file format they came from."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Recipe:
    """In-memory recipe. ``tensors`` holds everything of ``weights.safetensors``."""

    preset: str
    config: Dict[str, Any]
    fingerprint: str
    method: Dict[str, Any]
    layers: Dict[str, LayerSpec]
    scale_groups: List[ScaleGroup] = field(default_factory=list)
    token_filter: Dict[str, Any] = field(default_factory=dict)
    tensors: Dict[str, torch.Tensor] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None
    # How this run went (e.g. ``calibration_seconds``, ``phase_seconds``): saved beside ``created``,
    # outside the digest, so two runs of the same calibration have the same digest.
    run: Dict[str, Any] = field(default_factory=dict)

    # ---- construction helpers (used by the calibration methods) -------------------------------
    def set_quantized(self, name: str, spec: LayerSpec, q: torch.Tensor, scales: torch.Tensor) -> None:
        """Store layer ``name``'s integers ``q [N, K]`` (int8 values) and scales ``[N, K/g]``."""
        spec.validate(name)
        self.layers[name] = spec
        bits = spec.wbits
        q = q.cpu()  # recipes live on the CPU whatever device calibrated them
        self.tensors[f"{name}.qweight"] = quantizer.pack_int4(q) if bits == 4 else q.to(torch.int8).contiguous()
        self.tensors[f"{name}.scales"] = scales.cpu().to(torch.float16).contiguous()

    def set_smoothing(self, group: ScaleGroup, factors: torch.Tensor) -> None:
        if group not in self.scale_groups:
            self.scale_groups.append(group)
        self.tensors[group.key] = factors.detach().cpu().float().contiguous()

    def set_compensation(self, name: str, rows: torch.Tensor) -> None:
        """Store layer ``name``'s compensation rows ``[R, K]`` (in the deployed layer's input
        coordinates, i.e. after smoothing) and list the layer in ``token_filter["layers"]``."""
        self.tensors[f"comp.{name}"] = rows.detach().cpu().float().contiguous()
        layers = self.token_filter.setdefault("layers", [])
        if name not in layers:
            layers.append(name)

    # ---- reading ------------------------------------------------------------------------------
    def compensation(self, name: str) -> Optional[torch.Tensor]:
        """Compensation rows ``[R, K]`` of layer ``name`` (fp32), or None if it has none."""
        return self.tensors.get(f"comp.{name}")

    def quantized_weight(self, name: str) -> Tuple[torch.Tensor, torch.Tensor, int, int]:
        """(q int8 ``[N, K]`` unpacked, scales fp16 ``[N, K/g]``, bits, group) of a quantized layer."""
        spec = self.layers[name]
        packed = self.tensors[f"{name}.qweight"]
        q = quantizer.unpack_int4(packed) if spec.wbits == 4 else packed
        return q, self.tensors[f"{name}.scales"], spec.wbits, spec.group

    def canonical_int4(self, name: str) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """(packed uint8 ``[N, K/2]``, fp16 scales ``[N, K/g]``, group) as the W4A16 kernel takes them."""
        spec = self.layers[name]
        if spec.wbits != 4:
            raise QvggtError(f"layer {name} is {spec.precision}, not INT4")
        return self.tensors[f"{name}.qweight"], self.tensors[f"{name}.scales"], spec.group

    @property
    def digest(self) -> str:
        """Short content hash of the recipe (JSON + tensors), recorded in exported metadata."""
        h = hashlib.sha256(json.dumps(self._json(), sort_keys=True).encode())
        for key in sorted(self.tensors):
            t = self.tensors[key].contiguous()
            h.update(key.encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def weight_bytes(self, model: nn.Module) -> int:
        """Deployed bytes of the candidate Linear weights under this plan (others: fp16)."""
        from qvggt_deploy.quant.config import weight_bytes
        from qvggt_deploy.quant.targets import candidate_linears

        total = 0.0
        for name, lin in candidate_linears(model).items():
            spec = self.layers.get(name)
            total += weight_bytes(lin.out_features, lin.in_features, spec.precision if spec else "fp16",
                                  spec.group if spec else None)
        return int(total)

    # ---- (de)serialisation --------------------------------------------------------------------
    def _json(self) -> Dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": {"preset": self.preset, "config": self.config, "fingerprint": self.fingerprint},
            "method": self.method,
            "layers": {k: dataclasses.asdict(v) for k, v in self.layers.items()},
            "scale_groups": [dataclasses.asdict(g) for g in self.scale_groups],
            "token_filter": self.token_filter,
            "extra": self.extra,
        }

    def save(self, path, force: bool = False) -> Path:
        """Write the recipe folder atomically. A previous recipe at ``path`` is replaced whole;
        anything else there is refused (QvggtError) unless ``force``."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path, ours=RECIPE_JSON, force=force) as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(tmp / WEIGHTS_FILE))
            doc = self._json()
            doc["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            doc["tool"] = f"qvggt-deploy {__version__}"
            if self.run:
                doc["run"] = self.run
            doc["weights_sha256"] = sha256_file(tmp / WEIGHTS_FILE)
            (tmp / RECIPE_JSON).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        self.path = path
        return path


def load_recipe(path) -> Recipe:
    """Read and validate a recipe folder (format, version, digest, every tensor present)."""
    path = Path(path)
    doc_path = path / RECIPE_JSON
    if not doc_path.is_file():
        raise QvggtError(f"{path}: not a recipe folder (no {RECIPE_JSON})")
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise QvggtError(f"{doc_path}: unreadable recipe JSON: {exc}") from exc
    if doc.get("format") != FORMAT:
        raise QvggtError(f"{doc_path}: not a qvggt recipe (format {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise QvggtError(f"{doc_path}: recipe version {doc.get('version')} is not supported by this "
                         f"qvggt-deploy (reads version {VERSION}); recalibrate with this version")
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise QvggtError(f"{path}: missing {WEIGHTS_FILE}")
    if doc.get("weights_sha256") and sha256_file(weights_path) != doc["weights_sha256"]:
        raise QvggtError(f"{weights_path}: content does not match the digest in {RECIPE_JSON} "
                         f"(corrupt or edited)")
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:
        raise QvggtError(f"{weights_path}: unreadable ({exc})") from exc
    try:
        layers = {k: LayerSpec(**v) for k, v in doc["layers"].items()}
        groups = [ScaleGroup(prev=g["prev"], prev_kind=g["prev_kind"], layers=tuple(g["layers"]),
                             rows=tuple(g["rows"]) if g.get("rows") else None) for g in doc["scale_groups"]]
        model = doc["model"]
        recipe = Recipe(preset=model["preset"], config=model["config"], fingerprint=model["fingerprint"],
                        method=doc["method"], layers=layers, scale_groups=groups,
                        token_filter=doc.get("token_filter", {}), tensors=tensors,
                        extra=doc.get("extra", {}), path=path, run=doc.get("run", {}))
    except (KeyError, TypeError) as exc:
        raise QvggtError(f"{doc_path}: malformed recipe ({exc})") from exc
    for name, spec in layers.items():
        spec.validate(name)
        if spec.wbits:
            for suffix in ("qweight", "scales"):
                if f"{name}.{suffix}" not in tensors:
                    raise QvggtError(f"{weights_path}: missing tensor {name}.{suffix}")
    for name, spec in layers.items():
        if spec.wbits:
            _check_weight_tensors(weights_path, name, spec, tensors)
    for g in groups:
        if g.key not in tensors:
            raise QvggtError(f"{weights_path}: missing smoothing factors {g.key}")
    for name in recipe.token_filter.get("layers", []):
        comp = tensors.get(f"comp.{name}")
        if comp is None:
            raise QvggtError(f"{weights_path}: missing compensation rows comp.{name} "
                             f"(listed in token_filter.layers)")
        if comp.dim() != 2:
            raise QvggtError(f"{weights_path}: comp.{name} must be [R, K], got {tuple(comp.shape)}")
    return recipe


def _check_weight_tensors(path: Path, name: str, spec: LayerSpec, tensors: Dict[str, torch.Tensor]) -> None:
    """Dtypes and shapes of a quantized layer's tensors agree with each other and the spec."""
    q, scales = tensors[f"{name}.qweight"], tensors[f"{name}.scales"]
    want = torch.uint8 if spec.wbits == 4 else torch.int8
    if q.dtype != want or scales.dtype != torch.float16 or q.dim() != 2 or scales.dim() != 2:
        raise QvggtError(f"{path}: {name}: expected qweight {want} and fp16 scales, 2-D, got "
                         f"{q.dtype} {tuple(q.shape)} and {scales.dtype} {tuple(scales.shape)}")
    k = q.shape[1] * (2 if spec.wbits == 4 else 1)
    if scales.shape[0] != q.shape[0] or scales.shape[1] * spec.group != k:
        raise QvggtError(f"{path}: {name}: scales {tuple(scales.shape)} do not fit qweight "
                         f"{tuple(q.shape)} with group {spec.group}")


def check_compatible(recipe: Recipe, model: nn.Module, check_weights: bool = True) -> None:
    """Raise if ``recipe`` was made for another architecture or other weights than ``model``."""
    cfg = getattr(model, "cfg", None)
    model_config = json.loads(json.dumps(cfg.to_dict())) if cfg is not None else None  # tuples -> lists
    if cfg is not None and recipe.config != model_config:
        diffs = [k for k in set(recipe.config) | set(model_config)
                 if recipe.config.get(k) != model_config.get(k) and k != "name"]
        if diffs or recipe.preset != cfg.name:
            raise QvggtError(f"recipe {recipe.path or ''} was made for preset {recipe.preset!r}, not "
                             f"{cfg.name!r} (differs in: {', '.join(sorted(diffs)) or 'name'})")
    if check_weights:
        fp = model_fingerprint(model)
        if fp != recipe.fingerprint:
            raise QvggtError(f"recipe {recipe.path or ''} was calibrated on other weights (fingerprint "
                             f"{recipe.fingerprint[:12]}, this model {fp[:12]}); pass the same "
                             f"--checkpoint as at calibration")


@torch.no_grad()
def fold_scale_group(model: nn.Module, group: ScaleGroup, s: torch.Tensor) -> None:
    """Fold per-input-channel factors ``s`` of one scale group into the float model."""
    s = s.float().to(model.get_submodule(group.layers[0]).weight.device)
    prev = model.get_submodule(group.prev)
    if group.prev_kind == "layernorm":
        prev.weight.div_(s)
        prev.bias.div_(s)
    elif group.prev_kind == "linear_rows":
        a, b = group.rows
        prev.weight[a:b].div_(s[:, None])
        if prev.bias is not None:
            prev.bias[a:b].div_(s)
    elif group.prev_kind == "activation":
        inv = 1.0 / s
        if isinstance(prev, ScaledActivation):
            prev.inv_scale.mul_(inv)
        else:
            set_submodule(model, group.prev, ScaledActivation(prev, inv))
    else:
        raise QvggtError(f"unknown scale-group kind {group.prev_kind!r} for {group.prev}")
    for name in group.layers:
        model.get_submodule(name).weight.mul_(s[None, :])


def apply_smoothing(model: nn.Module, recipe: Recipe) -> nn.Module:
    for group in recipe.scale_groups:
        fold_scale_group(model, group, recipe.tensors[group.key])
    return model


def apply_recipe(model: nn.Module, recipe: Recipe, check: bool = True) -> nn.Module:
    """Fold smoothing and swap quantized layers for :class:`QuantLinear`, in place.

    Args:
        model: the float model the recipe was calibrated on (same preset and weights).
        recipe: a loaded or freshly built recipe.
        check: verify preset/config/weights first (costs one pass over the weights).
            Defaults to True.

    Returns:
        the model, now fake-quantized (eval mode).
    """
    if check:
        check_compatible(recipe, model)
    apply_smoothing(model, recipe)
    swap_layers(model, recipe)
    install_token_layout_hook(model)
    return model.eval()


def swap_layers(model: nn.Module, recipe: Recipe, names: Optional[List[str]] = None) -> nn.Module:
    """Replace the recipe's Linears (``names``, default all) by :class:`QuantLinear` holding the
    stored integers; smoothing must already be folded (calibration folds as it goes, then calls
    this, so a fresh and a resumed calibration build the same modules)."""
    for name in recipe.layers if names is None else names:
        spec = recipe.layers[name]
        try:
            linear = model.get_submodule(name)
        except AttributeError:
            raise QvggtError(f"recipe layer {name} does not exist in the model") from None
        if not isinstance(linear, nn.Linear):
            raise QvggtError(f"recipe layer {name} is a {type(linear).__name__}, not a Linear")
        act = dict(abits=spec.abits, act_granularity=spec.act_granularity, act_scale=spec.act_scale,
                   special_bypass=spec.special_bypass)
        if spec.wbits:
            q, scales, bits, group = recipe.quantized_weight(name)
            if q.shape != linear.weight.shape:
                raise QvggtError(f"recipe layer {name}: weight shape {tuple(q.shape)} does not match the "
                                 f"model's {tuple(linear.weight.shape)}")
            dev = linear.weight.device
            module = QuantLinear.from_linear(linear, spec.precision, bits, group, scales.float().to(dev), q.to(dev),
                                             **act)
        else:
            module = QuantLinear.from_linear(linear, spec.precision, **act)
        set_submodule(model, name, module)
    return model


def install_token_layout_hook(model: nn.Module) -> None:
    """Tell every QuantLinear of the aggregator how many tokens one frame has (needed by the
    special-token bypass), from the image size of each forward call."""
    agg = getattr(model, "aggregator", None)
    if agg is None or getattr(agg, "_qvggt_layout_hook", None) is not None:
        return
    if not any(isinstance(m, QuantLinear) for m in agg.modules()):
        return

    def hook(module, args):
        images = args[0]
        H, W = images.shape[-2:]
        per_frame = module.patch_start_idx + (H // module.patch_size) * (W // module.patch_size)
        for m in module.modules():  # looked up per call: layers swapped in later are covered too
            if isinstance(m, QuantLinear):
                m.tokens_per_frame = per_frame

    agg._qvggt_layout_hook = agg.register_forward_pre_hook(hook)
