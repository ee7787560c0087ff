// SPDX-License-Identifier: Apache-2.0
/* config.c — the NSA config: paper defaults and the block arithmetic every path shares.
 * Invariant: nsa_num_cmp is core/nsa_index.h's num_cmp (the one definition of "compressed
 * blocks complete after T tokens"), with a NULL or invalid config giving 0.
 */
#include "internal.h"
#include "nsa_index.h"

#include <math.h>

nsa_config nsa_config_default(int Hq, int Hkv, int Dk, int Dv) {
    nsa_config c;
    c.l = 32;
    c.d = 16;
    c.lp = 64;
    c.n = 16;
    c.n_init = 1;
    c.n_local = 2;
    c.w = 512;
    c.scale = 0.0f;
    c.Hq = Hq;
    c.Hkv = Hkv;
    c.Dk = Dk;
    c.Dv = Dv;
    return c;
}

int64_t nsa_num_cmp(const nsa_config *cfg, int64_t T) {
    if (!cfg || cfg->d < 1 || cfg->l < 1) return 0;
    return nsa_ix_num_cmp(cfg->l, cfg->d, T);
}

float nsa_config_scale(const nsa_config *cfg) {
    if (!cfg) return 0.0f;
    if (cfg->scale > 0.0f) return cfg->scale;
    return cfg->Dk > 0 ? (float)(1.0 / sqrt((double)cfg->Dk)) : 0.0f;
}
