"""Per-layer precisions and their properties.

| precision | weights | activations | deployed as |
|---|---|---|---|
| ``fp32`` | fp32 | fp32 | plain MatMul |
| ``fp16`` | fp16 | fp16 | Cast to fp16 |
| ``w8a16`` | INT8 group-wise | fp16 | INT8 DequantizeLinear on the weight |
| ``w4a16`` | INT4 group-wise | fp16 | INT4 blocked DequantizeLinear / MatMulNBits / W4A16 plugin |
| ``w3a16`` | INT3 group-wise | fp16 | the ablation's harder setting: values in [-4, 3] held as INT8 (no packed INT3 format) |
| ``w8a8`` | INT8 | INT8 (static per-tensor or dynamic per-token) | Q/DQ on weight and input |
| ``w4a8`` | INT4 | INT8 | Q/DQ on weight and input |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qvggt_deploy.errors import QvggtError


@dataclass(frozen=True)
class Precision:
    name: str
    wbits: Optional[int]  # None: float weights
    abits: Optional[int]  # None: float activations
    float_bytes: int = 2  # bytes per weight when wbits is None

    @property
    def weight_bits(self) -> float:
        return float(self.wbits) if self.wbits else 8.0 * self.float_bytes

    @property
    def is_quantized(self) -> bool:
        return self.wbits is not None


PRECISIONS = {
    "fp32": Precision("fp32", None, None, float_bytes=4),
    "fp16": Precision("fp16", None, None),
    "w8a16": Precision("w8a16", 8, None),
    "w4a16": Precision("w4a16", 4, None),
    "w3a16": Precision("w3a16", 3, None),
    "w8a8": Precision("w8a8", 8, 8),
    "w4a8": Precision("w4a8", 4, 8),
}

ACT_GRANULARITIES = ("per_tensor", "per_token")


def get_precision(name: str) -> Precision:
    try:
        return PRECISIONS[name]
    except KeyError:
        raise QvggtError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}") from None


def weight_bytes(out_features: int, in_features: int, precision: str, group: Optional[int]) -> float:
    """Deployed bytes of one Linear weight (scales included, fp16 per group; bias excluded)."""
    p = get_precision(precision)
    if not p.is_quantized:
        return out_features * in_features * p.float_bytes
    groups = in_features // group if group else 1
    return out_features * in_features * p.wbits / 8 + out_features * groups * 2
