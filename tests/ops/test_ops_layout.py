"""Canonical INT4 <-> kernel device layout (qvggt_deploy/ops/layout.py)."""
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops.layout import (NIBBLE_K, NIBBLE_N, kernel_shape_error, repack_for_kernel,
                                     unpack_words, unrepack_from_kernel)
from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize


def canonical(n, k, group, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    scales = compute_scales(w, 4, group)
    q = quantize(w, scales, 4, group)
    return q, pack_int4(q), scales.to(torch.float16)


def test_nibble_table_covers_each_16x16_cell_once():
    cells = set(zip(NIBBLE_N.flatten().tolist(), NIBBLE_K.flatten().tolist()))
    assert len(cells) == 256 and all(0 <= n < 16 and 0 <= k < 16 for n, k in cells)


@pytest.mark.parametrize("n,k,group", [(16, 64, 32), (48, 192, 64), (128, 256, 128), (32, 128, 128),
                                       (64, 320, 320)])
def test_repack_round_trip(n, k, group):
    _, packed, scales = canonical(n, k, group)
    qweight_dev, scales_dev = repack_for_kernel(packed, scales, group)
    assert qweight_dev.dtype == torch.int32 and tuple(qweight_dev.shape) == (k // 64, 8 * n)
    assert scales_dev.dtype == torch.float16 and tuple(scales_dev.shape) == (k // group, n)
    back, back_scales = unrepack_from_kernel(qweight_dev, scales_dev, group)
    assert torch.equal(back, packed) and torch.equal(back_scales, scales)


def test_repack_follows_the_layout_block_literally():
    """Word [kc][nb][lane][j], nibble i = q + 8 at (16nb + NIBBLE_N, 64kc + 16j + NIBBLE_K); the
    table itself is the one printed in kernels/w4a16_gemm.cu."""
    n, k = 32, 128
    q, packed, scales = canonical(n, k, 64, seed=3)
    words = repack_for_kernel(packed, scales, 64)[0].reshape(k // 64, n // 16, 32, 4)
    for lane in range(32):
        g, t = divmod(lane, 4)
        assert NIBBLE_N[lane].tolist() == [g, g, g + 8, g + 8, g, g, g + 8, g + 8]
        assert NIBBLE_K[lane].tolist() == [2 * t, 2 * t + 8, 2 * t, 2 * t + 8, 2 * t + 1, 2 * t + 9, 2 * t + 1,
                                           2 * t + 9]
    for kc in range(k // 64):
        for nb in range(n // 16):
            for lane in range(32):
                for j in range(4):
                    word = int(words[kc, nb, lane, j]) & 0xFFFFFFFF
                    for i in range(8):
                        col = 16 * nb + int(NIBBLE_N[lane, i])
                        row_k = 64 * kc + 16 * j + int(NIBBLE_K[lane, i])
                        assert (word >> (4 * i)) & 0xF == int(q[col, row_k]) + 8


def test_unpack_words_gives_q_plus_8():
    q, packed, scales = canonical(48, 128, 32, seed=1)
    qweight_dev, _ = repack_for_kernel(packed, scales, 32)
    assert torch.equal(unpack_words(qweight_dev) - 8, q.to(torch.int64))


@pytest.mark.parametrize("n,k,group,fragment", [(24, 128, 64, "N=24"), (32, 96, 32, "K=96"),
                                                (32, 128, 16, "group size 16"), (32, 192, 128, "group size 128")])
def test_kernel_shape_rules(n, k, group, fragment):
    assert fragment in kernel_shape_error(n, k, group)
    with pytest.raises(QvggtError, match=fragment):
        repack_for_kernel(torch.zeros(n, k // 2, dtype=torch.uint8), torch.ones(n, max(k // group, 1)).half(), group)


def test_repack_rejects_mismatched_scales_and_dtype():
    _, packed, scales = canonical(32, 128, 64)
    with pytest.raises(QvggtError, match="scales shape"):
        repack_for_kernel(packed, scales[:, :1], 64)
    with pytest.raises(QvggtError, match="uint8"):
        repack_for_kernel(packed.to(torch.int32), scales, 64)
