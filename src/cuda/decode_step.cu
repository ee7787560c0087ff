// SPDX-License-Identifier: Apache-2.0
/* decode_step.cu — one decode step for a batch of rows at their own positions in ONE kernel:
 * block (b, g) pushes KV head g's new token into the cache (history, rings, and the compressed
 * token when the step completes a block), then runs the three branches for the group's G heads
 * (cmp over compressed tokens, selection from the group-summed probabilities with the tie rule,
 * sel over the merged ranges, win over the ring) and writes the gated output; a tiny second
 * kernel advances the lengths and the read counters. Positions come from the device, so the
 * host never waits. Arithmetic in double like the reference (src/ref/row.c), which makes the
 * selected blocks the reference's.
 * Not the fast step: one block per (row, KV head) walks its keys alone (decode_fast.cu is).
 * Invariant: a row reads only positions ≤ t and writes only its own slots.
 */
#include "decode_common.cuh"

#include <math.h>

#define DEC_THREADS 256
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_CH 64 /* keys per chunk of the online softmax */

/* Shared memory of one block (carved from the dynamic buffer). */
typedef struct {
    double *q;      /* (G, Dk) the group's queries                          */
    double *acc;    /* (G, Dv) one branch's output                          */
    double *out;    /* (G, Dv) the gated sum                                */
    double *s;      /* (G, CH) scores / probabilities of one chunk          */
    int64_t *voff;  /* (CH) element offsets of the chunk's value rows       */
    double *m, *l, *al; /* (G) running max, sum, rescale of the chunk       */
    float *selsc;   /* (nsel_cap) selection block scores                    */
    int32_t *blk;   /* (n) selected blocks                                  */
    int32_t *rng;   /* (2n) merged ranges, packed                           */
    int *misc;      /* [0] ranges, [1] keys in them                         */
} dec_sm;

static size_t dec_smem_bytes(const nsa_cu_dec *D) {
    return (size_t)D->G * (D->Dk + 2 * D->Dv + DEC_CH + 3) * 8 + DEC_CH * 8 +
           (size_t)D->nsel_cap * 4 + (size_t)D->n * 12 + 16;
}

__device__ static dec_sm dec_carve(const nsa_cu_dec &D, unsigned char *p) {
    dec_sm s;
    s.q = (double *)p;
    s.acc = s.q + D.G * D.Dk;
    s.out = s.acc + D.G * D.Dv;
    s.s = s.out + D.G * D.Dv;
    s.voff = (int64_t *)(s.s + D.G * DEC_CH);
    s.m = (double *)(s.voff + DEC_CH);
    s.l = s.m + D.G;
    s.al = s.l + D.G;
    s.selsc = (float *)(s.al + D.G);
    s.blk = (int32_t *)(s.selsc + D.nsel_cap);
    s.rng = s.blk + D.n;
    s.misc = s.rng + 2 * D.n;
    return s;
}

