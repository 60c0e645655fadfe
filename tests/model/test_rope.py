import math

import torch

from qvggt_deploy.model.layers.rope import RotaryPositionEmbedding2D, patch_positions


def test_patch_positions_layout():
    pos = patch_positions(batch=2, rows=2, cols=3, num_special=5)
    assert pos.shape == (2, 5 + 6, 2)
    assert pos[0, :5].eq(0).all()
    # row-major over (row, col), both shifted by +1
    expected = torch.tensor([[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]])
    assert torch.equal(pos[0, 5:], expected)


def test_position_zero_is_identity():
    rope = RotaryPositionEmbedding2D(100.0)
    x = torch.randn(1, 2, 4, 16)
    pos = torch.zeros(1, 4, 2, dtype=torch.long)
    assert torch.equal(rope(x, pos), x)


def test_rotate_half_layout_y_then_x():
    # head_dim 8: channels 0..3 rotate with y, 4..7 with x; pairs (0,2), (1,3) with
    # frequencies 1 and 1/100^(2/4) = 0.1.
    rope = RotaryPositionEmbedding2D(100.0)
    p = 3
    x = torch.zeros(1, 1, 1, 8)
    x[..., 0] = 1.0  # y-half, pair (0, 2), frequency 1
    x[..., 5] = 1.0  # x-half, pair (5, 7), frequency 0.1
    pos = torch.tensor([[[p, 2 * p]]])
    out = rope(x, pos)[0, 0, 0]
    expected = torch.zeros(8)
    expected[0], expected[2] = math.cos(p), math.sin(p)
    expected[5], expected[7] = math.cos(2 * p * 0.1), math.sin(2 * p * 0.1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_rope_preserves_norm_and_relative_positions():
    rope = RotaryPositionEmbedding2D(100.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    def score(pq, pk):
        return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum()
    # dot products depend only on the position difference
    assert torch.allclose(score([2, 5], [1, 1]), score([4, 7], [3, 3]), atol=1e-5)
    assert torch.allclose(rope(q, torch.tensor([[[7, 9]]])).norm(), q.norm(), atol=1e-5)
