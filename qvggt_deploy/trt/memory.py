"""Memory estimates: weights, activations per frame, engine build and runtime peaks, max frames.

Weights come from the ONNX initializers (by dtype, INT4/UINT4 = 0.5 byte, read from the tensor
headers without loading external data) or, without an ONNX file, from the preset and a precision
for the quantization-candidate Linears (:func:`qvggt_deploy.quant.config.weight_bytes`).

Activations are a structural model of the tensors alive at the two peaks of a forward pass, per
frame, with tokens per frame N = 5 + (H/14)(W/14), C = embed_dim:

- aggregator: the kept layer outputs ``[N, 2C]`` (an engine keeps the DPT taps and the camera
  token of the last layer; PyTorch keeps all ``depth`` layers in fp32) plus a transient working
  set of ``transient * C`` bytes per token (residual, LayerNorm, qkv, MLP
  hidden), and with *explicit* attention the score matrices (``heads * N^2`` per frame for frame
  attention, ``heads * (S*N)^2`` for global attention: quadratic in frames);
- heads: the kept taps plus the DPT feature maps of a frame (four resized taps at 4x, 2x, 1x and
  1/2x the patch grid, the fusion maps at 8x, the ``features/2`` map at full resolution), times
  ``DPT_LIVE_FACTOR`` for intermediates, for the DPT heads alive at once;
- the I/O buffers (images in; depth, points and confidences out, fp32).

The constants are calibrated against measurements (see docs/jetson.md, "Memory model"):
the aggregator-only slope of the official VGGT on an H100 (0.195 GiB per frame at 336x518, bf16,
FlashAttention 3, all 24 layers kept in fp32) fixes the mixed-precision transient working set;
PyTorch CPU peak memory of ``vggt-1b`` (scripts/measure_memory.py) fixes the fp32 working set and
the DPT factor, and ``tiny`` checks them at another size.
:data:`CALIBRATION` lists the measurements, and the tests check the model reproduces them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.walk import ONNX_DTYPE_BYTES
from qvggt_deploy.model.presets import VGGTConfig, get_preset
from qvggt_deploy.trt.profiles import GIB, Profile

# ---- calibrated constants (docs/jetson.md, "Memory model") ----------------------------------------
#: Transient aggregator working set in bytes per token per embedding channel, for mixed precision
#: (fp32 residual and LayerNorm, half-precision matmuls: the bf16-autocast PyTorch model, and our
#: strongly typed graphs). Fitted to the H100 slope (0.195 GiB/frame at 336x518, 24 fp32 layers kept).
TRANSIENT_MIXED = 37.0
#: The same for an all-fp32 PyTorch CPU forward (fitted to vggt-1b at 350x518, 1 -> 2 frames).
TRANSIENT_FP32 = 102.0
#: Multiplier on the structural DPT live set of a frame (intermediates the structure omits);
#: fitted to the per-frame growth of the vggt-1b heads (PyTorch CPU, fp32, 1 -> 2 frames).
DPT_LIVE_FACTOR = 1.31
#: PyTorch builds the DPT position embedding at full resolution on every call (uv grid, sin/cos
#: intermediates): a per-call cost in units of one fp32 ``[features/2, H, W]`` map. In an engine the
#: embedding is a constant (counted with the weights, :func:`dpt_constant_values`).
PE_BUILD_MAPS = 4.6
#: Safety factor on engine activation estimates: the independent ``tiny`` check is underestimated
#: by up to ~25% per frame (per-token costs that do not scale with C), and TensorRT's own memory
#: plan is not measured here.
ACTIVATION_MARGIN = 1.2
#: Weight copies alive while TensorRT builds from ONNX: the parsed ONNX model in host memory, the
#: network/engine weights on the device, the serialized plan (on unified memory all are one DRAM).
BUILD_WEIGHT_COPIES = 3.0

#: Measurements the model is checked against (tests/trt/test_memory.py). MiB unless said otherwise.
CALIBRATION = {
    # facebookresearch/vggt README (shared/reference/vggt-eval.md section 6): aggregator only, one
    # H100, FlashAttention 3, 336x518, bf16; "GB" there are GiB (intercept = bf16 aggregator weights).
    "h100_aggregator": {"preset": "vggt-1b", "height": 336, "width": 518,
                        "frames": (1, 2, 4, 8, 10, 20, 50, 100, 200),
                        "gib": (1.88, 2.07, 2.45, 3.23, 3.63, 5.58, 11.41, 21.15, 40.63)},
    # scripts/measure_memory.py on the 2-core CPU machine, torch 2.13, fp32, random weights:
    # activation = peak RSS during the forward - RSS with the model loaded.
    "cpu_vggt_1b": {"preset": "vggt-1b", "height": 350, "width": 518, "frames": (1, 2),
                    "aggregator_mib": (280.5, 547.5), "full_mib": (854.8, 1299.9)},
    "cpu_tiny": {"preset": "tiny", "height": 224, "width": 224, "frames": (1, 2, 4, 8),
                 "aggregator_mib": (22.1, 29.2, 46.1, 71.3), "full_mib": (83.7, 119.9, 218.2, 335.0)},
}


@dataclass(frozen=True)
class ActivationMode:
    """How a runtime holds activations.

    Args:
        kept_layers: "taps" (an engine: the DPT taps + last layer) or "all" (PyTorch: every layer).
        kept_bytes: bytes per kept aggregator output value (4: the residual stream is fp32).
        transient: aggregator working set, bytes per token per channel.
        dpt_bytes: bytes per DPT feature-map value (4: the heads run in fp32).
        attention: "fused" (O(N) memory) or "explicit" (scores materialised).
        dpt_chunk: frames per DPT pass (PyTorch: 8); None = all frames at once (an engine).
        dpt_concurrent: DPT heads alive at once (1 with ``max_aux_streams: 0``).
        pe_build_maps: per-call position-embedding cost (PyTorch only, see :data:`PE_BUILD_MAPS`).
    """

    kept_layers: str = "taps"
    kept_bytes: int = 4
    transient: float = TRANSIENT_MIXED
    dpt_bytes: int = 4
    attention: str = "fused"
    dpt_chunk: Optional[int] = None
    dpt_concurrent: int = 1
    pe_build_maps: float = 0.0


ENGINE = ActivationMode()
PYTORCH_FP32 = ActivationMode(kept_layers="all", transient=TRANSIENT_FP32, dpt_chunk=8, pe_build_maps=PE_BUILD_MAPS)
PYTORCH_BF16_AGGREGATOR = ActivationMode(kept_layers="all", transient=TRANSIENT_MIXED)


def tokens_per_frame(cfg: VGGTConfig, height: int, width: int) -> int:
    """N = camera + register tokens + (H/14)(W/14) patch tokens."""
    return cfg.patch_start_idx + (height // cfg.patch_size) * (width // cfg.patch_size)


def tapped_layers(cfg: VGGTConfig) -> Tuple[int, ...]:
    """Aggregator layers an engine must keep: the DPT taps and the last layer (camera token)."""
    return tuple(sorted(set(cfg.intermediate_layer_idx) | {cfg.depth - 1}))


def dpt_live_values(cfg: VGGTConfig, height: int, width: int) -> int:
    """Values alive at the peak of one DPT head for one frame (structural, before the factor)."""
    ph, pw = height // cfg.patch_size, width // cfg.patch_size
    P, HW, F = ph * pw, height * width, cfg.dpt_features
    oc = cfg.dpt_out_channels
    taps = oc[0] * 16 * P + oc[1] * 4 * P + oc[2] * P + oc[3] * math.ceil(ph / 2) * math.ceil(pw / 2)
    rn = F * (16 * P + 4 * P + P + math.ceil(ph / 2) * math.ceil(pw / 2))
    fusion = 3 * F * 64 * P  # refinenet1 input, RCU intermediate, upsampled output at 8x the grid
    output = 2 * (F // 2) * HW + cfg.dpt_head_features_2 * HW + 4 * HW
    return max(taps + rn, rn + fusion, output)


def dpt_constant_values(cfg: VGGTConfig, height: int, width: int) -> int:
    """Values of the position embeddings one DPT head adds (constants once exported at a fixed size):
    one per tap at the patch grid and one ``[features/2, H, W]`` at full resolution."""
    P = (height // cfg.patch_size) * (width // cfg.patch_size)
    return sum(cfg.dpt_out_channels) * P + (cfg.dpt_features // 2) * height * width


@dataclass(frozen=True)
class ActivationEstimate:
    """Activation bytes at ``frames`` frames, by term (all in bytes)."""

    frames: int
    kept: int
    transient: int
    attention: int
    dpt: int
    io: int

    @property
    def aggregator_peak(self) -> int:
        return self.kept + self.transient + self.attention + self.io

    @property
    def heads_peak(self) -> int:
        return self.kept + self.dpt + self.io

    @property
    def peak(self) -> int:
        return max(self.aggregator_peak, self.heads_peak)


def activation_bytes(cfg: VGGTConfig, height: int, width: int, frames: int,
                     mode: ActivationMode = ENGINE, part: str = "full") -> ActivationEstimate:
    """Activation memory of one forward pass at ``frames`` frames.

    Args:
        cfg: model configuration.
        height, width: input size in pixels (multiples of 14).
        frames: S.
        mode: how the runtime holds activations. Defaults to :data:`ENGINE`.
        part: "full", "aggregator" (stops at the kept taps) or "heads" (taps in, outputs out).
    """
    if part not in ("full", "aggregator", "heads"):
        raise QvggtError(f"unknown part {part!r}; choose full, aggregator or heads")
    S, C, N = frames, cfg.embed_dim, tokens_per_frame(cfg, height, width)
    n_kept = cfg.depth if mode.kept_layers == "all" else len(tapped_layers(cfg))
    kept = S * N * n_kept * 2 * C * mode.kept_bytes
    transient = attention = dpt = 0
    if part in ("full", "aggregator"):
        transient = int(S * N * mode.transient * C)
        if mode.attention == "explicit":
            # scores + softmax output, half precision: frame attention per frame, global over S*N.
            attention = max(S * cfg.num_heads * N * N, cfg.num_heads * (S * N) ** 2) * 2 * 2
    if part in ("full", "heads"):
        n_heads = int(cfg.enable_depth) + int(cfg.enable_point)
        chunk = min(S, mode.dpt_chunk) if mode.dpt_chunk else S
        dpt = int(chunk * dpt_live_values(cfg, height, width) * mode.dpt_bytes * DPT_LIVE_FACTOR
                  * min(n_heads, mode.dpt_concurrent))
        dpt += int(mode.pe_build_maps * (cfg.dpt_features // 2) * height * width * 4)
    io_in = S * 3 * height * width * 4
    io_out = S * 6 * height * width * 4 + S * 9 * 4  # depth, depth_conf, points(3), points_conf; pose
    io = {"full": io_in + io_out, "aggregator": io_in, "heads": io_in + io_out}[part]
    return ActivationEstimate(frames=S, kept=kept, transient=transient, attention=attention, dpt=dpt, io=io)


# ---- weights -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightBytes:
    """Deployed weight bytes, total and by part (aggregator / heads) and by dtype."""

    total: int
    by_part: Dict[str, int] = field(default_factory=dict)
    by_dtype: Dict[str, int] = field(default_factory=dict)
    source: str = ""


def weight_bytes_from_onnx(model_or_path, source: Optional[str] = None) -> WeightBytes:
    """Sum the ONNX initializers (and Constant nodes) by data type without loading external data.

    INT4/UINT4 count 0.5 byte per element, so a W4A16 graph with INT4 blocked DequantizeLinear
    weights counts what TensorRT keeps. Parts are attributed from names ("aggregator" prefix).
    """
    from qvggt_deploy.lazy import import_or_raise

    onnx = import_or_raise("onnx")
    if isinstance(model_or_path, (str, Path)):
        source = source or str(model_or_path)
        try:
            model = onnx.load(str(model_or_path), load_external_data=False)
        except Exception as exc:
            raise QvggtError(f"{model_or_path}: not a readable ONNX file ({exc})") from exc
    else:
        model = model_or_path
    by_dtype: Dict[str, int] = {}
    by_part = {"aggregator": 0, "heads": 0}
    tensors = [(t.name, t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t is not None:
                    tensors.append((node.output[0], attr.t))
    total = 0.0
    for name, t in tensors:
        per = ONNX_DTYPE_BYTES.get(t.data_type)
        if per is None:
            raise QvggtError(f"{source or 'ONNX model'}: initializer {name} has unsupported dtype {t.data_type}")
        numel = math.prod(t.dims) if t.dims else 1
        nbytes = int(math.ceil(numel * per))
        dtype = onnx.TensorProto.DataType.Name(t.data_type).lower()  # "float", "float16", "int4", ...
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
        by_part["aggregator" if "aggregator" in name else "heads"] += nbytes
        total += nbytes
    return WeightBytes(total=int(total), by_part=by_part, by_dtype=by_dtype, source=source or "onnx")


def weight_bytes_for_preset(preset: Union[str, VGGTConfig], precision: str = "w4a16",
                            group: Optional[int] = 128, other_bytes: int = 2,
                            image: Optional[Tuple[int, int]] = None) -> WeightBytes:
    """Deployed weights of a preset when every quantization candidate Linear has ``precision``
    (group ``group``) and every other parameter is ``other_bytes`` wide (fp16). The track head is
    not deployed. With ``image`` (H, W) the DPT position-embedding constants of an export at that
    size are added (fp32, :func:`dpt_constant_values`)."""
    from qvggt_deploy.model import build_model
    from qvggt_deploy.quant.config import get_precision, weight_bytes
    from qvggt_deploy.quant.targets import candidate_linears

    cfg = preset if isinstance(preset, VGGTConfig) else get_preset(preset)
    model = build_model(cfg.replace(enable_track=False), device="meta")
    p = get_precision(precision)
    linears = candidate_linears(model)
    linear_weights = {f"{name}.weight" for name in linears}
    by_part = {"aggregator": 0.0, "heads": 0.0}
    for name, param in model.named_parameters():
        part = "aggregator" if name.startswith("aggregator.") else "heads"
        if name in linear_weights:
            lin = linears[name[: -len(".weight")]]
            nbytes = weight_bytes(lin.out_features, lin.in_features, precision, group if p.is_quantized else None)
            if p.wbits is None and p.float_bytes != other_bytes:
                nbytes = lin.out_features * lin.in_features * p.float_bytes
        else:
            nbytes = param.numel() * (4 if precision == "fp32" else other_bytes)
        by_part[part] += nbytes
    if image is not None:
        n_heads = int(cfg.enable_depth) + int(cfg.enable_point)
        by_part["heads"] += n_heads * dpt_constant_values(cfg, image[0], image[1]) * 4
    total = int(sum(by_part.values()))
    return WeightBytes(total=total, by_part={k: int(v) for k, v in by_part.items()},
                       source=f"preset {cfg.name}, linears {precision}" + (f" g{group}" if p.is_quantized else ""))


# ---- engine budget -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineEstimate:
    """Build and runtime peaks of one deployment (full engine or split pair) at ``frames``."""

    mode: str  # "full" or "split"
    frames: int
    weights: int
    runtime_peak: int
    build_peak: int
    budget: int

    @property
    def fits(self) -> bool:
        return self.runtime_peak <= self.budget and self.build_peak <= self.budget


def engine_estimate(profile: Profile, weights: WeightBytes, frames: int, split: bool) -> EngineEstimate:
    """Peaks of the engine(s) for ``profile`` at ``frames`` frames.

    Runtime: weights + activations (times :data:`ACTIVATION_MARGIN`) + workspace. Build: ``BUILD_WEIGHT_COPIES`` copies of the
    weights (of the larger part when split) + activations at that shape + workspace; the two split
    engines are built one after the other, and at runtime share one activation buffer (the runner
    gives both contexts the same scratch memory), the taps crossing between them held apart.
    """
    cfg = get_preset(profile.model.preset)
    H, W = profile.model.height, profile.model.width
    mode = ActivationMode(attention=profile.model.attention,
                          dpt_concurrent=1 if profile.builder.max_aux_streams == 0 else 2)
    ws = profile.builder.workspace_bytes
    m = ACTIVATION_MARGIN
    if not split:
        act = int(m * activation_bytes(cfg, H, W, frames, mode, "full").peak)
        runtime = weights.total + act + ws
        build = int(BUILD_WEIGHT_COPIES * weights.total) + act + ws
    else:
        agg = activation_bytes(cfg, H, W, frames, mode, "aggregator")
        heads = activation_bytes(cfg, H, W, frames, mode, "heads")
        boundary = agg.kept  # the taps are engine outputs, then inputs: held by the runner
        scratch = m * max(agg.peak - agg.kept, heads.peak - heads.kept)
        runtime = weights.total + boundary + scratch + ws
        parts = weights.by_part or {"aggregator": weights.total, "heads": 0}
        build = max(int(BUILD_WEIGHT_COPIES * parts.get("aggregator", 0) + m * agg.peak),
                    int(BUILD_WEIGHT_COPIES * parts.get("heads", 0) + m * heads.peak)) + ws
    return EngineEstimate(mode="split" if split else "full", frames=frames, weights=weights.total,
                          runtime_peak=int(runtime), build_peak=int(build), budget=profile.device.budget_bytes)


def max_frames(profile: Profile, weights: WeightBytes, split: bool, limit: int = 1024) -> int:
    """Largest frame count whose build and runtime peaks fit the profile's budget (0 if none)."""
    best = 0
    for S in range(1, limit + 1):
        if not engine_estimate(profile, weights, S, split).fits:
            break
        best = S
    return best


