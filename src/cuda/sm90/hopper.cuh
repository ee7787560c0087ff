// SPDX-License-Identifier: Apache-2.0
/* hopper.cuh — the Hopper (sm_90a) building blocks every sm90/ kernel uses: mbarrier phases, TMA
 * tile loads onto mbarriers, proxy fences and named barriers (libcu++ cuda::ptx), wgmma
 * m64nNk16 with f32 accumulators for bf16/f16 (inline PTX: cuda::ptx has no wgmma), setmaxnreg,
 * and the host side of TMA: a 4-d tensor map of a (B, T, H, D) view, encoded through the
 * runtime's driver entry point (no -lcuda).
 * Not a tile library: the shared-memory layouts and descriptors are hopper_layout.h's, and each
 * kernel owns its pipeline. Device code here assembles only for sm_90a (wgmma, setmaxnreg).
 * Invariant: a wgmma's accumulators are read only after hp_wgmma_wait and hp_fence_regs; shared
 * memory written by ordinary stores is fenced (hp_fence_async) before wgmma or TMA reads it.
 */
#ifndef NSA_CUDA_HOPPER_CUH
#define NSA_CUDA_HOPPER_CUH

#include "../mma.cuh"
#include "hopper_layout.h"

#include <cuda.h> /* CUtensorMap and its enums: types only, the encoder comes at run time */
#include <cudaTypedefs.h>
#include <cuda/ptx>

template <typename T> struct hp_is_bf16 { static constexpr bool value = false; };
template <> struct hp_is_bf16<__nv_bfloat16> { static constexpr bool value = true; };

/* ---- mbarrier: one phase per use; a waiter passes the parity of the phase it waits for ---- */
__device__ __forceinline__ void hp_bar_init(uint64_t *bar, uint32_t arrivals) {
    cuda::ptx::mbarrier_init(bar, arrivals);
}
/* After the inits, before the block barrier that publishes them (TMA completes on them). */
__device__ __forceinline__ void hp_bar_init_fence() {
    cuda::ptx::fence_mbarrier_init(cuda::ptx::sem_release, cuda::ptx::scope_cluster);
}
/* The producer's arrival: this phase also waits for `bytes` of TMA transactions. */
__device__ __forceinline__ void hp_bar_expect(uint64_t *bar, uint32_t bytes) {
    (void)cuda::ptx::mbarrier_arrive_expect_tx(cuda::ptx::sem_release, cuda::ptx::scope_cta,
                                               cuda::ptx::space_shared, bar, bytes);
}
__device__ __forceinline__ void hp_bar_arrive(uint64_t *bar) { (void)cuda::ptx::mbarrier_arrive(bar); }
/* Returns once the phase of parity `parity` has completed (a fresh barrier: parity 1 passes). */
__device__ __forceinline__ void hp_bar_wait(uint64_t *bar, uint32_t parity) {
    while (!cuda::ptx::mbarrier_try_wait_parity(bar, parity)) {
    }
}

/* ---- TMA, fences, named barriers ---- */
/* Box (c0.., c1, c2, c3) of 4-d tensor map `map` into shared `dst`, completing on `bar`. */
__device__ __forceinline__ void hp_tma_load4(void *dst, const CUtensorMap *map, int c0, int c1,
                                             int c2, int c3, uint64_t *bar) {
    const int32_t c[4] = {c0, c1, c2, c3};
    cuda::ptx::cp_async_bulk_tensor(cuda::ptx::space_shared, cuda::ptx::space_global, dst, map, c,
                                    bar);
}
/* Orders this thread's generic-proxy shared-memory writes (st.shared, cp.async) before later
 * async-proxy reads (wgmma operands, TMA). */
__device__ __forceinline__ void hp_fence_async() {
    cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
}
/* Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads, e.g. one warpgroup. */
__device__ __forceinline__ void hp_bar_named(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/* ---- registers per thread of a warpgroup (the kernel needs __launch_bounds__(n, 1)) ---- */
template <int R> __device__ __forceinline__ void hp_regs_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void hp_regs_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}

/* ---- wgmma: issued by a whole warpgroup; D is the m64nN f32 accumulator fragment ----
 * Thread (warp w, lane) of the warpgroup holds D[4j + e] = element (16w + lane/4 + 8·(e/2),
 * 8j + 2·(lane%4) + e%2); the A fragment in registers (m64k16) is the same pattern for 16 columns,
 * so an S accumulator converts to P·V's A operand in place (hp_pack_a). */
