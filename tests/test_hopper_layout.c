// SPDX-License-Identifier: Apache-2.0
/* test_hopper_layout.c — the integer arithmetic of the Hopper kernels (src/cuda/sm90/
 * hopper_layout.h) on the CPU, against models written from the PTX ISA and the TMA docs:
 * the element a wgmma reads through each descriptor (decode the fields, walk the canonical
 * 128B-swizzle layout, swizzle the absolute address) is the element TMA wrote there; key ranges
 * equal brute-force visibility; the tile classes are sound (brute force over rows and keys).
 * Not a GPU test: what the hardware does is checked by tests/gpu/test_gpu_hopper.c next to it;
 * these cases prove the kernels' address and skip arithmetic before any device time is spent.
 */
#include "harness.h"

#include "cuda/sm90/hopper_layout.h"

#include <string.h>

/* ---- the hardware models ---- */

/* 128-byte swizzle of an absolute shared-memory address: bits 4-6 ^= bits 7-9. */
static uint32_t swz(uint32_t a) { return a ^ (((a >> 7) & 7u) << 4); }

/* Descriptor fields (PTX ISA "Matrix Descriptor Format"). */
typedef struct {
    uint32_t start, lbo, sbo, base_off, mode;
} desc_t;
static desc_t decode(uint64_t d) {
    desc_t r = {(uint32_t)(d & 0x3FFF) << 4, (uint32_t)((d >> 16) & 0x3FFF) << 4,
                (uint32_t)((d >> 32) & 0x3FFF) << 4, (uint32_t)((d >> 49) & 7),
                (uint32_t)(d >> 62)};
    return r;
}

/* Byte address wgmma reads for element (mn, k) of a k16 step, 2-byte elements, 128B swizzle.
 * K-major: ((8, m), (T, 2k)) : ((8T, SBO), (1, T)) — rows 128 B apart, 8-row groups SBO apart,
 * k contiguous. MN-major: ((T, 8, m), (8, k)) : ((1, T, LBO), (8T, SBO)) — mn contiguous in
 * 64-element blocks LBO apart, k rows 128 B apart, 8-row groups SBO apart. */
static uint32_t wgmma_addr(uint64_t d, int mn_major, uint32_t mn, uint32_t k) {
    const desc_t f = decode(d);
    uint32_t a;
    if (!mn_major) a = f.start + (mn / 8) * f.sbo + (mn % 8) * 128 + k * 2;
    else a = f.start + (mn / 64) * f.lbo + (k / 8) * f.sbo + (k % 8) * 128 + (mn % 64) * 2;
    return swz(a);
}

/* Where TMA (box: 64 elements × rows, SWIZZLE_128B) puts element (r, c) of a tile whose
 * 64-column blocks are loaded one box each, rows·128 B apart, at a 1024-aligned `tile`. */
static uint32_t tma_addr(uint32_t tile, uint32_t rows, uint32_t r, uint32_t c) {
    const uint32_t box = tile + (c / 64) * rows * 128, byte = (c % 64) * 2;
    return swz(box + r * 128 + byte); /* the swizzle acts on the absolute address */
}

/* ---- cases ---- */

/* Fields land where the ISA puts them; swizzle mode 1 (128 B), base offset 0. */
static void desc_fields(void) {
    const uint64_t d = nsa_hp_desc(0x2A400 + 0x20, 16384, 1024);
    const desc_t f = decode(d);
    CHECK(f.start == 0x2A420 && f.lbo == 16384 && f.sbo == 1024 && f.base_off == 0 && f.mode == 1,
          "start %#x lbo %u sbo %u base %u mode %u", f.start, f.lbo, f.sbo, f.base_off, f.mode);
    CHECK((d & 0x3FFF) == (0x2A420 >> 4) && ((d >> 16) & 0x3FFF) == 1024 &&
              ((d >> 32) & 0x3FFF) == 64 && (d >> 62) == 1 && ((d >> 14) & 3) == 0 &&
              ((d >> 30) & 3) == 0 && ((d >> 46) & 0xFFFF) == 0,
          "descriptor %#llx", (unsigned long long)d);
}