@dataclass(frozen=True)
class Plan:
    """What ``qvggt build-engine`` will do for a profile: full or split, and the frame ceiling."""

    split: bool
    max_frames_full: int
    max_frames_split: int
    estimate: EngineEstimate
    reason: str

    @property
    def max_frames(self) -> int:
        return self.max_frames_split if self.split else self.max_frames_full


def plan(profile: Profile, weights: Optional[WeightBytes] = None) -> Plan:
    """Decide full vs split (``split: auto``) and estimate the frame ceilings of both.

    Auto picks the full engine when it fits at ``frames.max``, else the split pair. Weights
    default to the preset at the profile's ``model.weights`` precision.
    """
    weights = weights or weight_bytes_for_preset(profile.model.preset, profile.model.weights,
                                                 image=(profile.model.height, profile.model.width))
    full_max, split_max = max_frames(profile, weights, False), max_frames(profile, weights, True)
    want = profile.frames.max
    if profile.split == "auto":
        split = full_max < want
        reason = (f"auto: the full engine fits {full_max} frames, "
                  f"{'fewer than' if split else 'at least'} frames.max {want}")
    else:
        split = bool(profile.split)
        reason = f"split: {str(split).lower()} in the profile"
    return Plan(split=split, max_frames_full=full_max, max_frames_split=split_max,
                estimate=engine_estimate(profile, weights, want, split), reason=reason)


def gib(nbytes: float) -> float:
    return round(nbytes / GIB, 2)
