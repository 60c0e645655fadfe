import torch

from qvggt_deploy.export.trace import FixedRope, export_view
from qvggt_deploy.model.layers.rope import patch_positions
from tests.micro_exports import micro_model


def test_fixed_rope_is_bit_identical_for_frame_and_global_attention():
    model = micro_model()
    rope = model.aggregator.rope
    rows, cols, special, dim = 3, 5, 5, 16
    fixed = FixedRope(rope, rows, cols, special, dim)
    n = special + rows * cols
    pos = patch_positions(4, rows, cols, special)
    q = torch.randn(4, 2, n, dim)
    assert torch.equal(fixed(q), rope(q, pos))  # frame attention: [B*S, heads, N, D]
    g = torch.randn(1, 2, 4 * n, dim)
    assert torch.equal(fixed(g), rope(g, pos.reshape(1, 4 * n, 2)))  # global: [B, heads, S*N, D]


def test_export_view_restores_the_model():
    model = micro_model()
    images = torch.rand(2, 3, 42, 70)
    with torch.no_grad():
        before = model(images)
        with export_view(model, 42, 70):
            during = model(images)  # markers outside a trace run the real layer
        after = model(images)
    for key in ("pose_enc", "depth", "world_points"):
        assert torch.equal(before[key], after[key])
        assert torch.equal(before[key], during[key])  # the export view computes the same bits
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert model.aggregator.frame_blocks[0].attn.rope is model.aggregator.rope
