# SPDX-License-Identifier: Apache-2.0
"""nsa_reference.py — an independent pure-PyTorch NSA in float64, written from docs/design.md §1
(not from libnsa's C code): the oracle of the Python tests.
Not fast: loops over query positions; small shapes only. Differentiable by autograd (selection
indices are constants, as §1.2.7 says).
Invariant: same math as §1 — mean-pooled compression, Eq. 9 overlap scores, group sum, forced
blocks, top-n with lower-index ties on f32 scores, ranges clipped to t+1, window, gates.
"""
import torch


def num_cmp(cfg, T):
    return 0 if T < cfg.l else (T - cfg.l) // cfg.d + 1


def overlap(cfg, i, j):
    lo, hi = max(i * cfg.d, j * cfg.lp), min(i * cfg.d + cfg.l, (j + 1) * cfg.lp)
    return (hi - lo) // cfg.d if hi > lo else 0


def _attend(q, K, V, scale):
    """q (H, Dk) over keys K (S, H, Dk) -> (out (H, Dv), lse (H,)); zero / -inf when S == 0."""
    H = q.shape[0]
    if K.shape[0] == 0:
        return q.new_zeros(H, V.shape[-1]), q.new_full((H,), float("-inf"))
    s = torch.einsum("hd,shd->hs", q, K) * scale
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hs,shd->hd", p, V), torch.logsumexp(s, dim=-1)


def select_blocks(cfg, t, p_group):
    """Blocks picked for query t; p_group: (G, nc) cmp probabilities of one group's heads.
    Returns the selected blocks, ascending."""
    cur, ncomplete = t // cfg.lp, (t + 1) // cfg.lp
    nc = p_group.shape[1]
    m = torch.tensor([[overlap(cfg, i, j) for j in range(cur + 1)] for i in range(nc)],
                     dtype=torch.float64).reshape(nc, cur + 1)
    score = (p_group.sum(0) @ m).to(torch.float32).tolist()  # summed in double, compared in f32
    forced = []
    for j in range(min(cfg.n_init, cur + 1)):
        forced.append(j)
    for k in range(cfg.n_local):
        if cur - k >= 0 and cur - k not in forced:
            forced.append(cur - k)
    cand = [j for j in range(ncomplete) if j not in forced]
    cand.sort(key=lambda j: (-score[j], j))
    return sorted(forced + cand[:cfg.n - len(forced)])


def nsa_ref(q, k_cmp, v_cmp, k_sel, v_sel, k_win, v_win, gates, cfg, cmp_compressed=False,
            block_indices=None):
    """All tensors (B, T, H*, D*) float64 (k_cmp/v_cmp compressed when cmp_compressed);
    gates (B, T, Hq, 3). Returns out (B, T, Hq, Dv), lse (B, T, Hq, 3), blocks (B, T, Hkv, n)."""
    B, T, Hq, Dk = q.shape
    Hkv, Dv = k_sel.shape[2], v_sel.shape[3]
    G = Hq // Hkv
    scale = cfg.scale or Dk ** -0.5
    Tc = num_cmp(cfg, T)
    if cmp_compressed:
        Kc, Vc = k_cmp, v_cmp
    elif Tc:
        Kc = torch.stack([k_cmp[:, i * cfg.d:i * cfg.d + cfg.l].mean(1) for i in range(Tc)], 1)
        Vc = torch.stack([v_cmp[:, i * cfg.d:i * cfg.d + cfg.l].mean(1) for i in range(Tc)], 1)
    else:
        Kc = k_cmp.new_zeros(B, 0, Hkv, Dk)
        Vc = v_cmp.new_zeros(B, 0, Hkv, Dv)
    rep = lambda x: x.repeat_interleave(G, dim=-2)  # noqa: E731  (S, Hkv, D) -> (S, Hq, D)
    outs, lses, blocks = [], [], []
    for b in range(B):
        ob, lb, bb = [], [], []
        for t in range(T):
            nc = num_cmp(cfg, t + 1)
            qt = q[b, t]
            o_c, l_c = _attend(qt, rep(Kc[b, :nc]), rep(Vc[b, :nc]), scale)
            if nc:
                s = torch.einsum("hd,shd->hs", qt, rep(Kc[b, :nc])) * scale
                p = torch.softmax(s, -1).detach()
            else:
                p = qt.new_zeros(Hq, 0)
            o_s, l_s, row = [], [], []
            for g in range(Hkv):
                if block_indices is None:
                    sel = select_blocks(cfg, t, p[g * G:(g + 1) * G])
                else:
                    sel = [int(j) for j in block_indices[b, t, g] if j >= 0]
                row.append(sel + [-1] * (cfg.n - len(sel)))
                idx = [x for j in sel for x in range(j * cfg.lp, min((j + 1) * cfg.lp, t + 1))]
                o, lse = _attend(qt[g * G:(g + 1) * G], k_sel[b, idx][:, g:g + 1].expand(-1, G, -1),
                                 v_sel[b, idx][:, g:g + 1].expand(-1, G, -1), scale)
                o_s.append(o)
                l_s.append(lse)
            o_s, l_s = torch.cat(o_s), torch.cat(l_s)
            lo = max(0, t - cfg.w + 1) if cfg.w > 0 else t + 1
            o_w, l_w = _attend(qt, rep(k_win[b, lo:t + 1]), rep(v_win[b, lo:t + 1]), scale)
            gt = gates[b, t]
            ob.append(gt[:, 0:1] * o_c + gt[:, 1:2] * o_s + gt[:, 2:3] * o_w)
            lb.append(torch.stack([l_c, l_s, l_w], -1))
            bb.append(torch.tensor(row, dtype=torch.int32))
        outs.append(torch.stack(ob))
        lses.append(torch.stack(lb))
        blocks.append(torch.stack(bb))
    return torch.stack(outs), torch.stack(lses), torch.stack(blocks)
