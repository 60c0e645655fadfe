"""How much of the aggregator's global attention falls on the truly matching patch.

Why: a camera loss can fall while the model still ignores the other views. If global attention
links a patch of frame s to the patch of frame 0 that shows the same surface point, cross-view
correspondence is available to the camera; at 1x chance it is not. The ratio is the attention mass
a frame-s patch puts on its matching frame-0 patch, divided by the uniform share ``1 / (S * N)``
(``N`` tokens per frame), averaged over matched patches; the best head of each global block is
reported, since one head is enough to carry the match.

:func:`attention_match_loss` turns the same correspondences into a training signal: cross-entropy
pulling one head of every global block from a frame-s patch towards its frame-0 match.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.train.tracks import ground_truth_tracks


def patch_matches(scene, patch_size: int) -> List[torch.Tensor]:
    """Per frame s >= 1: ``[M, 2]`` pairs (frame-0 patch, frame-s patch) whose centres show the same
    surface point (frame 0's patch centres tracked into frame s, visible there). ``scene`` has the
    ground-truth fields of :class:`~qvggt_deploy.data.synthetic.Scene` (one sample, ``[S, ...]``)."""
    _, H, W = scene.depth.shape
    rows, cols = H // patch_size, W // patch_size
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack([xs.flatten() * patch_size + patch_size // 2,
                           ys.flatten() * patch_size + patch_size // 2], dim=-1).float()
    gt = ground_truth_tracks(centres[None], scene.world_points[None], scene.mask[None], scene.depth[None],
                             scene.extrinsics[None], scene.intrinsics[None])
    out = []
    for s in range(1, scene.depth.shape[0]):
        visible = gt["visible"][0, s] & gt["visible"][0, 0]
        u, v = gt["tracks"][0, s, visible].unbind(-1)
        target = (v.round().long().clamp(0, H - 1) // patch_size) * cols + u.round().long().clamp(0, W - 1) // patch_size
        out.append(torch.stack([torch.nonzero(visible)[:, 0], target], dim=-1))
    return out


class GlobalAttentionInputs:
    """Forward pre-hooks keeping each global block's attention input (normed tokens, positions)."""

    def __init__(self, aggregator: nn.Module):
        self.inputs: List = []
        self.handles = [block.attn.register_forward_pre_hook(self._keep, with_kwargs=True)
                        for block in aggregator.global_blocks]

    def _keep(self, module, args, kwargs):
        self.inputs.append((module, args[0], kwargs.get("pos")))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _attention_logits(attn: nn.Module, x: torch.Tensor, pos: torch.Tensor, queries: torch.Tensor,
                      heads: slice = slice(None)) -> torch.Tensor:
    """Attention logits of the ``queries`` token indices over all tokens of one sample
    (``x [1, T, C]``): ``[heads, Q, T]``."""
    B, T, C = x.shape
    qkv = attn.qkv(x).reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0][:, heads]), attn.k_norm(qkv[1][:, heads])
    if attn.rope is not None and pos is not None:
        q, k = attn.rope(q, pos), attn.rope(k, pos)
    return q[0, :, queries] @ k[0].transpose(-1, -2) / attn.head_dim ** 0.5


def attention_match_loss(inputs, batch: Dict[str, torch.Tensor], patch_size: int, patch_start: int,
                         per_frame: int, generator: torch.Generator) -> torch.Tensor:
    """Mean cross-entropy of head 0 of every global block (``inputs`` from
    :class:`GlobalAttentionInputs` of this step's forward) over up to ``per_frame`` matched patches
    of each later frame, against the matching frame-0 patch. ``batch`` holds the raw ground truth
    ``[B, S, ...]`` (depth, mask, world_points, extrinsics, intrinsics), on any device: the
    matches are found where it is, the loss where the model runs."""
    B, S = batch["depth"].shape[:2]
    n_tokens = inputs[0][1].shape[1] // S
    device = inputs[0][1].device
    total, terms = torch.zeros((), device=device), 0
    for b in range(B):
        sample = SimpleNamespace(**{k: batch[k][b] for k in ("depth", "mask", "world_points", "extrinsics",
                                                            "intrinsics")})
        query, key = [], []
        for s, pairs in enumerate(patch_matches(sample, patch_size), start=1):
            if len(pairs) > per_frame:
                pairs = pairs[torch.randperm(len(pairs), generator=generator)[:per_frame]]
            query.append(s * n_tokens + patch_start + pairs[:, 1])
            key.append(patch_start + pairs[:, 0])
        if not query or sum(len(q) for q in query) == 0:
            continue
        query, key = torch.cat(query).to(device), torch.cat(key).to(device)
        for attn, x, pos in inputs:
            logits = _attention_logits(attn, x[b:b + 1], None if pos is None else pos[b:b + 1], query,
                                       heads=slice(0, 1))[0]
            total = total + F.cross_entropy(logits, key)
            terms += 1
    return total / max(terms, 1)


@torch.no_grad()
def attention_match_ratio(model: nn.Module, scenes) -> Dict[str, float]:
    """Best-head match ratio per global block over ``scenes`` (each ``[S,3,H,W]`` frames with
    ground truth), plus ``attn_match_best`` (the highest). 1.0 is chance."""
    aggregator = model.aggregator
    device = aggregator.camera_token.device
    patch, start = aggregator.patch_size, aggregator.patch_start_idx
    sums, counts = None, 0
    for scene in scenes:
        S = scene.images.shape[0]
        tap = GlobalAttentionInputs(aggregator)
        try:
            aggregator(scene.images[None].to(device))
        finally:
            tap.remove()
        n_tokens = tap.inputs[0][1].shape[1] // S
        matches = patch_matches(scene, patch)
        query = torch.cat([s * n_tokens + start + m[:, 1] for s, m in enumerate(matches, start=1)]).to(device)
        key = torch.cat([start + m[:, 0] for m in matches]).to(device)
        if query.numel() == 0:
            continue
        ratios = []
        for attn, x, pos in tap.inputs:
            probs = _attention_logits(attn, x, pos, query).softmax(-1)  # [heads, Q, T]
            mass = probs.gather(-1, key.view(1, -1, 1).expand(probs.shape[0], -1, 1))[..., 0]
            ratios.append(mass.sum(-1) * S * n_tokens)  # per head, summed over queries
        stacked = torch.stack(ratios).cpu()  # [blocks, heads]
        sums = stacked if sums is None else sums + stacked
        counts += query.numel()
    if sums is None:
        return {"attn_match_best": float("nan")}
    per_block = (sums / counts).max(dim=-1).values
    out = {f"attn_match_block{i}": round(float(r), 3) for i, r in enumerate(per_block)}
    out["attn_match_best"] = round(float(per_block.max()), 3)
    return out