/* The swizzled tile is a bijection of its bytes, and equals TMA's placement. */
static void tile_layout(void) {
    const uint32_t rows[] = {64, 128}, cols[] = {64, 128, 192};
    for (int ri = 0; ri < 2; ri++)
        for (int ci = 0; ci < 3; ci++) {
            const uint32_t R = rows[ri], C = cols[ci], bytes = R * C * 2;
            static unsigned char seen[128 * 192 * 2];
            memset(seen, 0, sizeof seen);
            int bad = 0;
            for (uint32_t r = 0; r < R; r++)
                for (uint32_t c = 0; c < C; c++) {
                    const uint32_t o = nsa_hp_tile_off(R, r, c);
                    bad += o >= bytes || o % 2 || seen[o]++ ||
                           0x8000u + o != tma_addr(0x8000u, R, r, c);
                }
            CHECK(bad == 0, "rows %u cols %u: %d elements misplaced", R, C, bad);
        }
}

/* S = Q·Kᵀ: every k-step of the K-major descriptors reads, for every row and k, the element
 * TMA (K) or the Q loader wrote (Q: 64 rows, K: BN rows; D 64/128/192). */
static void desc_k_reads_tile(void) {
    const uint32_t rows[] = {64, 128}, dks[] = {64, 128, 192};
    for (int ri = 0; ri < 2; ri++)
        for (int di = 0; di < 3; di++) {
            const uint32_t R = rows[ri], DK = dks[di], tile = 0x10000u + ri * 0x400u * 8;
            int bad = 0;
            for (uint32_t kk = 0; kk < DK / 16; kk++) {
                const uint64_t d = nsa_hp_desc_k(tile, R, kk);
                for (uint32_t m = 0; m < R; m++)
                    for (uint32_t k = 0; k < 16; k++)
                        bad += wgmma_addr(d, 0, m, k) != tile + nsa_hp_tile_off(R, m, kk * 16 + k);
            }
            CHECK(bad == 0, "K-major rows %u D %u: %d reads off", R, DK, bad);
        }
}

/* O += P·V: every k-step (16 keys) of the MN-major descriptor reads V[key][n] for every n < DV
 * from where TMA wrote it (BN 64/128 keys, DV 64/128). */
static void desc_mn_reads_tile(void) {
    const uint32_t rows[] = {64, 128}, dvs[] = {64, 128};
    for (int ri = 0; ri < 2; ri++)
        for (int di = 0; di < 2; di++) {
            const uint32_t R = rows[ri], DV = dvs[di], tile = 0x20000u;
            int bad = 0;
            for (uint32_t kk = 0; kk < R / 16; kk++) {
                const uint64_t d = nsa_hp_desc_mn(tile, R, kk);
                for (uint32_t k = 0; k < 16; k++)
                    for (uint32_t n = 0; n < DV; n++)
                        bad += wgmma_addr(d, 1, n, k) != tile + nsa_hp_tile_off(R, kk * 16 + k, n);
            }
            CHECK(bad == 0, "MN-major keys %u Dv %u: %d reads off", R, DV, bad);
        }
}

/* Packed documents of random lengths (some empty) over T tokens: per token its document's first
 * token s0 and first compressed block c0. */
static void make_docs(int T, int l, int d, int docs, int *s0, int *c0) {
    int start = 0, cstart = 0;
    while (start < T) {
        int len = docs ? nsa_rng_int(0, T / 2 + 1) : T;
        if (start + len > T) len = T - start;
        for (int t = start; t < start + len; t++) s0[t] = start, c0[t] = cstart;
        cstart += (int)nsa_ix_num_cmp(l, d, len);
        start += len;
    }
}

/* Brute force: does row t see key j (compressed block or token index, packed)? */
static int sees(int is_cmp, int t, const int *s0, const int *c0, int l, int d, int w, int j) {
    if (is_cmp) {
        const int i = j - c0[t];
        return i >= 0 && nsa_ix_cmp_sees(l, d, t - s0[t], i);
    }
    return j >= s0[t] && nsa_ix_win_sees(w, t, j);
}

