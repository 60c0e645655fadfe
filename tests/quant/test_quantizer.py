"""The one weight quantizer: round trips, INT4 packing, edge cases, per-group clip ratios."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant import quantizer


@pytest.mark.parametrize("bits,group", [(4, 32), (4, 64), (4, 128), (8, 32), (8, 128)])
def test_round_trip_error_within_half_step(bits, group):
    w = torch.randn(48, 256)
    s = quantizer.compute_scales(w, bits, group)
    q = quantizer.quantize(w, s, bits, group)
    assert q.dtype == torch.int8
    assert int(q.min()) >= -quantizer.qmax(bits) - 1 and int(q.max()) <= quantizer.qmax(bits)
    err = (quantizer.dequantize(q, s, group) - w).abs()
    # absmax scale: no saturation, error <= s/2 (plus fp16 rounding of the scale)
    assert bool((err <= s.repeat_interleave(group, 1) * 0.5 * (1 + 1e-3) + 1e-7).all())
    # idempotent: quantizing the dequantised weight gives the same integers
    assert torch.equal(quantizer.quantize(quantizer.dequantize(q, s, group), s, bits, group), q)


def test_scales_are_fp16_values():
    s = quantizer.compute_scales(torch.randn(8, 64), 4, 32)
    assert torch.equal(s, s.half().float())


def test_pack_round_trip_and_layout():
    q = torch.randint(-8, 8, (5, 64), dtype=torch.int8)
    packed = quantizer.pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 32)
    assert torch.equal(quantizer.unpack_int4(packed), q)
    # low nibble = even k, value q + 8 (ORT MatMulNBits layout)
    assert int(packed[0, 0]) == (int(q[0, 0]) + 8) | ((int(q[0, 1]) + 8) << 4)


def test_pack_rejects_out_of_range_and_odd():
    with pytest.raises(QvggtError):
        quantizer.pack_int4(torch.full((2, 4), 9, dtype=torch.int8))
    with pytest.raises(QvggtError):
        quantizer.pack_int4(torch.zeros(2, 3, dtype=torch.int8))


def test_all_zero_group_gets_floor_scale_and_zeros():
    w = torch.randn(4, 64)
    w[1, :32] = 0
    s = quantizer.compute_scales(w, 4, 32)
    assert float(s[1, 0]) == quantizer.SCALE_FLOOR
    q = quantizer.quantize(w, s, 4, 32)
    assert not bool(q[1, :32].any())


def test_tiny_weights_floor_at_fp16_min_normal():
    w = torch.full((2, 32), 1e-9)
    s = quantizer.compute_scales(w, 4, 32)
    assert bool((s == 2.0 ** -14).all())
    assert not bool(quantizer.quantize(w, s, 4, 32).any())


def test_clip_saturates_and_per_group_ratios():
    w = torch.zeros(2, 64)
    w[0, 0], w[0, 1] = 7.0, 1.0
    w[1, 40] = 3.5
    s = quantizer.compute_scales(w, 4, 32, clip=0.5)
    q = quantizer.quantize(w, s, 4, 32)
    assert int(q[0, 0]) == 7 and float(s[0, 0]) == 0.5  # 7 * 0.5 / 7: the outlier sits at the top
    ratios = torch.ones(2, 2)
    ratios[1, 1] = 0.25
    s2 = quantizer.compute_scales(w, 4, 32, clip=ratios)
    assert float(s2[0, 0]) == 1.0 and float(s2[1, 1]) == pytest.approx(3.5 * 0.25 / 7, rel=1e-3)
    assert int(quantizer.quantize(w, s2, 4, 32)[1, 40]) == 7  # saturated at qmax


@pytest.mark.parametrize("kwargs", [dict(bits=5), dict(group=48), dict(clip=0.0), dict(clip=1.5)])
def test_bad_arguments_raise(kwargs):
    args = dict(bits=4, group=32, clip=1.0)
    args.update(kwargs)
    with pytest.raises(QvggtError):
        quantizer.compute_scales(torch.randn(4, 64), **args)


def test_bad_clip_tensor_shape_raises():
    with pytest.raises(QvggtError):
        quantizer.compute_scales(torch.randn(4, 64), 4, 32, clip=torch.ones(4, 3))


def test_int3_grid_for_the_w3_ablation_setting():
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    s = quantizer.compute_scales(w, 3, 32)
    q = quantizer.quantize(w, s, 3, 32)
    assert int(q.min()) >= -4 and int(q.max()) <= 3 and int(q.abs().max()) == 3  # absmax maps to qmax = 3
    err3 = (quantizer.dequantize(q, s, 32) - w).abs().mean()
    s4 = quantizer.compute_scales(w, 4, 32)
    err4 = (quantizer.dequantize(quantizer.quantize(w, s4, 4, 32), s4, 32) - w).abs().mean()
    assert err3 > err4  # fewer levels, larger rounding error
