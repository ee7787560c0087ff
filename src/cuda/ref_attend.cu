// SPDX-License-Identifier: Apache-2.0
/* ref_attend.cu — the reference role on the GPU: attention of one (row, head) per block over the
 * keys its branch sees (cmp: blocks i < num_cmp(t+1); sel: the merged ranges; win: [t-w+1, t]),
 * and the reference selection scores P (group-summed cmp probabilities). Double accumulation,
 * plain loops: the on-device oracle and the fallback of every fast path, for f32, bf16, f16 and
 * any strides. Not fast; it exists to be obviously right.
 * Invariant: a row with no visible key writes output 0 and lse -inf, never NaN.
 */
#include "common.cuh"

#include <math.h>

#define REF_THREADS 128

/* Key position of flat key index k of branch br for this (row, group); ranges from P.ranges. */
template <int BR>
__device__ __forceinline__ int64_t key_pos(const int32_t *rg, int nr, int64_t k0, int64_t k) {
    if constexpr (BR != NSA_BRANCH_SEL) return k0 + k;
    (void)k0;
    for (int q = 0; q < nr; q++) {
        int64_t len = rg[2 * q + 1] - rg[2 * q];
        if (k < len) return rg[2 * q] + k;
        k -= len;
    }
    return -1;
}

/* Grid: x = R·Hq, one block per (row r, head h); 128 threads. Keys are processed in chunks of
 * 128 (one per thread: its scaled dot product in double), then an online softmax update of
 * acc (Dv doubles, thread e owns e, e+128, ...). Shared memory (dynamic): q (Dk doubles),
 * acc (Dv doubles), s/p and key positions of one chunk: (Dk + Dv + 256) · 8 bytes. */
template <typename T, typename TK, int BR>
__global__ void __launch_bounds__(REF_THREADS) ref_attend_kernel(nsa_cu_params P) {
    extern __shared__ double sm[];
    double *qs = sm, *acc = sm + P.Dk, *sp = acc + P.Dv;
    int64_t *pos = (int64_t *)(sp + REF_THREADS);
    const int tid = threadIdx.x;
    const int64_t r = blockIdx.x / P.Hq;
    const int h = (int)(blockIdx.x % P.Hq), g = h / P.G;
    int64_t b, t;
    nsa_cu_row(P, r, &b, &t);

    const nsa_cu_view kv = BR == NSA_BRANCH_CMP ? P.kc : BR == NSA_BRANCH_SEL ? P.ks : P.kw;
    const nsa_cu_view vv = BR == NSA_BRANCH_CMP ? P.vc : BR == NSA_BRANCH_SEL ? P.vs : P.vw;
    const int32_t *rg = P.ranges + (r * P.Hkv + g) * (int64_t)P.n * 2;
    int64_t k0 = 0, nkeys = 0;
    int nr = 0;
    if (BR == NSA_BRANCH_CMP) {
        nkeys = nsa_cu_num_cmp(P, t + 1);
    } else if (BR == NSA_BRANCH_WIN) {
        if (P.w > 0) {
            k0 = nsa_ix_win_lo(P.w, t);
            nkeys = t + 1 - k0;
        }
    } else {
        while (nr < P.n && rg[2 * nr + 1] > rg[2 * nr]) {
            nkeys += rg[2 * nr + 1] - rg[2 * nr];
            nr++;
        }
    }

    for (int e = tid; e < P.Dk; e += REF_THREADS) qs[e] = (double)nsa_cu_ld<T>(P.q, b, t, h, e);
    for (int e = tid; e < P.Dv; e += REF_THREADS) acc[e] = 0.0;
    __syncthreads();

    double m = -INFINITY, lsum = 0.0;
    for (int64_t c0 = 0; c0 < nkeys; c0 += REF_THREADS) {
        int64_t k = c0 + tid;
        double s = -INFINITY;
        int64_t p = -1;
        if (k < nkeys) {
            p = key_pos<BR>(rg, nr, k0, k);
            double dot = 0.0;
            for (int e = 0; e < P.Dk; e++) dot += qs[e] * (double)nsa_cu_ld<TK>(kv, b, p, g, e);
            s = dot * (double)P.scale;
        }
        sp[tid] = s;
        pos[tid] = p;
        __syncthreads();
        double mc = -INFINITY;
        for (int j = 0; j < REF_THREADS; j++) mc = sp[j] > mc ? sp[j] : mc;
        double mn = mc > m ? mc : m;
        double alpha = m == -INFINITY ? 0.0 : exp(m - mn);
        __syncthreads();
        sp[tid] = k < nkeys ? exp(s - mn) : 0.0;
        __syncthreads();
        double cs = 0.0;
        for (int j = 0; j < REF_THREADS; j++) cs += sp[j];
        lsum = lsum * alpha + cs;
        m = mn;
        for (int e = tid; e < P.Dv; e += REF_THREADS) {
            double a = acc[e] * alpha;
            for (int j = 0; j < REF_THREADS && c0 + j < nkeys; j++)
                a += sp[j] * (double)nsa_cu_ld<TK>(vv, b, pos[j], g, e);
            acc[e] = a;
        }
        __syncthreads();
    }
    float *o = P.o[BR] + (r * P.Hq + h) * (int64_t)P.Dv;
    for (int e = tid; e < P.Dv; e += REF_THREADS) o[e] = nkeys ? (float)(acc[e] / lsum) : 0.0f;
    if (tid == 0) P.lse[BR][r * P.Hq + h] = nkeys ? (float)(m + log(lsum)) : -INFINITY;
}