/* nsa_hp_keys is exactly the visible set, plain rows and packed documents. */
static void keys_exact(void) {
    enum { T = 160 };
    int s0[T], c0[T];
    for (int it = 0; it < 40; it++) {
        const int d = nsa_rng_int(1, 4), l = d * nsa_rng_int(1, 4), w = nsa_rng_int(1, 40);
        make_docs(T, l, d, it % 2, s0, c0);
        for (int is_cmp = 0; is_cmp < 2; is_cmp++)
            for (int t = 0; t < T; t++) {
                int lo, hi, bad = 0;
                nsa_hp_keys(is_cmp, t, s0[t], c0[t], l, d, w, &lo, &hi);
                for (int j = 0; j < 2 * T; j++)
                    bad += (j >= lo && j < hi) != sees(is_cmp, t, s0, c0, l, d, w, j);
                CHECK(bad == 0, "cmp=%d t=%d l=%d d=%d w=%d docs=%d: [%d, %d) wrong at %d keys",
                      is_cmp, t, l, d, w, it % 2, lo, hi, bad);
            }
    }
}

/* DEAD: no row of [ta, tb] sees a key of the tile; FULL: every row sees every key. Exact (DEAD
 * iff nobody sees a key) for plain rows, where the kernel's skip is as good as brute force. */
static void tile_class_sound(void) {
    enum { T = 200 };
    int s0[T], c0[T];
    int64_t dead = 0, full = 0;
    for (int it = 0; it < 60; it++) {
        const int d = nsa_rng_int(1, 4), l = d * nsa_rng_int(1, 4), w = nsa_rng_int(1, 70);
        const int docs = it % 3 == 2;
        make_docs(T, l, d, docs, s0, c0);
        for (int is_cmp = 0; is_cmp < 2; is_cmp++)
            for (int rep = 0; rep < 200; rep++) {
                const int ta = nsa_rng_int(0, T - 1), span = nsa_rng_int(0, 7);
                const int tb = ta + span < T ? ta + span : T - 1;
                const int bn = 1 << nsa_rng_int(0, 6), base = nsa_rng_int(0, 2 * T);
                int lo_f, hi_f, lo_l, hi_l;
                nsa_hp_keys(is_cmp, ta, s0[ta], c0[ta], l, d, w, &lo_f, &hi_f);
                nsa_hp_keys(is_cmp, tb, s0[tb], c0[tb], l, d, w, &lo_l, &hi_l);
                const int cls = nsa_hp_tile_class(base, bn, lo_f, hi_f, lo_l, hi_l);
                int any = 0, all = 1;
                for (int t = ta; t <= tb; t++)
                    for (int j = base; j < base + bn; j++) {
                        const int s = sees(is_cmp, t, s0, c0, l, d, w, j);
                        any |= s;
                        all &= s;
                    }
                dead += cls == NSA_HP_DEAD;
                full += cls == NSA_HP_FULL;
                CHECK(!(cls == NSA_HP_DEAD && any), "DEAD but seen: cmp=%d rows %d..%d tile %d+%d",
                      is_cmp, ta, tb, base, bn);
                CHECK(!(cls == NSA_HP_FULL && !all), "FULL but a key unseen: cmp=%d rows %d..%d "
                      "tile %d+%d", is_cmp, ta, tb, base, bn);
                CHECK(docs || cls == NSA_HP_DEAD || any, "plain rows: nobody sees tile %d+%d of "
                      "rows %d..%d (cmp=%d) but not DEAD", base, bn, ta, tb, is_cmp);
            }
    }
    CHECK(dead > 1000 && full > 1000, "too few DEAD (%lld) or FULL (%lld) tiles drawn",
          (long long)dead, (long long)full);
}

int main(int argc, char **argv) {
    static const nsa_case cases[] = {
        {"desc_fields", desc_fields},           {"tile_layout", tile_layout},
        {"desc_k_reads_tile", desc_k_reads_tile}, {"desc_mn_reads_tile", desc_mn_reads_tile},
        {"keys_exact", keys_exact},             {"tile_class_sound", tile_class_sound},
    };
    return nsa_test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
