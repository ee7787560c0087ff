// SPDX-License-Identifier: Apache-2.0
/* bwd_tiled_index.cu — the bookkeeping of the tiled CUDA backward's key side: the inverse
 * selection index (queries per (b, KV head, selection block), ascending t, from the bitmap), the
 * split offsets of every key tile, and the in-order sum of the partial slots of split walks.
 * Not the attention math (bwd_tiled.cu).
 * Invariant: counts by popcount and one fixed-order prefix; slots added in split order; no
 * atomics, so the index and the gradients are the same run after run.
 */
#include "bwd_tiled_tile.cuh"

/* Grid: one thread per key tile x: exo[x] = its splits beyond the first (exclusive prefix by
 * tl_scan_kernel afterwards). */
template <int BR>
__global__ void tl_split_count_kernel(nsa_cu_params P, int ntile, int64_t ntot, const int *off,
                                      const int *list, int *exo, int pps) {
    const int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= ntot) return;
    const tl_tile_t tt = tl_tile<BR>(P, x, ntile, off, list);
    const int64_t np = tt.nq * P.G;
    exo[x] = np > pps ? (int)((np + pps - 1) / pps - 1) : 0;
}

/* Grid: one thread per (key tile x, element k of KT·D): the gradient row += the tile's partial
 * slots in split order (after tl_key_kernel's split 0 wrote it). */
template <int BR>
__global__ void tl_reduce_kernel(nsa_cu_params P, int ntile, int64_t ntot, const int *off,
                                 const int *list, const int *exo, const float *part, double *o,
                                 int D) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= ntot * KT * D) return;
    const int64_t x = idx / (KT * D);
    const int k = (int)(idx % (KT * D));
    const int ns = exo[x + 1] - exo[x];
    if (!ns) return;
    const tl_tile_t tt = tl_tile<BR>(P, x, ntile, off, list);
    const int j = k / D, e = k % D;
    if (tt.j0 + j >= tt.jend) return;
    const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
    double a = o[((tt.b * X + tt.j0 + j) * P.Hkv + tt.g) * D + e];
    for (int s = 0; s < ns; s++) a += (double)part[((int64_t)exo[x] + s) * KT * D + k];
    o[((tt.b * X + tt.j0 + j) * P.Hkv + tt.g) * D + e] = a;
}

/* Grid: one thread per selection block r = (b, g, jb); counts the bits of its bitmap row. */
__global__ void tl_sel_count_kernel(nsa_cu_bwd W, int *cnt, int64_t nrows) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= nrows) return;
    const uint32_t *row = W.selbits + r * W.tw;
    int s = 0;
    for (int k = 0; k < W.tw; k++) s += __popc(row[k]);
    cnt[r] = s;
}

/* One block of 1024 threads: in-place exclusive prefix over cnt[0, n), cnt[n] = total (each
 * thread a contiguous chunk, then a serial scan of the 1024 chunk sums: fixed order). */
__global__ void __launch_bounds__(1024) tl_scan_kernel(int *cnt, int64_t n) {
    __shared__ int part[1025];
    const int tid = threadIdx.x;
    const int64_t per = (n + 1023) / 1024, a = tid * per, z = a + per < n ? a + per : n;
    int s = 0;
    for (int64_t k = a; k < z; k++) s += cnt[k];
    part[tid] = s;
    nsa_cu_scan1024(part);
    if (tid == 0) cnt[n] = part[1024];
    int run = part[tid];
    for (int64_t k = a; k < z; k++) {
        const int v = cnt[k];
        cnt[k] = run;
        run += v;
    }
}

/* Grid: one thread per selection block: its queries in ascending t (bit order). */
__global__ void tl_sel_fill_kernel(nsa_cu_bwd W, const int *off, int *list, int64_t nrows) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= nrows) return;
    const uint32_t *row = W.selbits + r * W.tw;
    int *o = list + off[r];
    for (int k = 0; k < W.tw; k++) {
        uint32_t word = row[k];
        while (word) {
            const int bit = __ffs(word) - 1;
            *o++ = k * 32 + bit;
            word &= word - 1u;
        }
    }
}

/* ---- launchers ---- */

