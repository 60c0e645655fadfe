import math

import torch

from qvggt_deploy.model.heads.dpt_head import FeatureFusionBlock, ResidualConvUnit, position_embedding, sincos_1d, uv_grid


def test_residual_unit_adds_relu_of_input():
    rcu = ResidualConvUnit(4)
    for conv in (rcu.conv1, rcu.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(rcu(x), torch.relu(x))  # the skip is relu(x), not x


def test_fusion_block_without_residual_has_no_rcu1():
    block = FeatureFusionBlock(4, has_residual=False)
    assert not hasattr(block, "resConfUnit1")
    assert block(torch.randn(1, 4, 3, 3), size=(7, 5)).shape == (1, 4, 7, 5)
    assert FeatureFusionBlock(4)(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)).shape == (1, 4, 6, 6)


def test_uv_grid_hand_computed():
    g = uv_grid(width=2, height=1, aspect_ratio=1.0)
    span = 1 / math.sqrt(2)
    assert g.shape == (1, 2, 2)
    assert torch.allclose(g[0, :, 0], torch.tensor([-span / 2, span / 2]))
    assert torch.allclose(g[0, :, 1], torch.zeros(2))


def test_sincos_and_embedding_layout():
    emb = sincos_1d(4, torch.tensor([0.5]))
    omega = torch.tensor([1.0, 1.0 / 100.0 ** 0.5])  # omega_k = 100^(-k/(D/2)), D = 4
    assert torch.allclose(emb[0], torch.cat([torch.sin(0.5 * omega), torch.cos(0.5 * omega)]))
    pe = position_embedding(8, 3, 2, aspect_ratio=2 / 3)
    grid = uv_grid(2, 3, 2 / 3)
    assert pe.shape == (8, 3, 2)
    # first half embeds u (x), second half v (y)
    assert torch.allclose(pe[:4, 1, 1], sincos_1d(4, grid[1, 1, :1]).reshape(4))
    assert torch.allclose(pe[4:, 2, 0], sincos_1d(4, grid[2, 0, 1:]).reshape(4))
