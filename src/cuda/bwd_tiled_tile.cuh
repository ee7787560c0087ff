// SPDX-License-Identifier: Apache-2.0
/* bwd_tiled_tile.cuh — what the two kernel files of the tiled CUDA backward share: tile sizes,
 * the key tile of a branch (keys and the queries that can see them) and the host-side counts of
 * tiles and splits. Internal to bwd_tiled.cu and bwd_tiled_index.cu; not an API.
 * Invariant: both files enumerate key tiles and splits through these functions only, so the
 * split offsets of bwd_tiled_index.cu match the blocks of tl_key_kernel.
 */
#ifndef NSA_CUDA_BWD_TILED_TILE_CUH
#define NSA_CUDA_BWD_TILED_TILE_CUH

#include "bwd_tiled.cuh"

#define KT 32  /* keys per tile: one per lane                 */
#define NW 4   /* warps per block                             */
#define NTH (NW * 32)
#define NR 16  /* query-side rows per block                   */
#define RC 32  /* key-side (t, head) pairs per chunk          */

/* Key tile x of branch BR (x = (b·Hkv + g)·ntile + kt for cmp/win; ((b·Hkv + g)·nsel_max +
 * jb)·ntile + sub for sel, sub-tiles of KT keys within a selection block): keys [j0, jend) of
 * (b, g) and the queries that can see them: nq of them, t = tlo + i (cmp: t ≥ j0·d + l − 1;
 * win: [j0, jend − 1 + w)) or t = tl[i] (sel: the inverse index, ascending). */
typedef struct {
    int64_t b, j0, jend, tlo, nq;
    int g;
    const int *tl;
} tl_tile_t;

template <int BR>
__device__ __forceinline__ tl_tile_t tl_tile(const nsa_cu_params &P, int64_t x, int ntile,
                                             const int *off, const int *list) {
    tl_tile_t r;
    const int sub = (int)(x % ntile);
    const int64_t bgx = x / ntile;
    r.tl = NULL;
    r.tlo = 0;
    r.nq = 0;
    if (BR == NSA_BRANCH_SEL) {
        const int64_t jb = bgx % P.nsel_max, bg = bgx / P.nsel_max;
        r.g = (int)(bg % P.Hkv);
        r.b = bg / P.Hkv;
        r.j0 = jb * P.lp + (int64_t)sub * KT;
        const int64_t bend = (jb + 1) * P.lp < P.T ? (jb + 1) * P.lp : P.T;
        r.jend = r.j0 + KT < bend ? r.j0 + KT : bend;
        r.tl = list ? list + off[bgx] : NULL; /* NULL while counting splits */
        r.nq = off[bgx + 1] - off[bgx];
    } else {
        r.g = (int)(bgx % P.Hkv);
        r.b = bgx / P.Hkv;
        const int64_t X = BR == NSA_BRANCH_CMP ? P.Tc : P.T;
        r.j0 = (int64_t)sub * KT;
        r.jend = r.j0 + KT < X ? r.j0 + KT : X;
        if (BR == NSA_BRANCH_CMP) {
            r.tlo = nsa_ix_cmp_first_query(P.l, P.d, r.j0);
            r.nq = P.T - r.tlo;
        } else if (P.w > 0) {
            r.tlo = r.j0;
            const int64_t thi = nsa_ix_win_qend(P.w, r.jend - 1, P.T);
            r.nq = thi - r.tlo;
        }
    }
    if (r.jend <= r.j0 || r.nq < 0) r.nq = 0;
    return r;
}

/* Key tiles of branch br per (b, g) (sel: per (b, g, selection block)) and in all. */
static inline int tl_ntile(const nsa_cu_params &P, nsa_branch br, int64_t *total) {
    if (br == NSA_BRANCH_SEL) {
        const int nt = (P.lp + KT - 1) / KT;
        *total = (int64_t)P.B * P.Hkv * P.nsel_max * nt;
        return nt;
    }
    const int X = br == NSA_BRANCH_CMP ? P.Tc : P.T;
    const int nt = (X + KT - 1) / KT;
    *total = (int64_t)P.B * P.Hkv * nt;
    return nt;
}

/* Key-side (t, head) pairs per split: T·G / 16 in whole chunks, within [1024, 8192] (enough
 * blocks for the longest walks; each further split costs a partial slot, summed in order). */
static inline int tl_pps(const nsa_cu_params &P) {
    int64_t p = ((int64_t)P.T * P.G / 16 + RC - 1) / RC * RC;
    return p < 1024 ? 1024 : p > 8192 ? 8192 : (int)p;
}

/* Splits a key tile of branch br can need (grid y of the key kernel). */
static inline int tl_maxsplit(const nsa_cu_params &P, nsa_branch br) {
    const int pps = tl_pps(P);
    int64_t q = P.T;
    if (br == NSA_BRANCH_WIN) q = nsa_ix_win_qend(P.w, KT - 1, P.T);
    const int64_t n = (q * P.G + pps - 1) / pps;
    return n > 0 ? (int)n : 1;
}

#endif /* NSA_CUDA_BWD_TILED_TILE_CUH */
