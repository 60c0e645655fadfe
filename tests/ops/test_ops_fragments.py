"""Emulates, lane by lane, what the CUDA kernels do with the device layout, against the PTX ISA's
fragment definitions for mma.m16n8k16 (no GPU needed). The index arithmetic below is a transcript
of kernels/w4a16_common.cuh (dequant_word) and kernels/w4a16_mma.cu (swizzle, ldmatrix addresses);
keep them in step."""
import numpy as np
import pytest
import torch

from qvggt_deploy.ops.layout import repack_for_kernel
from qvggt_deploy.ops.reference import dequantize_reference
from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize


def as_half2(bits):
    """uint32 -> (low half, high half) as float16, like a register reinterpret."""
    return np.array([bits & 0xFFFF, bits >> 16], dtype=np.uint16).view(np.float16)


def dequant_word(word, s_g, s_g8):
    """Transcript of qvggt::dequant_word: four half2 fragment registers."""
    word &= 0xFFFFFFFF
    shifted = word >> 8

    def low(x):  # hsub2(x | 1024, 1032): exact in fp16
        return as_half2((x & 0x000F000F) | 0x64006400) - np.float16(1032)

    def high(x):  # hfma2(x | 1024, 1/16, -72): one rounding of an exact value
        return (as_half2((x & 0x00F000F0) | 0x64006400).astype(np.float64) / 16 - 72).astype(np.float16)

    q = [low(word), high(word), low(shifted), high(shifted)]
    scales = [s_g, s_g, s_g8, s_g8]
    # hmul2: fp16 x fp16 is exact in fp32, numpy rounds once to fp16 (= the IEEE fp16 multiply).
    return [(qi.astype(np.float32) * np.float32(si)).astype(np.float16) for qi, si in zip(q, scales)]


@pytest.mark.parametrize("group", [32, 64, 128])
def test_each_lane_gets_its_mma_b_fragments(group):
    n, k = 32, 256
    gen = torch.Generator().manual_seed(group)
    w = torch.randn(n, k, generator=gen)
    scales = compute_scales(w, 4, group)
    qweight_dev, scales_dev = repack_for_kernel(pack_int4(quantize(w, scales, 4, group)), scales.half(), group)
    words = qweight_dev.numpy().view(np.uint32).reshape(k // 64, n // 16, 32, 4)
    s = scales_dev.numpy()
    expected = dequantize_reference(qweight_dev, scales_dev, group).numpy()  # fp16 [N, K]
    for kc in range(k // 64):
        for nb in range(n // 16):
            for j in range(4):
                k0 = 64 * kc + 16 * j
                # B = W^T restricted to this k16 step: B[kk][nn] = w[16nb + nn][k0 + kk]
                b_tile0 = np.zeros((16, 8), np.float16)
                b_tile1 = np.zeros((16, 8), np.float16)
                for lane in range(32):
                    g, t = divmod(lane, 4)
                    srow = s[k0 // group]
                    f = dequant_word(int(words[kc, nb, lane, j]), srow[16 * nb + g], srow[16 * nb + g + 8])
                    # PTX: b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g] (low half = lower k)
                    for tile, b0, b1 in ((b_tile0, f[0], f[1]), (b_tile1, f[2], f[3])):
                        tile[2 * t:2 * t + 2, g] = b0
                        tile[2 * t + 8:2 * t + 10, g] = b1
                assert np.array_equal(b_tile0, expected[16 * nb:16 * nb + 8, k0:k0 + 16].T)
                assert np.array_equal(b_tile1, expected[16 * nb + 8:16 * nb + 16, k0:k0 + 16].T)


def swizzle(row, chunk):
    """Transcript of the A-tile swizzle: element offset of 16-byte chunk `chunk` of row `row`."""
    return row * 64 + ((chunk ^ (row & 7)) << 3)


def test_a_tile_swizzle_and_ldmatrix_addresses_give_mma_a_fragments():
    rows = 64
    a = np.arange(rows * 64, dtype=np.float32).reshape(rows, 64)
    smem = np.full(rows * 64, np.nan, np.float32)
    for r in range(rows):  # load_stage: chunk c of row r goes to swizzle(r, c)
        for c in range(8):
            smem[swizzle(r, c):swizzle(r, c) + 8] = a[r, 8 * c:8 * c + 8]
    assert not np.isnan(smem).any()
    for m16 in range(0, rows, 16):
        for j in range(4):
            # ldmatrix.x4: lane L supplies the address of row (L % 8) of matrix L // 8; lane
            # 4g + t then receives elements (g, 2t..2t+1) of each matrix, matrix i in register i.
            addresses = [swizzle(m16 + (lane & 15), 2 * j + (lane >> 4)) for lane in range(32)]
            for lane in range(32):
                g, t = divmod(lane, 4)
                regs = [smem[addresses[8 * i + g] + 2 * t:addresses[8 * i + g] + 2 * t + 2] for i in range(4)]
                k0 = 16 * j
                # PTX A fragment: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
                assert np.array_equal(regs[0], a[m16 + g, k0 + 2 * t:k0 + 2 * t + 2])
                assert np.array_equal(regs[1], a[m16 + g + 8, k0 + 2 * t:k0 + 2 * t + 2])
                assert np.array_equal(regs[2], a[m16 + g, k0 + 2 * t + 8:k0 + 2 * t + 10])
                assert np.array_equal(regs[3], a[m16 + g + 8, k0 + 2 * t + 8:k0 + 2 * t + 10])


def test_ldmatrix_phases_are_bank_conflict_free():
    """Each 8-lane phase of ldmatrix reads 8 rows' 16-byte segments; with the swizzle they sit in
    8 different 16-byte bank groups (a 128-byte row spans all 32 banks)."""
    for m16 in range(0, 128, 16):
        for j in range(4):
            for phase in range(4):
                lanes = range(8 * phase, 8 * phase + 8)
                groups = {(swizzle(m16 + (lane & 15), 2 * j + (lane >> 4)) * 2 // 16) % 8 for lane in lanes}
                assert len(groups) == 8
