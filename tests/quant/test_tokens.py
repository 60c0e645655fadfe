"""Token rule: special-row masks, PCA compensation rows, weighted rows, virtual queries."""
import math

import torch

from qvggt_deploy.model.layers.attention import Attention
from qvggt_deploy.model.layers.rope import RotaryPositionEmbedding2D, patch_positions
from qvggt_deploy.quant.tokens import (attention_with_virtual_queries, compensation_rows, special_rows_mask,
                                       split_rows, stat_rows)


def test_compensation_recovers_planted_direction():
    g = torch.Generator().manual_seed(0)
    K, M = 48, 500
    u = torch.randn(K, generator=g)
    u /= u.norm()
    mu = 3 * torch.randn(K, generator=g)
    special = mu + 4.0 * torch.randn(M, 1, generator=g) * u + 0.05 * torch.randn(M, K, generator=g)
    rows = compensation_rows(special, k=2)
    assert rows.shape == (5, K)
    assert torch.allclose(rows.mean(0), special.mean(0), atol=1e-4)
    direction = rows[1] - rows[0]
    assert abs(float(direction @ u)) / float(direction.norm()) > 0.999
    sigma = float(((special - special.mean(0)) @ u).std(unbiased=False))
    assert float(direction.norm()) / math.sqrt(2.5) == torch.tensor(sigma).item() or \
        abs(float(direction.norm()) / math.sqrt(2.5) - sigma) < 0.02 * sigma
    # equal-weight covariance of the rows = rank-2 PCA covariance of the special rows
    centred = special - special.mean(0)
    evals, evecs = torch.linalg.eigh(centred.T @ centred / M)
    rank2 = (evecs[:, -2:] * evals[-2:]) @ evecs[:, -2:].T
    rc = rows - rows.mean(0)
    assert torch.allclose(rc.T @ rc / 5, rank2, atol=1e-3)


def test_compensation_of_fewer_rows_than_directions():
    rows = compensation_rows(torch.ones(1, 8) * 2, k=2)
    assert torch.allclose(rows, torch.full((5, 8), 2.0))


def test_special_mask_split_and_weights():
    mask = special_rows_mask(14, 7, 5)
    assert mask.tolist() == [True] * 5 + [False] * 2 + [True] * 5 + [False] * 2
    assert not special_rows_mask(10, 5, 0).any()
    x = torch.arange(2 * 14 * 3, dtype=torch.float32).reshape(2, 14, 3)
    kept, special = split_rows(x, 7, 5)
    assert kept.shape == (8, 3) and special.shape == (20, 3)
    comp = torch.zeros(5, 3)
    rows, w = stat_rows([x], [(7, 5)], comp)
    assert rows.shape == (13, 3) and float(w.sum()) == 28.0  # compensation weighs the 20 rows it replaces
    rows, w = stat_rows([x], [(7, 5)], None)
    assert rows.shape == (28, 3) and float(w.sum()) == 28.0


def test_virtual_queries_leave_real_rows_exact():
    torch.manual_seed(0)
    attn = Attention(32, 2, qk_norm=True, rope=RotaryPositionEmbedding2D(100.0)).eval()
    pos = patch_positions(3, 2, 2, 5)
    x = torch.randn(3, 9, 32)
    extra = torch.randn(5, 32)
    with torch.no_grad():
        out = attention_with_virtual_queries(attn, x, pos, extra)
        assert out.shape == (3, 14, 32)
        assert torch.allclose(out[:, :9], attn(x, pos=pos), atol=1e-6)
        # a virtual row equal to a special token's input gives that token's output (up to its own key)
        x2 = x.clone()
        x2[:, 0] = extra[0]
        own = attention_with_virtual_queries(attn, x2, pos, extra)
        assert own.shape == (3, 14, 32)
        assert torch.allclose(own[:, 9], own[:, 0], atol=1e-6)  # same query, same position, same keys
        assert not torch.allclose(own[:, 10], own[:, 0], atol=1e-3)
