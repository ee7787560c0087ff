// SPDX-License-Identifier: Apache-2.0
/* decode_fast_sync.cuh — the parts of the split-key decode step (decode_fast.cu) that are not
 * attention over keys: the counters and flags that order its items across blocks, the
 * selection of one (row, KV head), and the merge of one head's partials into the gated output.
 * Data another block wrote during the step is read through L2 (__ldcg) after an acquire.
 * Invariant: a counter is back at 0 when its last arrival has been counted, and a flag holds the
 * epoch of the step that last set it, so neither needs a reset between steps.
 */
#ifndef NSA_CUDA_DECODE_FAST_SYNC_CUH
#define NSA_CUDA_DECODE_FAST_SYNC_CUH

#include "decode_common.cuh"

#define FD_T 256 /* threads of a block */

template <typename T>
__device__ __forceinline__ float fd_gate(const nsa_cu_dec &D, int64_t b, int h, int br) {
    if (D.force_branch >= 0) return D.force_branch == br ? 1.f : 0.f;
    return nsa_cu_ld<T>(D.gates, b, 0, h, br);
}

__device__ __forceinline__ float fd_wmax(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ float fd_wsum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Counters and flags of (row, KV head) bg: D.st.sync[4·bg + x]. */
enum { FD_CNT_A, FD_CNT_C, FD_FLAG_S, FD_FLAG_M };

/* Block-wide: counts one arrival of this block at counter cnt (total arrivals per step) after
 * making its global writes visible; 1 in every thread of the block that arrived last (which also
 * resets the counter). */
__device__ __forceinline__ int fd_arrive(int32_t *cnt, int total, int *flag_sm) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        const int last = atomicAdd(cnt, 1) == total - 1;
        if (last) {
            atomicExch(cnt, 0);
            __threadfence();
        }
        *flag_sm = last;
    }
    __syncthreads();
    return *flag_sm;
}

/* Thread 0: publishes flag = epoch after the block's writes (call after fd_arrive's fence or a
 * __threadfence + __syncthreads). */
__device__ __forceinline__ void fd_signal(int32_t *flag, unsigned epoch) {
    if (threadIdx.x == 0) {
        __threadfence();
        atomicExch((unsigned *)flag, epoch);
    }
}

/* Thread 0 spins until flag holds epoch; block-wide. */
__device__ __forceinline__ void fd_wait(const int32_t *flag, unsigned epoch) {
    if (threadIdx.x == 0) {
        unsigned v;
        for (;;) {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(flag) : "memory");
            if (v == epoch) break;
            __nanosleep(32);
        }
    }
    __syncthreads();
}

/* The selection of (row b, KV head g) at position t, block-wide: lse per head from the cmp
 * partials' headers (D.pc slots), group-summed probabilities pg (double; in shared memory when
 * D.pg_smem, else the global scratch), Eq. 9 block scores rounded to f32, forced blocks, top-n
 * with ties to the lower index, ranges clipped to t+1 into D.st.rng, their key count into
 * D.st.selr; row counters cmp/win/S from g = 0. The scores (rows of ncmp4 floats) come in
 * 16-byte loads, 8 heads in flight: a serial walk over 16 heads × 4095 tokens cost tens of µs.
 * Shared memory: pg (8·ncmp4 bytes when D.pg_smem), lse (G), block scores (nsel_cap) floats,
 * blocks (n) ints. */
