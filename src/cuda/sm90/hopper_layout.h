// SPDX-License-Identifier: Apache-2.0
/* hopper_layout.h — the integer arithmetic of the Hopper kernels, written once for host and device
 * so the CPU tests (tests/test_hopper_layout.c) check exactly what the kernels compute: where an
 * element lands in a 128-byte-swizzled shared-memory tile, the wgmma matrix descriptors that read
 * such tiles, and which keys a query row sees and which key tiles a warpgroup may skip.
 * Not PTX: the instructions live in hopper.cuh; this header is plain C (no CUDA needed).
 * Invariant: a tile is [D/64 column blocks][rows][128 B] of 2-byte elements, 1024-byte aligned,
 * 16-byte chunks XOR-swizzled by row % 8 — the layout TMA writes with CU_TENSOR_MAP_SWIZZLE_128B
 * for a box of 64 elements × rows, and the canonical 128B-swizzle layout wgmma reads.
 */
#ifndef NSA_CUDA_HOPPER_LAYOUT_H
#define NSA_CUDA_HOPPER_LAYOUT_H

#include "../../core/nsa_index.h"

#include <stdint.h>

/* Byte offset of byte `cb` (< 128) of row r in a [rows][128 B] tile swizzled by 128 B: the 16-byte
 * chunk index (address bits 4-6) is XORed with the row within its 8-row group (bits 7-9). */
static NSA_HD uint32_t nsa_hp_sw128(uint32_t r, uint32_t cb) {
    return r * 128u + ((((cb >> 4) ^ (r & 7u)) << 4) | (cb & 15u));
}

/* Byte offset of 2-byte element (r, c) of a tile of `rows` rows stored as 64-column blocks. */
static NSA_HD uint32_t nsa_hp_tile_off(uint32_t rows, uint32_t r, uint32_t c) {
    return (c >> 6) * rows * 128u + nsa_hp_sw128(r, (c & 63u) * 2u);
}

/* A wgmma shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"): start address,
 * leading and stride byte offsets (each >> 4, 14 bits), base offset 0 (tiles are 1024-byte
 * aligned), swizzle mode 1 = 128 B in bits 62-63. */
static NSA_HD uint64_t nsa_hp_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFFu) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFFu) << 32) | ((uint64_t)1 << 62);
}

/* K-major operand (Q as A, K as B of S = Q·Kᵀ): k-step kk (16 elements of D) of a tile of `rows`
 * rows at shared address `tile`. Rows are 128 B apart, 8-row groups 1024 B (SBO); the step moves
 * the start 32 B within the 128-byte row, or to the next 64-column block; LBO is unused by
 * swizzled K-major layouts (encoded 1). */
static NSA_HD uint64_t nsa_hp_desc_k(uint32_t tile, uint32_t rows, uint32_t kk) {
    return nsa_hp_desc(tile + (kk >> 2) * rows * 128u + (kk & 3u) * 32u, 16u, 1024u);
}

/* MN-major operand (V as B of O = P·V, rows = keys = the K dimension): k-step kk (16 keys) of a
 * tile of `rows` keys. 8-key groups are 1024 B apart (SBO); 64-column blocks of N (Dv) are one
 * block apart, rows·128 B (LBO). */
static NSA_HD uint64_t nsa_hp_desc_mn(uint32_t tile, uint32_t rows, uint32_t kk) {
    return nsa_hp_desc(tile + kk * 2048u, rows * 128u, 1024u);
}

/* Keys [*lo, *hi) row t sees (empty when *hi <= *lo). s0: the first token of t's document, c0:
 * its first compressed block (packed documents; 0 and 0 for a plain batch row). cmp: the
 * document's compressed blocks complete at t, num_cmp(t - s0 + 1); win: the last w tokens of the
 * document up to t. Both ends are non-decreasing in t and lo(t+1) <= hi(t) — what
 * nsa_hp_tile_class relies on. */
static NSA_HD void nsa_hp_keys(int is_cmp, int t, int s0, int c0, int l, int d, int w, int *lo,
                           int *hi) {
    if (is_cmp) {
        *lo = c0;
        *hi = c0 + (int)nsa_ix_num_cmp(l, d, t - s0 + 1);
    } else {
        const int lo_w = (int)nsa_ix_win_lo(w, t);
        *lo = lo_w > s0 ? lo_w : s0;
        *hi = t + 1;
    }
}

enum { NSA_HP_DEAD = 0, NSA_HP_PARTIAL = 1, NSA_HP_FULL = 2 };

/* Class of key tile [base, base + bn) for consecutive rows first..last whose key ranges are
 * [lo_f, hi_f) (first) and [lo_l, hi_l) (last): DEAD when no row sees any of its keys (the
 * warpgroup skips its math), FULL when every row sees every key (no mask needed), else PARTIAL.
 * Sound for any non-decreasing ends with lo(t+1) <= hi(t): the rows' union lies in
 * [lo_f, hi_l) and their intersection contains [lo_l, hi_f). */
static NSA_HD int nsa_hp_tile_class(int base, int bn, int lo_f, int hi_f, int lo_l, int hi_l) {
    if (base + bn <= lo_f || base >= hi_l) return NSA_HP_DEAD;
    if (base >= lo_l && base + bn <= hi_f) return NSA_HP_FULL;
    return NSA_HP_PARTIAL;
}

#endif /* NSA_CUDA_HOPPER_LAYOUT_H */