int64_t nsa_cu_bwd_tiled_ntiles(const nsa_cu_bwd *W, nsa_branch br) {
    int64_t n;
    tl_ntile(W->F, br, &n);
    return n;
}

size_t nsa_cu_bwd_tiled_slot_bytes(int D) { return (size_t)KT * D * 4; }

nsa_status nsa_cu_bwd_tiled_splits(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                   nsa_branch br, const int *off, int *exo) {
    int64_t n;
    const int nt = tl_ntile(W->F, br, &n), pps = tl_pps(W->F);
    if (n > 0) {
        const unsigned gr = nsa_cu_blocks(n, 128);
        const nsa_cu_params &P = W->F;
        if (br == NSA_BRANCH_CMP)
            tl_split_count_kernel<NSA_BRANCH_CMP><<<gr, 128, 0, st>>>(P, nt, n, off, NULL, exo, pps);
        else if (br == NSA_BRANCH_SEL)
            tl_split_count_kernel<NSA_BRANCH_SEL><<<gr, 128, 0, st>>>(P, nt, n, off, NULL, exo, pps);
        else
            tl_split_count_kernel<NSA_BRANCH_WIN><<<gr, 128, 0, st>>>(P, nt, n, off, NULL, exo, pps);
        NSA_CU_LAUNCHED(ctx, "backward (tiled): split counts");
    }
    tl_scan_kernel<<<1, 1024, 0, st>>>(exo, n);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): split offsets");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_tiled_reduce(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                   nsa_branch br, const tl_keyargs *k) {
    const nsa_cu_params &P = W->F;
    int64_t nb;
    const int ntile = tl_ntile(P, br, &nb);
    const int kg = br == NSA_BRANCH_SEL ? NSA_GKS : NSA_GKW, vg = kg + 1;
    double *oK = br == NSA_BRANCH_CMP ? W->dkc : W->acc[kg];
    double *oV = br == NSA_BRANCH_CMP ? W->dvc : W->acc[vg];
    for (int kv = 0; kv < 2; kv++) {
        float *part = kv ? k->partV : k->partK;
        double *o = kv ? oV : oK;
        const int D = kv ? P.Dv : P.Dk;
        if (!part || !o || nb == 0) continue;
        const unsigned gr = nsa_cu_blocks(nb * KT * D, 256);
        if (br == NSA_BRANCH_CMP)
            tl_reduce_kernel<NSA_BRANCH_CMP><<<gr, 256, 0, st>>>(P, ntile, nb, k->off, k->list,
                                                                 k->exo, part, o, D);
        else if (br == NSA_BRANCH_SEL)
            tl_reduce_kernel<NSA_BRANCH_SEL><<<gr, 256, 0, st>>>(P, ntile, nb, k->off, k->list,
                                                                 k->exo, part, o, D);
        else
            tl_reduce_kernel<NSA_BRANCH_WIN><<<gr, 256, 0, st>>>(P, ntile, nb, k->off, k->list,
                                                                 k->exo, part, o, D);
        NSA_CU_LAUNCHED(ctx, "backward (tiled): split sums");
    }
    return NSA_OK;
}

nsa_status nsa_cu_bwd_sel_count(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                                int *off) {
    const int64_t n = (int64_t)W->F.B * W->F.Hkv * W->F.nsel_max;
    if (n > 0) {
        tl_sel_count_kernel<<<nsa_cu_blocks(n, 128), 128, 0, st>>>(*W, off, n);
        NSA_CU_LAUNCHED(ctx, "backward (tiled): selection counts");
    }
    tl_scan_kernel<<<1, 1024, 0, st>>>(off, n);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): selection offsets");
    return NSA_OK;
}

nsa_status nsa_cu_bwd_sel_fill(nsa_context *ctx, nsa_cu_stream st, const nsa_cu_bwd *W,
                               const int *off, int *list) {
    const int64_t n = (int64_t)W->F.B * W->F.Hkv * W->F.nsel_max;
    if (n == 0) return NSA_OK;
    tl_sel_fill_kernel<<<nsa_cu_blocks(n, 128), 128, 0, st>>>(*W, off, list, n);
    NSA_CU_LAUNCHED(ctx, "backward (tiled): selection lists");
    return NSA_OK;
}