__device__ void fd_select(const nsa_cu_dec &D, float *fsm, int64_t b, int g, int64_t t) {
    const int64_t bg = b * D.Hkv + g;
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32, G = D.G, P = D.Dv + 2;
    double *pg = D.pg_smem ? (double *)fsm : D.st.pg + bg * D.st.ncmp4;
    float *lse = D.pg_smem ? (float *)(pg + D.st.ncmp4) : fsm, *sc = lse + G;
    int32_t *blk = (int32_t *)(sc + D.nsel_cap);
    const int64_t S = t + 1, nc = nsa_ix_num_cmp(D.l, D.d, S);
    const float *part = D.st.part + bg * D.st.nsplit * G * P;
    for (int u = wid; u < G; u += FD_T / 32) {
        float M = -INFINITY, L = 0.f;
        for (int x = lane; x < D.pc; x += 32) M = fmaxf(M, __ldcg(part + ((int64_t)x * G + u) * P));
        M = fd_wmax(M);
        if (M > -INFINITY)
            for (int x = lane; x < D.pc; x += 32) {
                const float *h = part + ((int64_t)x * G + u) * P;
                const float l = __ldcg(h + 1);
                if (l > 0.f) L += l * __expf(__ldcg(h) - M);
            }
        L = fd_wsum(L);
        if (lane == 0) lse[u] = L > 0.f ? M + __logf(L) : -INFINITY;
    }
    __syncthreads();
    const float *scr = D.st.scf + (b * D.Hq + (int64_t)g * G) * D.st.ncmp4;
    for (int64_t i0 = 4 * (int64_t)tid; i0 < nc; i0 += 4 * FD_T) { /* tokens i0 .. i0+3 */
        double s4[4] = {0.0, 0.0, 0.0, 0.0};
        for (int u0 = 0; u0 < G; u0 += 8) {
            float4 v[8];
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (u0 + k < G) v[k] = __ldcg((const float4 *)(scr + (int64_t)(u0 + k) * D.st.ncmp4 + i0));
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (u0 + k < G) { /* heads in ascending order, as the reference */
                    const float m = lse[u0 + k];
                    s4[0] += (double)__expf(v[k].x - m);
                    s4[1] += (double)__expf(v[k].y - m);
                    s4[2] += (double)__expf(v[k].z - m);
                    s4[3] += (double)__expf(v[k].w - m);
                }
        }
        for (int q = 0; q < 4 && i0 + q < nc; q++) pg[i0 + q] = s4[q];
    }
    __syncthreads();
    const int64_t cur = t / D.lp, ncomplete = nsa_ix_ncomplete(D.lp, t);
    for (int64_t j = tid; j <= cur; j += FD_T) {
        int64_t i_lo, i_hi;
        nsa_ix_score_span(D.l, D.d, D.lp, j, nc, &i_lo, &i_hi);
        double sum = 0.0;
        /* m(i, j) in 32-bit arithmetic (positions < max_len < 2^31) */
        for (int64_t i = i_lo; i <= i_hi; i++)
            sum += pg[i] * (double)nsa_ix_overlap32(D.l, D.d, D.lp, (int)i, (int)j);
        sc[j] = (float)sum;
    }
    __syncthreads();
    if (tid < 32) {
        int nf = 0;
        if (lane == 0) {
            nf = nsa_ix_forced(D.n_init, D.n_local, cur, blk);
            for (int f = 0; f < nf; f++) sc[blk[f]] = -1.0f; /* out of the pool */
        }
        nf = __shfl_sync(0xffffffffu, nf, 0);
        __syncwarp();
        int nfc = 0;
        for (int f = 0; f < nf; f++) nfc += blk[f] < ncomplete;
        const int64_t ncand = ncomplete - nfc;
        int k = (int64_t)(D.n - nf) < ncand ? D.n - nf : (int)ncand;
        /* top-k: each lane keeps the best of its blocks j ≡ lane (mod 32) as a key (score bits
           + 1, scores ≥ 0; 0: none left), the warp takes the largest key and, among equal
           keys, the lowest j; only the winning lane rescans */
        unsigned bk = 0u;
        int bjl = -1;
        for (int64_t j = lane; j < ncomplete; j += 32) {
            const unsigned key = sc[j] >= 0.f ? __float_as_uint(sc[j]) + 1u : 0u;
            if (key > bk) { bk = key; bjl = (int)j; }
        }
        for (int a = 0; a < k; a++) {
            const unsigned mx = __reduce_max_sync(0xffffffffu, bk);
            if (mx == 0u) { k = a; break; }
            const int bj = (int)__reduce_min_sync(0xffffffffu, bk == mx ? (unsigned)bjl : 0xffffffffu);
            if (lane == 0) blk[nf + a] = bj;
            if (bj == bjl) {
                sc[bj] = -1.0f;
                bk = 0u;
                bjl = -1;
                for (int64_t j = lane; j < ncomplete; j += 32) {
                    const unsigned key = sc[j] >= 0.f ? __float_as_uint(sc[j]) + 1u : 0u;
                    if (key > bk) { bk = key; bjl = (int)j; }
                }
            }
        }
        __syncwarp();
        if (lane == 0) {
            const int nsel = nf + k;
            nsa_ix_sort_blocks(blk, nsel);
            int32_t *rng = D.st.rng + bg * D.n * 2;
            int nr = 0, keys = 0;
            for (int a = 0; a < nsel; nr++) {
                int64_t lo, hi;
                a = nsa_ix_run(blk, nsel, a, D.lp, t, &lo, &hi);
                rng[2 * nr] = (int32_t)lo;
                rng[2 * nr + 1] = (int32_t)hi;
                keys += (int)(hi - lo);
            }
            for (int q = nr; q < D.n; q++) rng[2 * q] = rng[2 * q + 1] = 0;
            D.st.selr[bg] = keys;
            if (g == 0) {
                D.st.reads[b * 4 + 0] = nc;
                D.st.reads[b * 4 + 2] = nsa_ix_win_len(D.w, t);
                D.st.reads[b * 4 + 3] = S;
            }
        }
    }
    __syncthreads();
}

static size_t fd_select_smem(const nsa_cu_dec *D) {
    return (D->pg_smem ? (size_t)D->st.ncmp4 * 8 : 0) + (size_t)(D->G + D->nsel_cap + D->n) * 4;
}

/* Header (x = 0: m, 1: l; o from x = 2) of slot j of head u of (b, g): slots 0..pc-1 cmp,
 * then ps sel, then pw win. */
__device__ __forceinline__ const float *fd_slot(const nsa_cu_dec &D, int64_t bg, int u, int j) {
    const int64_t sz = (int64_t)D.G * (D.Dv + 2);
    if (j < D.pc) return D.st.part + (bg * D.st.nsplit + j) * sz + u * (D.Dv + 2);
    j -= D.pc;
    if (j >= D.ps) j += D.st.nsel_split - D.ps; /* win slots follow every sel slot */
    return D.st.part2 + (bg * D.st.nsplit2 + j) * sz + u * (D.Dv + 2);
}

