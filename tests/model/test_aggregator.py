import torch

from qvggt_deploy.model import build_model
from qvggt_deploy.model.aggregator import special_tokens_for_frames

from tests.conftest import micro_config


def _model():
    return build_model(micro_config(enable_track=False), seed=1)


def test_special_tokens_first_frame_vs_others():
    token = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = special_tokens_for_frames(token, B=2, S=3).reshape(2, 3, 3, 4)
    for b in range(2):
        assert torch.equal(out[b, 0], token[0, 0])
        assert torch.equal(out[b, 1], token[0, 1])
        assert torch.equal(out[b, 2], token[0, 1])


def test_embed_uses_first_frame_tokens_only_for_frame_zero():
    model = _model()
    agg = model.aggregator
    with torch.no_grad():
        agg.camera_token[0, 0].fill_(1.0)
        agg.camera_token[0, 1].fill_(-1.0)
    tokens, pos = agg.embed(torch.rand(1, 3, 3, 56, 56))
    assert tokens.shape[0] == 3
    assert torch.equal(tokens[0, 0], agg.camera_token[0, 0, 0])
    assert torch.equal(tokens[1, 0], agg.camera_token[0, 1, 0])
    assert torch.equal(tokens[2, 0], agg.camera_token[0, 1, 0])
    assert pos[:, :5].eq(0).all() and pos[:, 5:].min() == 1


def test_outputs_shapes_and_concat():
    model = _model()
    imgs = torch.rand(1, 2, 3, 56, 42)
    with torch.no_grad():
        outs, start = model.aggregator(imgs)
    C = model.cfg.embed_dim
    n_tokens = 5 + 4 * 3
    assert start == 5 and len(outs) == model.cfg.depth
    assert all(o.shape == (1, 2, n_tokens, 2 * C) for o in outs)


def test_later_frames_are_permutation_equivariant():
    # No frame-index encoding: permuting frames 1..S-1 permutes the outputs the same way,
    # while frame 0 (the reference camera) is special.
    model = _model()
    with torch.no_grad():  # make the first-frame and other-frame tokens clearly different
        model.aggregator.camera_token[0, 0].normal_()
        model.aggregator.register_token[0, 0].normal_()
    imgs = torch.rand(1, 3, 3, 56, 56)
    with torch.no_grad():
        out = model(imgs)
        out_perm = model(imgs[:, [0, 2, 1]])
    assert torch.allclose(out["depth"][:, [0, 2, 1]], out_perm["depth"], atol=1e-5)
    assert torch.allclose(out["pose_enc"][:, [0, 2, 1]], out_perm["pose_enc"], atol=1e-5)
    with torch.no_grad():
        out_swap0 = model(imgs[:, [1, 0, 2]])
    assert not torch.allclose(out["pose_enc"][:, [1, 0, 2]], out_swap0["pose_enc"], atol=1e-4)
