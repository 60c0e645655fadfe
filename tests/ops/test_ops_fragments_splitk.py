"""Lane-by-lane emulation (no GPU) of the small-M paths: the split-K GEMV with its fused,
last-CTA reduction, the cp.async pipeline at the MMA16 tile's 8 stages, and the tensor-core
split-K epilogue / in-kernel reduction addressing. The index arithmetic is a transcript of
kernels/w4a16_gemv.cu, kernels/w4a16_mma.cu and the split choices of kernels/w4a16_gemm.cu (as
tests/ops/test_ops_fragments.py is of the fragment code); keep them in step."""
import itertools

import numpy as np
import pytest
import torch

from qvggt_deploy.ops.layout import repack_for_kernel
from qvggt_deploy.ops.reference import w4a16_gemm_reference
from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

# ------------------------------------------------------------------ host split choice (w4a16_gemm.cu)

K_MAX_SPLITS, K_MIN_CHUNKS = 8, 4
K_MAX_SPLITS_SMALL_M, K_MIN_CHUNKS_SMALL_M = 16, 2
K_GEMV_MIN_CHUNKS, K_GEMV_CTAS_PER_SM = 4, 2
K_SPLITK_MAX_M, K_SM_BOUND = 256, 192
GEMV_WARPS, GEMV_UNROLL = 8, 4
BLOCK_M = {"mma16": 16, "mma64": 64, "mma128": 128}


