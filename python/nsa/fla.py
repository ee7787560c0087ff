# SPDX-License-Identifier: Apache-2.0
"""fla.py — `nsa.parallel_nsa`: fla-org's `fla.ops.nsa.parallel_nsa` calling convention (argument
names, layouts, defaults) on libnsa, so code using fla swaps one import.
Not a copy of fla: only its interface is followed; the semantics are libnsa's (written below
where they differ).
Invariant: every argument is turned into one nsa.attention call; nothing is computed here
except the gates' stacking and the canonical form of a caller's block_indices.
"""
import torch

from ._op import Config, attention


def _canonical_blocks(block_indices, block_counts, block_size, T):
    """fla's looser block_indices (B, T, H, S) -> libnsa's contract: per row ascending, no
    duplicates, causal (j <= t // block_size), -1 padding last. Entries fla would skip (negative,
    past the query's block, at positions >= block_counts when that is a tensor) become -1."""
    bi = block_indices.to(torch.long)
    S = bi.shape[-1]
    t = torch.arange(T, device=bi.device).view(1, T, 1, 1)
    bad = (bi < 0) | (bi > t // block_size)
    if isinstance(block_counts, torch.Tensor):
        bad |= torch.arange(S, device=bi.device).view(1, 1, 1, S) >= block_counts.unsqueeze(-1)
    big = torch.iinfo(torch.int32).max
    bi = torch.where(bad, torch.full_like(bi, big), bi).sort(-1).values
    dup = torch.zeros_like(bad)
    dup[..., 1:] = bi[..., 1:] == bi[..., :-1]
    bi = torch.where(dup, torch.full_like(bi, big), bi).sort(-1).values
    return torch.where(bi == big, torch.full_like(bi, -1), bi).to(torch.int32)


def parallel_nsa(q, k, v, g_cmp=None, g_slc=None, g_swa=None, block_indices=None,
                 block_counts=16, block_size=64, window_size=0, scale=None, cu_seqlens=None):
    r"""NSA with fla-org's `parallel_nsa` signature: `from nsa import parallel_nsa` replaces
    `from fla.ops.nsa import parallel_nsa`.

    Args (fla's names, layouts and defaults):
        q: (B, T, HQ, K). k: (B, T, H, K), v: (B, T, H, V) — one K/V shared by the three
            branches, as in fla. Any HQ divisible by H works (fla needs HQ/H a power of 2 >= 16).
        g_cmp, g_slc, g_swa: (B, T, HQ) gates of the compressed, selected and sliding branches.
            None: that branch is off (gate 0), except g_slc, which is 1 when None (fla adds the
            selected output ungated). g_swa is required when window_size > 0.
        block_indices: optional (B, T, H, S) selected blocks used instead of the computed
            selection (fla's override). As fla does, entries that are negative or past the
            query's own block are skipped; order and duplicates do not matter (they are sorted
            and de-duplicated before the call). No forced blocks are added to them.
        block_counts: int (the S blocks every query selects, default 16) or, with
            block_indices, a (B, T, H) tensor: row entries at positions >= its count are
            skipped. A tensor without block_indices raises NotImplementedError (libnsa selects
            the same n for every query).
        block_size: fla's one block size, used for compression length, compression stride and
            selection block: l = d = lp = block_size. Default 64.
        window_size: sliding window (0: off). scale: default 1/sqrt(K).
        cu_seqlens: (N + 1,) offsets of documents packed in one row (B = 1), each its own causal
            sequence. A (cu_seqlens_q, cu_seqlens_k) tuple raises NotImplementedError.

    Returns: o (B, T, HQ, V).

    Semantics, where they differ from fla's kernels:
      - Compression is the mean over each block of block_size raw keys/values (fla: the same
        mean pooling); a query t sees block i once it is complete, (i+1)·block_size <= t+1.
      - Selection scores are the compressed branch's softmax probabilities summed over the
        group's heads (fla: the same, from its lse); the first block and the blocks holding t
        and t - block_size are forced (fla: the same three); the rest are the top S-3 complete
        blocks by score with ties to the lower index (fla: a bitonic sort, so exact ties may
        pick differently). The selected block holding t is clipped causally (fla: the same).
      - The window attends [t - window_size + 1, t] (fla: flash-attn with window
        (window_size-1, 0): the same keys).
      - All branches run in one libnsa call; libnsa computes in f32 or wider (the CPU reference
        in double), so outputs agree with fla's up to rounding, not bitwise.
    """
    B, T, HQ, _ = q.shape
    if isinstance(cu_seqlens, tuple):
        raise NotImplementedError("nsa.parallel_nsa: cu_seqlens as a (q, k) tuple (queries "
                                  "shorter than keys) is not supported; pass one cu_seqlens")
    if cu_seqlens is not None and B != 1:
        raise ValueError(f"nsa.parallel_nsa: the batch size is expected to be 1 when using "
                         f"cu_seqlens, got {B}; flatten the documents into one row")
    if window_size > 0 and g_swa is None:
        raise ValueError("nsa.parallel_nsa: window_size > 0 needs g_swa (B, T, HQ)")
    if isinstance(block_counts, torch.Tensor):
        if block_indices is None:
            raise NotImplementedError("nsa.parallel_nsa: a block_counts tensor needs "
                                      "block_indices (libnsa selects the same number of blocks "
                                      "for every query; pass an int)")
        n = block_indices.shape[-1]
    else:
        n = int(block_counts) if block_indices is None else block_indices.shape[-1]
    n_init = min(1, n)
    cfg = Config(l=block_size, d=block_size, lp=block_size, n=n, n_init=n_init,
                 n_local=min(2, n - n_init), w=window_size, scale=float(scale or 0.0))
    zero = q.new_zeros(B, T, HQ)
    gates = torch.stack([g_cmp if g_cmp is not None else zero,
                         g_slc if g_slc is not None else zero + 1,
                         g_swa if window_size > 0 else zero], dim=-1)
    if block_indices is not None:
        block_indices = _canonical_blocks(block_indices, block_counts, block_size, T)
    return attention(q, k, v, gates, cfg, block_indices=block_indices, cu_seqlens=cu_seqlens)
