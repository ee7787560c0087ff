// SPDX-License-Identifier: Apache-2.0
/* compress.cu — φ = avg on the GPU: compressed block i of a raw key/value sequence is the mean
 * of raw rows [i·d, i·d + l) (docs/design.md §1.1), summed in ascending row order in double, then
 * divided by l, exactly like nsa_ref_compress_block; one rounding to the output dtype.
 * Not the learnable φ (the caller passes compressed tensors for that).
 */
#include "common.cuh"

/* Grid: one thread per output element (b, i, hk, e), 256 threads per block, x-dimension over
 * B·Tc·Hkv·D. Shared memory: none. Reads are coalesced along e. */
template <typename Tin, typename Tout>
__global__ void compress_kernel(nsa_cu_view raw, int B, int Tc, int Hkv, int D, int l, int d,
                                Tout *out) {
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t total = (int64_t)B * Tc * Hkv * D;
    if (idx >= total) return;
    int e = (int)(idx % D);
    int64_t rest = idx / D;
    int hk = (int)(rest % Hkv);
    rest /= Hkv;
    int64_t i = rest % Tc, b = rest / Tc;
    double s = 0.0;
    for (int r = 0; r < l; r++) s += (double)nsa_cu_ld<Tin>(raw, b, i * d + r, hk, e);
    out[idx] = nsa_cu_to<Tout>((float)(s / (double)l));
}

template <typename Tin>
static void launch_in(nsa_cu_stream st, nsa_dtype out_dt, const nsa_cu_view *raw, int B, int Tc,
                      int Hkv, int D, int l, int d, void *out) {
    int64_t total = (int64_t)B * Tc * Hkv * D;
    unsigned g = nsa_cu_blocks(total, 256);
    switch (out_dt) {
    case NSA_DTYPE_BF16:
        compress_kernel<Tin, __nv_bfloat16><<<g, 256, 0, st>>>(*raw, B, Tc, Hkv, D, l, d,
                                                               (__nv_bfloat16 *)out);
        break;
    case NSA_DTYPE_F16:
        compress_kernel<Tin, __half><<<g, 256, 0, st>>>(*raw, B, Tc, Hkv, D, l, d, (__half *)out);
        break;
    default:
        compress_kernel<Tin, float><<<g, 256, 0, st>>>(*raw, B, Tc, Hkv, D, l, d, (float *)out);
        break;
    }
}

nsa_status nsa_cu_compress(nsa_context *ctx, nsa_cu_stream st, nsa_dtype in_dt, nsa_dtype out_dt,
                           const nsa_cu_view *raw, int B, int T, int Tc, int Hkv, int D, int l,
                           int d, void *out) {
    (void)T;
    if ((int64_t)B * Tc * Hkv * D == 0) return NSA_OK;
    switch (in_dt) {
    case NSA_DTYPE_BF16: launch_in<__nv_bfloat16>(st, out_dt, raw, B, Tc, Hkv, D, l, d, out); break;
    case NSA_DTYPE_F16: launch_in<__half>(st, out_dt, raw, B, Tc, Hkv, D, l, d, out); break;
    default: launch_in<float>(st, out_dt, raw, B, Tc, Hkv, D, l, d, out); break;
    }
    NSA_CU_LAUNCHED(ctx, "compress");
    return NSA_OK;
}