__device__ __forceinline__ double warp_sum(double x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ double warp_max(double x) {
    for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* Row offsets (elements) of key k of branch BR: cmp block k; sel the k-th key of the ranges;
 * win position k0 + k in the ring. */
template <int BR>
__device__ __forceinline__ int64_t dec_row(const nsa_cu_dec &D, int64_t b, int g, int64_t k,
                                           int64_t k0, const int32_t *rng, int nr, int Dx) {
    if (BR == NSA_BRANCH_CMP) return ((b * D.ncmp + k) * D.Hkv + g) * Dx;
    if (BR == NSA_BRANCH_WIN) return ((b * D.nwin + (k0 + k) % D.nwin) * D.Hkv + g) * Dx;
    int64_t p = 0;
    for (int q = 0; q < nr; q++) {
        const int64_t len = rng[2 * q + 1] - rng[2 * q];
        if (k < len) { p = rng[2 * q] + k; break; }
        k -= len;
    }
    return ((b * D.max_len + p) * D.Hkv + g) * Dx;
}

template <typename T, int BR>
__device__ __forceinline__ double dec_k(const nsa_cu_dec &D, int64_t off) {
    if (BR == NSA_BRANCH_CMP) return D.kc[off];
    return (double)nsa_cu_f<T>(((const T *)(BR == NSA_BRANCH_SEL ? D.ks : D.kw))[off]);
}
template <typename T, int BR>
__device__ __forceinline__ double dec_v(const nsa_cu_dec &D, int64_t off) {
    if (BR == NSA_BRANCH_CMP) return D.vc[off];
    return (double)nsa_cu_f<T>(((const T *)(BR == NSA_BRANCH_SEL ? D.vs : D.vw))[off]);
}

template <typename T>
__device__ __forceinline__ double dec_gate(const nsa_cu_dec &D, int64_t b, int h, int br) {
    if (D.force_branch >= 0) return D.force_branch == br ? 1.0 : 0.0;
    return (double)nsa_cu_ld<T>(D.gates, b, 0, h, br);
}

/* Attention of the group's G heads over nkeys keys of branch BR (online softmax in chunks of
 * DEC_CH: warp per key for the scores, warp per head for the softmax, thread per (head, e) for
 * the values); adds gate·o into s.out and leaves lse per head in s.m (−inf: no key). For cmp the
 * raw scores also go to the scratch D.st.sc. */
template <typename T, int BR>
__device__ void dec_attend(const nsa_cu_dec &D, dec_sm &s, int64_t b, int g, int64_t nkeys,
                           int64_t k0, int nr) {
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32, G = D.G;
    for (int u = tid; u < G; u += DEC_THREADS) {
        s.m[u] = -INFINITY;
        s.l[u] = 0.0;
    }
    for (int i = tid; i < G * D.Dv; i += DEC_THREADS) s.acc[i] = 0.0;
    __syncthreads();
    for (int64_t c0 = 0; c0 < nkeys; c0 += DEC_CH) {
        const int nck = nkeys - c0 < DEC_CH ? (int)(nkeys - c0) : DEC_CH;
        for (int kk = wid; kk < nck; kk += DEC_WARPS) {
            const int64_t ko = dec_row<BR>(D, b, g, c0 + kk, k0, s.rng, nr, D.Dk);
            if (lane == 0) s.voff[kk] = dec_row<BR>(D, b, g, c0 + kk, k0, s.rng, nr, D.Dv);
            for (int u = 0; u < G; u++) {
                double part = 0.0;
                for (int e = lane; e < D.Dk; e += 32) part += s.q[u * D.Dk + e] * dec_k<T, BR>(D, ko + e);
                part = warp_sum(part) * D.scale;
                if (lane == 0) {
                    s.s[u * DEC_CH + kk] = part;
                    if (BR == NSA_BRANCH_CMP)
                        D.st.sc[(b * D.Hq + g * G + u) * D.ncmp + c0 + kk] = part;
                }
            }
        }
        __syncthreads();
        for (int u = wid; u < G; u += DEC_WARPS) {
            double mx = -INFINITY;
            for (int k = lane; k < nck; k += 32) mx = fmax(mx, s.s[u * DEC_CH + k]);
            mx = warp_max(mx);
            const double mn = fmax(mx, s.m[u]);
            const double alpha = s.m[u] == -INFINITY ? 0.0 : exp(s.m[u] - mn);
            double sum = 0.0;
            for (int k = lane; k < nck; k += 32) {
                const double p = exp(s.s[u * DEC_CH + k] - mn);
                s.s[u * DEC_CH + k] = p;
                sum += p;
            }
            sum = warp_sum(sum);
            __syncwarp();
            if (lane == 0) {
                s.l[u] = s.l[u] * alpha + sum;
                s.m[u] = mn;
                s.al[u] = alpha;
            }
        }
        __syncthreads();
        for (int i = tid; i < G * D.Dv; i += DEC_THREADS) {
            const int u = i / D.Dv, e = i % D.Dv;
            double a = s.acc[i] * s.al[u];
            for (int k = 0; k < nck; k++) a += s.s[u * DEC_CH + k] * dec_v<T, BR>(D, s.voff[k] + e);
            s.acc[i] = a;
        }
        __syncthreads();
    }
    for (int i = tid; i < G * D.Dv; i += DEC_THREADS) {
        const int u = i / D.Dv;
        const double o = s.l[u] > 0.0 ? s.acc[i] / s.l[u] : 0.0;
        s.out[i] += dec_gate<T>(D, b, g * G + u, BR) * o;
    }
    __syncthreads();
    for (int u = tid; u < G; u += DEC_THREADS)
        s.m[u] = s.l[u] > 0.0 ? s.m[u] + log(s.l[u]) : -INFINITY;
    __syncthreads();
}

/* Warp 0: scores of the selection blocks (Eq. 9, double, rounded once to f32), forced blocks,
 * top-n with ties to the lower index, merged ranges clipped to t+1 (src/ref/select.c). */
__device__ void dec_select(const nsa_cu_dec &D, dec_sm &s, const double *pg, int64_t t,
                           int64_t nc) {
    const int lane = threadIdx.x % 32;
    const int64_t cur = t / D.lp, ncomplete = nsa_ix_ncomplete(D.lp, t);
    for (int64_t j = lane; j <= cur; j += 32) {
        int64_t i_lo, i_hi;
        nsa_ix_score_span(D.l, D.d, D.lp, j, nc, &i_lo, &i_hi);
        double sum = 0.0;
        for (int64_t i = i_lo; i <= i_hi; i++)
            sum += pg[i] * (double)nsa_ix_overlap(D.l, D.d, D.lp, i, j);
        s.selsc[j] = (float)sum;
    }
    __syncwarp();
    int nf = 0;
    if (lane == 0) {
        nf = nsa_ix_forced(D.n_init, D.n_local, cur, s.blk);
        for (int f = 0; f < nf; f++) s.selsc[s.blk[f]] = -1.0f; /* out of the pool */
    }
    nf = __shfl_sync(0xffffffffu, nf, 0);
    __syncwarp();
    int nfc = 0;
    for (int f = 0; f < nf; f++) nfc += s.blk[f] < ncomplete;
    const int64_t ncand = ncomplete - nfc;
    int k = (int64_t)(D.n - nf) < ncand ? D.n - nf : (int)ncand;
    for (int a = 0; a < k; a++) {
        float bs = -1.0f;
        int bj = -1;
        for (int64_t j = lane; j < ncomplete; j += 32)
            if (s.selsc[j] > bs) { bs = s.selsc[j]; bj = (int)j; }
        for (int o = 16; o > 0; o >>= 1) {
            const float os = __shfl_xor_sync(0xffffffffu, bs, o);
            const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
            if (oj >= 0 && (bj < 0 || nsa_ix_better(os, oj, bs, bj))) { bs = os; bj = oj; }
        }
        if (bj < 0) { k = a; break; }
        if (lane == 0) {
            s.blk[nf + a] = bj;
            s.selsc[bj] = -1.0f;
        }
        __syncwarp();
    }
    if (lane != 0) return;
    const int nsel = nf + k;
    nsa_ix_sort_blocks(s.blk, nsel);
    int nr = 0, keys = 0;
    for (int a = 0; a < nsel; nr++) {
        int64_t lo, hi;
        a = nsa_ix_run(s.blk, nsel, a, D.lp, t, &lo, &hi);
        s.rng[2 * nr] = (int32_t)lo;
        s.rng[2 * nr + 1] = (int32_t)hi;
        keys += (int)(hi - lo);
    }
    s.misc[0] = nr;
    s.misc[1] = keys;
}

/* Block (b, g) pushes KV head g's token of the step into history, window ring and raw ring,
 * then, when the step completes a block, its compressed token (double, and rounded to the
 * dtype copy the split-key step reads). Ends with a barrier. */
template <typename T>
__device__ void dec_push(const nsa_cu_dec &D, int64_t b, int g) {
    const int tid = threadIdx.x;
    const int64_t t = D.st.len[b], S = t + 1;
    /* push: this head's token into history, window ring, raw ring; then its compressed token */
    for (int kv = 0; kv < 2; kv++) {
        const int Dx = kv ? D.Dv : D.Dk;
        const nsa_cu_view &sel = kv ? D.vsel : D.ksel, &win = kv ? D.vwin : D.kwin,
                          &raw = kv ? D.vcmp : D.kcmp;
        T *hs = (T *)(kv ? D.vs : D.ks), *hw = (T *)(kv ? D.vw : D.kw), *hr = (T *)(kv ? D.vr : D.kr);
        for (int e = tid; e < Dx; e += DEC_THREADS) {
            hs[((b * D.max_len + t) * D.Hkv + g) * Dx + e] =
                ((const T *)sel.p)[b * sel.sb + g * sel.sh + e * sel.sd];
            if (D.nwin > 0)
                hw[((b * D.nwin + t % D.nwin) * D.Hkv + g) * Dx + e] =
                    ((const T *)win.p)[b * win.sb + g * win.sh + e * win.sd];
            hr[((b * D.nraw + t % D.nraw) * D.Hkv + g) * Dx + e] =
                ((const T *)raw.p)[b * raw.sb + g * raw.sh + e * raw.sd];
        }
    }
    __syncthreads();
    if (S >= D.l && (S - D.l) % D.d == 0) {
        const int64_t i = (S - D.l) / D.d;
        for (int kv = 0; kv < 2; kv++) {
            const int Dx = kv ? D.Dv : D.Dk;
            const T *hr = (const T *)(kv ? D.vr : D.kr);
            double *dst = (kv ? D.vc : D.kc) + ((b * D.ncmp + i) * D.Hkv + g) * Dx;
            for (int e = tid; e < Dx; e += DEC_THREADS) {
                double v;
                if (D.cmp_external) {
                    v = (double)nsa_cu_ld<T>(kv ? D.vcn : D.kcn, b, 0, g, e);
                } else {
                    double sum = 0.0;
                    for (int r = 0; r < D.l; r++)
                        sum += (double)nsa_cu_f<T>(hr[((b * D.nraw + (i * D.d + r) % D.nraw) * D.Hkv + g) * Dx + e]);
                    v = sum / (double)D.l;
                }
                dst[e] = v;
                ((T *)(kv ? D.st.vcT : D.st.kcT))[((b * D.ncmp + i) * D.Hkv + g) * Dx + e] =
                    nsa_cu_to<T>((float)v);
            }
        }
    }
    __syncthreads();
}

/* Grid: x = B·Hkv, one block per (row b, KV head g); 256 threads. Shared memory: see
 * dec_smem_bytes (about 71 KB at G=16, Dk=192, Dv=128, 64k tokens). */
template <typename T>
__global__ void __launch_bounds__(DEC_THREADS) decode_kernel(nsa_cu_dec D) {
    extern __shared__ __align__(16) unsigned char dsm[];
    const int64_t b = blockIdx.x / D.Hkv;
    const int g = (int)(blockIdx.x % D.Hkv), tid = threadIdx.x, G = D.G;
    if (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u)) return;
    dec_sm s = dec_carve(D, dsm);
    const int64_t t = D.st.len[b], S = t + 1;

    dec_push<T>(D, b, g);
    for (int i = tid; i < G * D.Dk; i += DEC_THREADS)
        s.q[i] = (double)nsa_cu_ld<T>(D.q, b, 0, g * G + i / D.Dk, i % D.Dk);
    for (int i = tid; i < G * D.Dv; i += DEC_THREADS) s.out[i] = 0.0;
    __syncthreads();

    /* cmp, then the group-summed probabilities for the selection */
    const int64_t nc = S < D.l ? 0 : (S - D.l) / D.d + 1;
    dec_attend<T, NSA_BRANCH_CMP>(D, s, b, g, nc, 0, 0);
    double *pg = D.st.pg + (b * D.Hkv + g) * D.ncmp;
    for (int64_t i = tid; i < nc; i += DEC_THREADS) {
        double sum = 0.0;
        for (int u = 0; u < G; u++)
            sum += exp(D.st.sc[(b * D.Hq + g * G + u) * D.ncmp + i] - s.m[u]);
        pg[i] = sum;
    }
    __syncthreads();
    if (tid < 32) dec_select(D, s, pg, t, nc);
    __syncthreads();
    const int nr = s.misc[0], sel_keys = s.misc[1];
    dec_attend<T, NSA_BRANCH_SEL>(D, s, b, g, sel_keys, 0, nr);
    const int64_t lo = nsa_ix_win_lo(D.w, t), nwk = D.w > 0 ? S - lo : 0;
    dec_attend<T, NSA_BRANCH_WIN>(D, s, b, g, nwk, lo, 0);

    for (int i = tid; i < G * D.Dv; i += DEC_THREADS) {
        T *o = (T *)D.out.p;
        o[b * D.out.sb + (g * G + i / D.Dv) * D.out.sh + (i % D.Dv) * D.out.sd] =
            nsa_cu_to<T>((float)s.out[i]);
    }
    if (tid == 0) {
        D.st.selr[b * D.Hkv + g] = sel_keys;
        if (g == 0) {
            D.st.reads[b * 4 + 0] = nc;
            D.st.reads[b * 4 + 2] = nwk;
            D.st.reads[b * 4 + 3] = S;
        }
    }
}

/* Grid: one thread per row, 128 per block: the row's sel reads (mean over KV heads, like the
 * budget n·lp) and its new length. */
__global__ void decode_finish_kernel(nsa_cu_dec D) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= D.B || (!D.all_active && !((D.active[b / 32] >> (b % 32)) & 1u))) return;
    int64_t sum = 0;
    for (int g = 0; g < D.Hkv; g++) sum += D.st.selr[(int64_t)b * D.Hkv + g];
    D.st.reads[(int64_t)b * 4 + 1] = sum / D.Hkv;
    D.st.len[b] += 1;
}