def ceil_div(a, b):
    return -(-a // b)


def normalize_splits(s, kc_total):
    s = max(1, min(s, kc_total))
    return ceil_div(kc_total, ceil_div(kc_total, s))


def gemv_splits(n, k, sms):
    kc_total = k // 64
    s = min(ceil_div(K_GEMV_CTAS_PER_SM * sms, n // 16), K_MAX_SPLITS_SMALL_M)
    s = min(s, max(1, kc_total // K_GEMV_MIN_CHUNKS))
    return normalize_splits(s, kc_total)


def auto_splits(tile, m, n, k, sms):
    if m > K_SPLITK_MAX_M:
        return 1
    tiles = ceil_div(m, BLOCK_M[tile]) * ceil_div(n, 128)
    if tiles >= sms:
        return 1
    small = tile == "mma16"
    s = min(ceil_div(sms, tiles), K_MAX_SPLITS_SMALL_M if small else K_MAX_SPLITS)
    s = min(s, max(1, (k // 64) // (K_MIN_CHUNKS_SMALL_M if small else K_MIN_CHUNKS)))
    return normalize_splits(s, k // 64)


def counter_count(m, n):  # splitk_counter_count in w4a16_internal.h
    return max(n // 16, ceil_div(m, 16) * ceil_div(n, 128))


def partial_bytes(splits, m, n):
    return 0 if splits <= 1 else splits * m * n * 4 + 4 * counter_count(m, n)


VGGT_KN = [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024),  # aggregator
           (2048, 6144), (2048, 2048), (2048, 8192), (8192, 2048), (2048, 1024)]  # camera head


@pytest.mark.parametrize("sms", [132, 16])  # H100 SXM, Orin AGX
@pytest.mark.parametrize("k,n", VGGT_KN)
def test_small_m_grids_fill_the_gpu_on_every_vggt_shape(k, n, sms):
    """Where the old GEMV launched N/16 CTAs (64 on 132 SMs for N = 1024), the split grid has
    >= 2 CTAs per SM unless K is too short to cut (slices of >= 4 chunks); MMA16 >= 3/4 of the SMs
    (equal slices may round the count down) unless its slices reach 2 chunks."""
    kc = k // 64
    s = gemv_splits(n, k, sms)
    assert (n // 16) * s >= 2 * sms or s == normalize_splits(kc // K_GEMV_MIN_CHUNKS, kc)
    assert ceil_div(kc, s) * (s - 1) < kc  # no empty slice
    s16 = auto_splits("mma16", 16, n, k, sms)
    assert ceil_div(n, 128) * s16 >= 0.75 * sms or s16 in (16, normalize_splits(kc // 2, kc))


# ------------------------------------------------------------------ GEMV CTA (w4a16_gemv.cu)


def gemv_chunks(kc_total, splits, z, warp):
    """The chunks warp `warp` of CTA (nb, z) loads: the kc0 / u loops of w4a16_gemv_kernel."""
    kc_per = ceil_div(kc_total, splits)
    kc_begin = z * kc_per
    kc_end = min(kc_begin + kc_per, kc_total)
    out = []
    for kc0 in range(kc_begin + warp, kc_end, GEMV_WARPS * GEMV_UNROLL):
        out += [kc0 + u * GEMV_WARPS for u in range(GEMV_UNROLL) if kc0 + u * GEMV_WARPS < kc_end]
    return out


@pytest.mark.parametrize("kc_total", [1, 2, 3, 5, 16, 17, 64, 80, 128])
def test_gemv_split_k_covers_every_chunk_once(kc_total):
    for wanted in range(1, 17):
        splits = normalize_splits(wanted, kc_total)
        seen = [kc for z in range(splits) for w in range(GEMV_WARPS) for kc in gemv_chunks(kc_total, splits, z, w)]
        assert sorted(seen) == list(range(kc_total)), (kc_total, splits)
        assert all(any(gemv_chunks(kc_total, splits, z, w) for w in range(GEMV_WARPS)) for z in range(splits))


def as_half2(bits):
    bits = np.asarray(bits, dtype=np.uint32)
    return np.stack([bits & 0xFFFF, bits >> 16], axis=-1).astype(np.uint16).view(np.float16)


def dequant_words(words, s_g, s_g8):
    """qvggt::dequant_word over arrays of words (one per lane): four [lanes, 2] fp16 registers."""
    words = np.asarray(words, dtype=np.uint32)
    shifted = words >> 8

    def low(x):
        return as_half2((x & 0x000F000F) | 0x64006400) - np.float16(1032)

    def high(x):
        return (as_half2((x & 0x00F000F0) | 0x64006400).astype(np.float64) / 16 - 72).astype(np.float16)

    q = [low(words), high(words), low(shifted), high(shifted)]
    s = [s_g, s_g, s_g8, s_g8]
    return [(qi.astype(np.float32) * np.asarray(si, np.float32)[:, None]).astype(np.float16) for qi, si in zip(q, s)]


def emulate_gemv(a, words, scales, bias, group, splits, arrival_order=None):
    """Every CTA of w4a16_gemv_kernel<MAXM> in float32, lane by lane, then the ticketed reduction.
    Returns (out fp16 [m, n], which CTA reduced each n16 block)."""
    m, k = a.shape
    kc_total, nb_total = words.shape[0], words.shape[1]
    n = 16 * nb_total
    lanes = np.arange(32)
    g, t = lanes // 4, lanes % 4
    a32 = a.astype(np.float32)
    cta_sums = {}
    for nb, z in itertools.product(range(nb_total), range(splits)):
        partial = np.zeros((GEMV_WARPS, m, 16), np.float32)  # __shared__ partial[warp][mi][c]
        for warp in range(GEMV_WARPS):
            acc = np.zeros((m, 2, 32), np.float32)
            for kc in gemv_chunks(kc_total, splits, z, warp):
                for j in range(4):
                    k0 = kc * 64 + j * 16
                    srow = scales[k0 // group]
                    f = dequant_words(words[kc, nb, :, j], srow[nb * 16 + g], srow[nb * 16 + g + 8])
                    w_lo, w_hi, v_lo, v_hi = (x.astype(np.float32) for x in f)
                    for mi in range(m):
                        a_lo = np.stack([a32[mi, k0 + 2 * t], a32[mi, k0 + 2 * t + 1]], -1)
                        a_hi = np.stack([a32[mi, k0 + 2 * t + 8], a32[mi, k0 + 2 * t + 9]], -1)
                        s0, s1 = acc[mi, 0], acc[mi, 1]
                        # fmaf with an exact fp16 x fp16 product: one float32 rounding per step
                        for wv, av in ((w_lo[:, 0], a_lo[:, 0]), (w_lo[:, 1], a_lo[:, 1]),
                                       (w_hi[:, 0], a_hi[:, 0]), (w_hi[:, 1], a_hi[:, 1])):
                            s0 = (wv * av + s0).astype(np.float32)
                        for wv, av in ((v_lo[:, 0], a_lo[:, 0]), (v_lo[:, 1], a_lo[:, 1]),
                                       (v_hi[:, 0], a_hi[:, 0]), (v_hi[:, 1], a_hi[:, 1])):
                            s1 = (wv * av + s1).astype(np.float32)
                        acc[mi, 0], acc[mi, 1] = s0, s1
            for mi in range(m):
                for c in range(2):
                    v = acc[mi, c]
                    v = v + v[lanes ^ 1]  # __shfl_xor_sync(v, 1)
                    v = v + v[lanes ^ 2]  # __shfl_xor_sync(v, 2)
                    for gg in range(8):   # lanes with t == 0 store
                        partial[warp, mi, gg + 8 * c] = v[4 * gg]
        s = np.zeros((m, 16), np.float32)
        for w8 in range(GEMV_WARPS):
            s = (s + partial[w8]).astype(np.float32)
        cta_sums[nb, z] = s

    out = np.zeros((m, n), np.float16)
    reducer = {}
    workspace = np.full((splits, m, n), np.nan, np.float32)
    counters = np.zeros(nb_total, np.int64)  # cudaMemsetAsync before the launch
    order = arrival_order or [(nb, z) for nb in range(nb_total) for z in range(splits)]
    for nb, z in order:
        s = cta_sums[nb, z]
        if splits > 1:
            workspace[z, :, nb * 16:(nb + 1) * 16] = s  # partials stored before the ticket
            ticket = counters[nb]
            counters[nb] += 1
            if ticket != splits - 1:
                continue
            reducer[nb] = z
            s = np.zeros((m, 16), np.float32)
            for zz in range(splits):  # slice order, whoever arrived last
                part = workspace[zz, :, nb * 16:(nb + 1) * 16]
                assert not np.isnan(part).any(), "the last CTA must see every slice"
                s = (s + part).astype(np.float32)
        if bias is not None:
            s = (s + bias[nb * 16:(nb + 1) * 16].astype(np.float32)).astype(np.float32)
        out[:, nb * 16:(nb + 1) * 16] = s.astype(np.float16)
    return out, reducer


def quantized_case(m, n, k, group, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    scales = compute_scales(w, 4, group)
    qweight, scales_dev = repack_for_kernel(pack_int4(quantize(w, scales, 4, group)), scales.half(), group)
    a = (torch.randn(m, k, generator=gen) * 0.5).half()
    bias = (torch.randn(n, generator=gen) * 0.1).half() if seed % 2 else None
    return a, qweight, scales_dev, bias


@pytest.mark.parametrize("m,n,k,group,splits", [
    (1, 32, 256, 64, 1), (1, 32, 256, 64, 4), (3, 16, 320, 32, 3), (4, 48, 1024, 128, 4), (2, 32, 2048, 2048, 8),
    (8, 16, 512, 128, 2),
])
def test_gemv_emulation_matches_the_reference(m, n, k, group, splits):
    a, qweight, scales, bias = quantized_case(m, n, k, group, seed=m + splits)
    words = qweight.numpy().view(np.uint32).reshape(k // 64, n // 16, 32, 4)
    got, reducer = emulate_gemv(a.numpy(), words, scales.numpy(), None if bias is None else bias.numpy(), group,
                                splits)
    expected = w4a16_gemm_reference(a, qweight, scales, bias, group).numpy()
    # only the FP32 summation order differs from the reference: fp16 rounding level
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64)).mean() / np.abs(expected).mean()
    assert err < 1e-3
    assert len(reducer) == (n // 16 if splits > 1 else 0)  # exactly one reducing CTA per block


def test_fused_reduction_is_deterministic_whoever_arrives_last():
    m, n, k, group, splits = 2, 32, 512, 64, 4
    a, qweight, scales, bias = quantized_case(m, n, k, group, seed=3)
    words = qweight.numpy().view(np.uint32).reshape(k // 64, n // 16, 32, 4)
    ctas = [(nb, z) for nb in range(n // 16) for z in range(splits)]
    rng = np.random.default_rng(0)
    results, reducers = [], set()
    for _ in range(4):
        order = [ctas[i] for i in rng.permutation(len(ctas))]
        out, reducer = emulate_gemv(a.numpy(), words, scales.numpy(), bias.numpy(), group, splits, order)
        results.append(out)
        reducers.add(tuple(sorted(reducer.items())))
    assert all(np.array_equal(results[0].view(np.uint16), r.view(np.uint16)) for r in results[1:])
    assert len(reducers) > 1  # different CTAs did the reduction, with bit-identical results


# ------------------------------------------------------------------ tensor-core kernel (w4a16_mma.cu)

# (BM, WARPS_M, STAGES) of launch_mma
TILES = {"mma16": (16, 1, 8), "mma64": (64, 2, 4), "mma128": (128, 2, 4)}


def smem_bytes(bm, stages):
    return stages * (bm * 64 * 2 + 8 * 512 + 2 * 128 * 2)


@pytest.mark.parametrize("tile", TILES)
def test_stage_sizes_fit_and_mma16_keeps_more_in_flight(tile):
    bm, _, stages = TILES[tile]
    assert smem_bytes(bm, stages) <= 99 * 1024  # the static_assert in Tile (sm_86/sm_89 limit)
    assert smem_bytes(16, 8) == 53248 and smem_bytes(128, 4) == 83968
    in_flight = (stages - 1) * (bm * 64 * 2 + 4096 + 512)
    if tile == "mma16":
        assert in_flight == 7 * 6656 > 2 * 3 * 6656  # 45.5 KB, was 19.5 KB at 4 stages


@pytest.mark.parametrize("stages", [4, 8])
def test_pipeline_schedule_never_reads_a_chunk_early_or_overwrites_a_live_stage(stages):
    """Transcript of the prologue and main loop: groups are committed in order, each
    cp.async.wait_group<STAGES-2> leaves at most STAGES-2 groups pending."""
    for nk in range(1, 25):
        group_chunk = []  # group index -> chunk it carries (None: empty group)
        stage_of_chunk = {}
        for s in range(stages - 1):
            group_chunk.append(s if s < nk else None)
            if s < nk:
                stage_of_chunk[s] = s
        live = {}  # stage -> chunk loaded and not yet consumed
        for c, st in stage_of_chunk.items():
            live[st] = c
        for it in range(nk):
            completed = len(group_chunk) - (stages - 2)  # wait_group: the oldest groups are done
            landed = {c for c in group_chunk[:max(completed, 0)] if c is not None}
            assert it in landed, (stages, nk, it)
            # __syncthreads: stage (it-1) % STAGES was consumed in iteration it-1
            live.pop((it - 1) % stages, None) if it > 0 else None
            nxt = it + stages - 1
            if nxt < nk:
                st = nxt % stages
                assert st not in live, "refilled a stage whose chunk is still to be read"
                assert st != it % stages
                live[st] = nxt
            group_chunk.append(nxt if nxt < nk else None)
            assert live.get(it % stages) == it  # the stage read now holds chunk `it`


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("m,n", [(16, 128), (5, 48), (100, 320), (300, 256)])
def test_split_epilogue_writes_exactly_what_the_last_cta_reads(tile, m, n):
    bm, warps_m, _ = TILES[tile]
    warps_n = 8 // warps_m
    warp_m_rows, warp_n_cols = bm // warps_m, 128 // warps_n
    mt_count, nb_count = warp_m_rows // 16, warp_n_cols // 16
    for by, bx in itertools.product(range(ceil_div(m, bm)), range(ceil_div(n, 128))):
        m0, n0 = by * bm, bx * 128
        written = set()
        for warp, lane in itertools.product(range(8), range(32)):
            wm, wn, g, t = warp // warps_n, warp % warps_n, lane >> 2, lane & 3
            for h in range(2 * nb_count):
                col = n0 + (wn * nb_count + (h >> 1)) * 16 + (h & 1) * 8 + 2 * t
                if col >= n:
                    continue
                for mt, half_row in itertools.product(range(mt_count), range(2)):
                    row = m0 + wm * warp_m_rows + mt * 16 + g + 8 * half_row
                    if row < m:
                        assert not {(row, col), (row, col + 1)} & written
                        written |= {(row, col), (row, col + 1)}
        read = set()
        for tid in range(256):
            for q in range(tid, bm * 32, 256):
                row, col = m0 + q // 32, n0 + (q % 32) * 4
                if row < m and col < n:
                    assert not {(row, col + i) for i in range(4)} & read
                    read |= {(row, col + i) for i in range(4)}
        expected = {(r, c) for r in range(m0, min(m0 + bm, m)) for c in range(n0, min(n0 + 128, n))}
        assert written == read == expected
        assert by * ceil_div(n, 128) + bx < counter_count(m, n)  # its counter is inside the workspace