/* Heads u0 .. u0+hm-1 of (row b, KV head g): merge weights of every slot (w = exp(m − M)/L per
 * branch, 0 for a slot without keys, whose o is never read), then the gated sum of the three
 * branches into out. Shared memory: w, l (2·hm·nsl), M, L per head and branch (6·hm) and the
 * parts' sums (3·max(hm·Dv, FD_T)) floats, nsl = pc + ps + pw. */
template <typename T>
__device__ void fd_merge(const nsa_cu_dec &D, float *fsm, int64_t b, int g, int u0, int hm) {
    const int64_t bg = b * D.Hkv + g;
    const int nsl = D.pc + D.ps + D.pw, tid = threadIdx.x, lane = tid % 32;
    const int first[4] = {0, D.pc, D.pc + D.ps, nsl};
    float *w = fsm, *lv = w + hm * nsl, *ml = lv + hm * nsl;
    for (int i = tid; i < hm * nsl; i += FD_T) {
        const float *h = fd_slot(D, bg, u0 + i / nsl, i % nsl);
        w[i] = __ldcg(h);
        lv[i] = __ldcg(h + 1);
    }
    __syncthreads();
    for (int task = tid / 32; task < 3 * hm; task += FD_T / 32) { /* a warp per (head, branch) */
        const int u = task / 3, br = task % 3;
        const float *wu = w + u * nsl, *lu = lv + u * nsl;
        float M = -INFINITY, L = 0.f;
        for (int x = first[br] + lane; x < first[br + 1]; x += 32) M = fmaxf(M, wu[x]);
        M = fd_wmax(M);
        if (M > -INFINITY)
            for (int x = first[br] + lane; x < first[br + 1]; x += 32)
                if (lu[x] > 0.f) L += lu[x] * __expf(wu[x] - M);
        L = fd_wsum(L);
        if (lane == 0) {
            ml[task * 2] = M;
            ml[task * 2 + 1] = L;
        }
    }
    __syncthreads();
    for (int i = tid; i < hm * nsl; i += FD_T) {
        const int x = i % nsl, br = x < first[1] ? 0 : x < first[2] ? 1 : 2;
        const float *m = ml + ((i / nsl) * 3 + br) * 2;
        w[i] = m[1] > 0.f && lv[i] > 0.f ? __expf(w[i] - m[0]) / m[1] : 0.f;
    }
    __syncthreads();
    /* np parts of the block sum slots [x0, x1) each (8 loads in flight), part 0 adds them */
    const int ne = hm * D.Dv, np = ne >= FD_T ? 1 : FD_T / ne > 8 ? 8 : FD_T / ne;
    float *red = ml + 6 * hm; /* (np, ne, 3) */
    for (int i = tid; i < (np > 1 ? np * ne : ne); i += FD_T) {
        const int part = i / ne, el = i % ne, u = el / D.Dv, e = el % D.Dv;
        const int x0 = nsl * part / np, x1 = nsl * (part + 1) / np;
        const float *wu = w + u * nsl;
        float oc = 0.f, os = 0.f, ow = 0.f;
        for (int xb = x0; xb < x1; xb += 8) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int x = xb + k;
                v[k] = x < x1 && wu[x] != 0.f ? __ldcg(fd_slot(D, bg, u0 + u, x) + 2 + e) : 0.f;
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int x = xb + k;
                if (x >= x1) break;
                const float c = v[k] * wu[x];
                if (x < first[1]) oc += c;
                else if (x < first[2]) os += c;
                else ow += c;
            }
        }
        red[i * 3] = oc;
        red[i * 3 + 1] = os;
        red[i * 3 + 2] = ow;
    }
    __syncthreads();
    for (int el = tid; el < ne; el += FD_T) {
        const int u = el / D.Dv, e = el % D.Dv, h = g * D.G + u0 + u;
        float oc = 0.f, os = 0.f, ow = 0.f;
        for (int part = 0; part < np; part++) {
            oc += red[(part * ne + el) * 3];
            os += red[(part * ne + el) * 3 + 1];
            ow += red[(part * ne + el) * 3 + 2];
        }
        const float out = fd_gate<T>(D, b, h, NSA_BRANCH_CMP) * oc +
                          fd_gate<T>(D, b, h, NSA_BRANCH_SEL) * os +
                          fd_gate<T>(D, b, h, NSA_BRANCH_WIN) * ow;
        ((T *)D.out.p)[b * D.out.sb + h * D.out.sh + e * D.out.sd] = nsa_cu_to<T>(out);
    }
    __syncthreads();
}

/* fd_merge's shared memory for hm heads. */
static size_t fd_merge_smem(const nsa_cu_dec *D, int hm) {
    const size_t ne = (size_t)hm * D->Dv;
    return (size_t)hm * (2 * (D->pc + D->ps + D->pw) + 6) * 4 + (ne > FD_T ? ne : FD_T) * 12;
}

#endif /* NSA_CUDA_DECODE_FAST_SYNC_CUH */