static nsa_status decode_finish(nsa_context *ctx, cudaStream_t st, const nsa_cu_dec *D) {
    decode_finish_kernel<<<nsa_cu_blocks(D->B, 128), 128, 0, st>>>(*D);
    NSA_CU_LAUNCHED(ctx, "decode step: lengths");
    return NSA_OK;
}

nsa_status nsa_cu_decode_launch(nsa_context *ctx, cudaStream_t st, nsa_dtype dt,
                                const nsa_cu_dec *D) {
    const size_t smem = dec_smem_bytes(D);
    if (smem > 220 * 1024)
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg: G·(Dk + 2·Dv) too large for the CUDA "
                        "decode step's shared memory (%zu bytes)", smem);
    const unsigned grid = (unsigned)((int64_t)D->B * D->Hkv);
    switch (dt) {
    case NSA_DTYPE_BF16:
        cudaFuncSetAttribute(decode_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        decode_kernel<__nv_bfloat16><<<grid, DEC_THREADS, smem, st>>>(*D);
        break;
    case NSA_DTYPE_F16:
        cudaFuncSetAttribute(decode_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        decode_kernel<__half><<<grid, DEC_THREADS, smem, st>>>(*D);
        break;
    default:
        cudaFuncSetAttribute(decode_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        decode_kernel<float><<<grid, DEC_THREADS, smem, st>>>(*D);
        break;
    }
    NSA_CU_LAUNCHED(ctx, "decode step");
    return decode_finish(ctx, st, D);
}
