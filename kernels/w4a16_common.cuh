// Device helpers shared by the W4A16 kernels. Only sm_80+ PTX (cp.async, ldmatrix,
// mma.sync m16n8k16, lop3): the same code compiles for sm_80/86/87/89/90 with nvcc 12.6
// (JetPack 6) and 13.0. Layout facts used here are those of the LAYOUT block in w4a16_gemm.cu.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>

namespace qvggt {

// Marks a pointer whose data is read-only for the whole kernel, so loads may use the
// non-coherent (texture) path.
#define QVGGT_RESTRICT __restrict__

// ---------------------------------------------------------------------------------------------
// Bit casts. half2 and uint32_t are both 32-bit registers; these only rename them (no code).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ half2 as_half2(uint32_t x) {
    half2 h;
    static_assert(sizeof(h) == sizeof(x), "half2 must be 32 bits");
    __builtin_memcpy(&h, &x, sizeof(x));
    return h;
}

__device__ __forceinline__ uint32_t as_u32(half2 h) {
    uint32_t x;
    __builtin_memcpy(&x, &h, sizeof(x));
    return x;
}

// ---------------------------------------------------------------------------------------------
// Asynchronous copies (sm_80). cp.async moves global -> shared without staging through
// registers, so a CTA can keep STAGES tiles in flight while its warps compute on another one.
// ---------------------------------------------------------------------------------------------

// 16-byte copy; when `pred` is false the 16 shared bytes are zero-filled (src-size 0) and no
// global byte is read: this is how rows past M and columns past N become zeros without a
// branch around the copy. `.cg` bypasses L1: every tile is used once per CTA.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const int src_bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}

// Closes the group of copies issued so far by this thread. Every pipeline iteration commits
// one group, even an empty one, so that wait_group counts stay in step with stages.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N of this thread's groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---------------------------------------------------------------------------------------------
// Tensor cores (sm_80 mma.sync; also the fastest warp-level MMA on sm_86/87/89 and valid on
// sm_90, where only wgmma would be faster and needs sm_90a, which Jetson cannot run).
// ---------------------------------------------------------------------------------------------

// Loads a 16x16 fp16 A fragment from shared memory in the register order mma.m16n8k16 wants
// (a0: rows 0-7 k 0-7, a1: rows 8-15 k 0-7, a2: rows 0-7 k 8-15, a3: rows 8-15 k 8-15).
// Each lane passes the address of one 16-byte row segment: lanes 0-15 rows 0-15 at k 0-7,
// lanes 16-31 rows 0-15 at k 8-15. One instruction instead of eight 32-bit shared loads.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// c += a (16x16, row) * b (16x8, col); fp16 inputs, fp32 accumulators. Fragment ownership
// (PTX ISA, "mma.m16n8k16 .f16"): lane = 4*g + t; b0 = B[k=2t,2t+1][n=g], b1 = B[k=2t+8,2t+9][n=g];
// c0,c1 = C[row g][col 2t,2t+1], c2,c3 = C[row g+8][col 2t,2t+1].
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------------------------------------
// INT4 -> FP16 dequantisation in registers (no INT4 tensor-core path exists on sm_8x/sm_90).
// ---------------------------------------------------------------------------------------------

// (a & b) | c in ONE instruction; the immediate is the truth table of that expression over
// the canonical inputs a=0xF0, b=0xCC, c=0xAA: (0xF0 & 0xCC) | 0xAA = 0xEA.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// One packed word (LAYOUT block: nibble i at bits 4i..4i+3, value u = q + 8) -> the four B
// fragment registers of two n8 tiles for one k16 step, already multiplied by their scales:
//   frag[0] = b0 of tile n=g, frag[1] = b1 of tile n=g, frag[2] = b0 of n=g+8, frag[3] = b1 of n=g+8.
// Why this works without integer->float conversions: OR-ing a nibble into the mantissa of
// fp16 1024.0 (0x6400, ulp 1) gives exactly 1024 + u; the nibble sitting 4 bits higher gives
// 1024 + 16u. Masks 0x000F000F / 0x00F000F0 pick nibbles (0, 4) / (1, 5), i.e. the (low, high)
// halves of one half2 are k and k+1 of the same column; `>> 8` exposes nibbles (2, 6) / (3, 7).
//   q = (1024 + u) - 1032                  (exact)
//   q = (1024 + 16u) * (1/16) - 72        (one fma, exact)
//   w = fp16(q * s)                        (correctly rounded: the CPU reference rounds here too)
__device__ __forceinline__ void dequant_word(uint32_t word, half2 s_g, half2 s_g8, uint32_t (&frag)[4]) {
    constexpr uint32_t kLowNibbles = 0x000F000Fu;
    constexpr uint32_t kHighNibbles = 0x00F000F0u;
    constexpr uint32_t kExp1024 = 0x64006400u;  // half2(1024, 1024)
    constexpr uint32_t kSub1032 = 0x64086408u;  // half2(1032, 1032)
    constexpr uint32_t kOne16th = 0x2C002C00u;  // half2(1/16, 1/16)
    constexpr uint32_t kNeg72 = 0xD480D480u;    // half2(-72, -72)
    const uint32_t shifted = word >> 8;
    const half2 q0 = __hsub2(as_half2(and_or(word, kLowNibbles, kExp1024)), as_half2(kSub1032));
    const half2 q1 = __hfma2(as_half2(and_or(word, kHighNibbles, kExp1024)), as_half2(kOne16th), as_half2(kNeg72));
    const half2 q2 = __hsub2(as_half2(and_or(shifted, kLowNibbles, kExp1024)), as_half2(kSub1032));
    const half2 q3 = __hfma2(as_half2(and_or(shifted, kHighNibbles, kExp1024)), as_half2(kOne16th), as_half2(kNeg72));
    frag[0] = as_u32(__hmul2(q0, s_g));
    frag[1] = as_u32(__hmul2(q1, s_g));
    frag[2] = as_u32(__hmul2(q2, s_g8));
    frag[3] = as_u32(__hmul2(q3, s_g8));
}

// ---------------------------------------------------------------------------------------------
// Split-K, reduced in the kernel: each CTA stores its fp32 partials, then this arrival check.
// ---------------------------------------------------------------------------------------------

// Called by every thread of the CTA after its partial-sum stores. The fence makes each thread's
// stores visible device-wide before thread 0 takes a ticket from the tile's counter (zeroed by
// the host before the launch); true, in every thread, for the CTA that drew the last ticket, whose
// later __ldcg reads of the other slices' partials then see their stores.
__device__ __forceinline__ bool last_cta_of_tile(int* counter, int splits, bool* flag) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) *flag = atomicAdd(counter, 1) == splits - 1;
    __syncthreads();
    const bool last = *flag;
    if (last) __threadfence();
    return last;
}

}  // namespace qvggt
