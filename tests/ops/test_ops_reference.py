"""The CPU reference (qvggt_deploy/ops/reference.py) against plain torch dequant + matmul."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops.layout import repack_for_kernel
from qvggt_deploy.ops.reference import dequantize_reference, w4a16_gemm_reference
from qvggt_deploy.quant.quantizer import compute_scales, dequantize, pack_int4, quantize


def quantized(n, k, group, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    scales = compute_scales(w, 4, group)
    q = quantize(w, scales, 4, group)
    qweight_dev, scales_dev = repack_for_kernel(pack_int4(q), scales.half(), group)
    return q, scales, qweight_dev, scales_dev


@pytest.mark.parametrize("group", [32, 64, 128])
def test_dequantize_reference_is_fp16_of_the_canonical_dequant(group):
    q, scales, qweight_dev, scales_dev = quantized(64, 256, group)
    assert torch.equal(dequantize_reference(qweight_dev, scales_dev, group),
                       dequantize(q, scales, group).to(torch.float16))


@pytest.mark.parametrize("m,bias", [(1, True), (7, False), (33, True)])
def test_gemm_reference_matches_torch(m, bias):
    n, k, group = 48, 192, 64
    q, scales, qweight_dev, scales_dev = quantized(n, k, group, seed=m)
    a = torch.randn(m, k).half()
    b = torch.randn(n).half() if bias else None
    out = w4a16_gemm_reference(a, qweight_dev, scales_dev, b, group)
    assert out.dtype == torch.float16 and tuple(out.shape) == (m, n)
    w16 = dequantize(q, scales, group).half()
    expected = torch.nn.functional.linear(a.double(), w16.double(), b.double() if bias else None)
    # Only FP32 summation order and the final fp16 rounding separate the two.
    torch.testing.assert_close(out.double(), expected, rtol=2e-3, atol=2e-3)


def test_gemm_reference_rejects_wrong_k():
    _, _, qweight_dev, scales_dev = quantized(16, 128, 64)
    with pytest.raises(QvggtError, match="do not match"):
        w4a16_gemm_reference(torch.zeros(2, 64).half(), qweight_dev, scales_dev, None, 64)