__device__ __forceinline__ void hp_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void hp_wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void hp_wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Pins accumulators after a wait so no read of them moves above it. */
template <int N> __device__ __forceinline__ void hp_fence_regs(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
/* The A fragment of k-step kk (columns 16kk..16kk+15) from an f32 accumulator, rounded to T. */
template <typename T, int N>
__device__ __forceinline__ void hp_pack_a(uint32_t (&a)[4], const float (&d)[N], int kk) {
    a[0] = pack2<T>(d[8 * kk + 0], d[8 * kk + 1]);
    a[1] = pack2<T>(d[8 * kk + 2], d[8 * kk + 3]);
    a[2] = pack2<T>(d[8 * kk + 4], d[8 * kk + 5]);
    a[3] = pack2<T>(d[8 * kk + 6], d[8 * kk + 7]);
}

/* The asm of one wgmma: accumulators are operands %0.. (HP_REGS*, HP_OUT*), then SS: desc A,
 * desc B, scale-d; RS: A0-A3, desc B, scale-d. scale_d = 0 ignores the old D (D = A·B);
 * imm-scale-a/b = 1; SS: both K-major (trans 0, 0); RS: B MN-major (trans-b 1). */
#define HP_REGS32 \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define HP_REGS64 \
    HP_REGS32 ", " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define HP_OUT32 \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define HP_OUT64 \
    HP_OUT32, \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define HP_SS(N, TY, REGS, OUTS, A, B, SC) \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" SC ", 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TY "." TY " {" REGS "}, %" A \
                 ", %" B ", p, 1, 1, 0, 0;\n}\n" \
                 : OUTS : "l"(da), "l"(db), "r"(scale_d))
#define HP_RS(N, TY, REGS, OUTS, A0, B, SC) \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" SC ", 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TY "." TY " {" REGS "}, " A0 \
                 ", %" B ", p, 1, 1, 1;\n}\n" \
                 : OUTS : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d))

/* D (64 x N) += A·B with A (64 x 16) and B (16 x N) in shared memory, both K-major. */
template <typename T, int N>
__device__ __forceinline__ void hp_wgmma_ss(float (&d)[N / 2], uint64_t da, uint64_t db,
                                            int scale_d) {
    static_assert(N == 64 || N == 128, "wgmma N: 64 or 128");
    if constexpr (N == 64) {
        if constexpr (hp_is_bf16<T>::value) HP_SS("64", "bf16", HP_REGS32, HP_OUT32, "32", "33", "34");
        else HP_SS("64", "f16", HP_REGS32, HP_OUT32, "32", "33", "34");
    } else {
        if constexpr (hp_is_bf16<T>::value) HP_SS("128", "bf16", HP_REGS64, HP_OUT64, "64", "65", "66");
        else HP_SS("128", "f16", HP_REGS64, HP_OUT64, "64", "65", "66");
    }
}
/* D (64 x N) += A·B with A (64 x 16) in registers and B (16 x N) MN-major in shared memory. */
template <typename T, int N>
__device__ __forceinline__ void hp_wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4],
                                            uint64_t db, int scale_d) {
    static_assert(N == 64 || N == 128, "wgmma N: 64 or 128");
    if constexpr (N == 64) {
        if constexpr (hp_is_bf16<T>::value) HP_RS("64", "bf16", HP_REGS32, HP_OUT32, "{%32, %33, %34, %35}", "36", "37");
        else HP_RS("64", "f16", HP_REGS32, HP_OUT32, "{%32, %33, %34, %35}", "36", "37");
    } else {
        if constexpr (hp_is_bf16<T>::value) HP_RS("128", "bf16", HP_REGS64, HP_OUT64, "{%64, %65, %66, %67}", "68", "69");
        else HP_RS("128", "f16", HP_REGS64, HP_OUT64, "{%64, %65, %66, %67}", "68", "69");
    }
}
#undef HP_SS
#undef HP_RS
#undef HP_REGS32
#undef HP_REGS64
#undef HP_OUT32
#undef HP_OUT64

/* ---- host: TMA tensor maps ---- */

/* Tensor map of view v, a (B, Tn, H, D) tensor of bf16/f16 with D contiguous (checked by the
 * caller: nsa_cu_aligned16), for boxes of 64 elements of D × 1 head × `rows` tokens × 1 batch
 * row, swizzled by 128 B (hopper_layout.h's tile), out-of-range tokens read as zeros. A view with
 * Tn = 0 gets a zeroed map (never loaded). NSA_ERR_UNSUPPORTED when the driver lacks TMA or
 * rejects the strides (they must nest: D, head, token, batch). */
static inline nsa_status nsa_hp_tmap(nsa_context *ctx, CUtensorMap *m, nsa_dtype dt,
                                     const nsa_cu_view *v, int64_t Tn, int H, int D, int B,
                                     int rows, const char *what) {
    memset(m, 0, sizeof *m);
    if (Tn == 0) return NSA_OK;
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || !fn) {
        cudaGetLastError();
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "%s: the CUDA driver has no cuTensorMapEncodeTiled",
                        what);
    }
    const cuuint64_t dim[4] = {(cuuint64_t)D, (cuuint64_t)H, (cuuint64_t)Tn, (cuuint64_t)B};
    /* one batch row: its stride is never stepped; give it the nested value TMA expects */
    const cuuint64_t str[3] = {(cuuint64_t)v->sh * 2, (cuuint64_t)v->st * 2,
                               (cuuint64_t)(B > 1 ? v->sb : v->st * Tn) * 2};
    const cuuint32_t box[4] = {64, 1, (cuuint32_t)rows, 1}, one[4] = {1, 1, 1, 1};
    CUresult r = ((PFN_cuTensorMapEncodeTiled_v12000)fn)(m, dt == NSA_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                                 4, (void *)v->p, dim, str, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                 CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED,
                        "%s: TMA rejects the view (CUresult %d; strides must nest: D, head, token, "
                        "batch)", what, (int)r);
    return NSA_OK;
}

#endif /* NSA_CUDA_HOPPER_CUH */