/* Grid: x = R·Hkv, one block per (row r, group g); 128 threads, thread per compressed block i
 * (strided). P[r, g, i] = Σ_{h in g} exp(scale·q_h·kc_i − lse_cmp[r, h]) in double, stored f32.
 * Shared memory: none (q is read through the cache; every thread reads the same row). */
template <typename T, typename TK>
__global__ void __launch_bounds__(REF_THREADS) ref_score_kernel(nsa_cu_params P) {
    const int64_t r = blockIdx.x / P.Hkv;
    const int g = (int)(blockIdx.x % P.Hkv);
    int64_t b, t;
    nsa_cu_row(P, r, &b, &t);
    const int64_t nc = nsa_cu_num_cmp(P, t + 1);
    float *out = P.P + (r * P.Hkv + g) * (int64_t)P.Tc;
    for (int64_t i = threadIdx.x; i < nc; i += REF_THREADS) {
        double sum = 0.0;
        for (int h = g * P.G; h < (g + 1) * P.G; h++) {
            double dot = 0.0;
            for (int e = 0; e < P.Dk; e++)
                dot += (double)nsa_cu_ld<T>(P.q, b, t, h, e) *
                       (double)nsa_cu_ld<TK>(P.kc, b, i, g, e);
            sum += exp(dot * (double)P.scale - (double)P.lse[NSA_BRANCH_CMP][r * P.Hq + h]);
        }
        out[i] = (float)sum;
    }
}

template <typename T, typename TK, int BR>
static void launch_attend(nsa_cu_stream st, const nsa_cu_params *P) {
    size_t smem = (size_t)(P->Dk + P->Dv + 2 * REF_THREADS) * 8;
    if (smem > 48 * 1024)
        cudaFuncSetAttribute(ref_attend_kernel<T, TK, BR>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    ref_attend_kernel<T, TK, BR><<<(unsigned)(P->R * P->Hq), REF_THREADS, smem, st>>>(*P);
}

template <typename T>
static void launch_attend_t(nsa_cu_stream st, nsa_dtype kc_dt, const nsa_cu_params *P,
                            nsa_branch br) {
    if (br == NSA_BRANCH_CMP) {
        if (kc_dt == NSA_DTYPE_F32) launch_attend<T, float, NSA_BRANCH_CMP>(st, P);
        else launch_attend<T, T, NSA_BRANCH_CMP>(st, P);
    } else if (br == NSA_BRANCH_SEL) {
        launch_attend<T, T, NSA_BRANCH_SEL>(st, P);
    } else {
        launch_attend<T, T, NSA_BRANCH_WIN>(st, P);
    }
}

nsa_status nsa_cu_ref_attend(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                             const nsa_cu_params *P, nsa_branch br) {
    if (P->R * P->Hq == 0) return NSA_OK;
    if ((size_t)(P->Dk + P->Dv + 2 * REF_THREADS) * 8 > nsa_cu_smem_budget(nsa_cu_smem_optin()))
        return nsa_fail(ctx, NSA_ERR_UNSUPPORTED, "cfg.Dk: %d + Dv %d too large for the "
                        "reference kernel's shared memory", P->Dk, P->Dv);
    switch (dt) {
    case NSA_DTYPE_BF16: launch_attend_t<__nv_bfloat16>(st, kc_dt, P, br); break;
    case NSA_DTYPE_F16: launch_attend_t<__half>(st, kc_dt, P, br); break;
    default: launch_attend_t<float>(st, kc_dt, P, br); break;
    }
    NSA_CU_LAUNCHED(ctx, "reference attention");
    return NSA_OK;
}

template <typename T>
static void launch_score_t(nsa_cu_stream st, nsa_dtype kc_dt, const nsa_cu_params *P) {
    unsigned g = (unsigned)(P->R * P->Hkv);
    if (kc_dt == NSA_DTYPE_F32) ref_score_kernel<T, float><<<g, REF_THREADS, 0, st>>>(*P);
    else ref_score_kernel<T, T><<<g, REF_THREADS, 0, st>>>(*P);
}

nsa_status nsa_cu_ref_score(nsa_context *ctx, nsa_cu_stream st, nsa_dtype dt, nsa_dtype kc_dt,
                            const nsa_cu_params *P) {
    if (P->R * P->Hkv == 0 || P->Tc == 0) return NSA_OK;
    switch (dt) {
    case NSA_DTYPE_BF16: launch_score_t<__nv_bfloat16>(st, kc_dt, P); break;
    case NSA_DTYPE_F16: launch_score_t<__half>(st, kc_dt, P); break;
    default: launch_score_t<float>(st, kc_dt, P); break;
    }
    NSA_CU_LAUNCHED(ctx, "reference scores");
    return NSA_OK;
}
