import pytest
import torch
import torch.nn.functional as F

from qvggt_deploy.model.layers.vision_transformer import DinoVisionTransformer


def _vit(img_size=56):
    torch.manual_seed(0)
    vit = DinoVisionTransformer(img_size, 14, 32, depth=1, num_heads=2, num_register_tokens=4)
    torch.nn.init.normal_(vit.pos_embed)
    return vit


def test_pos_embed_is_exact_noop_at_native_size():
    vit = _vit()
    out = vit.interpolate_pos_encoding(56, 56, torch.float32)
    assert torch.equal(out, vit.pos_embed)


def test_pos_embed_bicubic_antialias_size_based():
    vit = _vit()
    out = vit.interpolate_pos_encoding(42, 70, torch.float32)  # 3 x 5 patches
    assert out.shape == (1, 1 + 15, 32)
    assert torch.equal(out[:, :1], vit.pos_embed[:, :1])  # CLS entry unchanged
    grid = vit.pos_embed[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 5), mode="bicubic", antialias=True)
    assert torch.allclose(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 15, 32))
    # same square size as a different resolution is still resized
    assert vit.interpolate_pos_encoding(70, 70, torch.float32).shape == (1, 26, 32)


def test_registers_inserted_after_cls_without_pos_embed():
    vit = _vit()
    with torch.no_grad():
        vit.register_tokens.fill_(3.0)
    tokens = vit.prepare_tokens(torch.zeros(1, 3, 56, 56))
    assert tokens.shape == (1, 1 + 4 + 16, 32)
    assert torch.equal(tokens[0, 1:5], torch.full((4, 32), 3.0))
    assert torch.allclose(tokens[0, 0], vit.cls_token[0, 0] + vit.pos_embed[0, 0])


def test_output_drops_cls_and_registers():
    vit = _vit()
    assert vit(torch.rand(2, 3, 56, 28)).shape == (2, 8, 32)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vit(torch.rand(1, 3, 50, 56))
