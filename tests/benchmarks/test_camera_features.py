"""benchmarks/camera_features.py deepens a trained camera head without changing where it starts."""
import pytest
import torch

from qvggt_deploy.model.vggt import build_model
from tests.benchmarks.scripts import load_benchmark

camera_features = load_benchmark("camera_features")


def test_deepened_head_keeps_the_trained_blocks_and_starts_near_the_trained_output():
    model = build_model("micro", seed=0)
    head = model.camera_head.eval()
    deeper = camera_features.deepened(head, 3, model.cfg).eval()
    assert len(deeper.trunk) == 3
    assert torch.equal(deeper.trunk[0].attn.qkv.weight, head.trunk[0].attn.qkv.weight)
    assert torch.equal(deeper.pose_branch.fc1.weight, head.pose_branch.fc1.weight)
    tokens = [torch.randn(2, 3, 1, 2 * model.cfg.embed_dim)]
    with torch.no_grad():
        same, near = head(tokens)[-1], deeper(tokens)[-1]
    # New blocks enter at LayerScale 0.01: a small change, not none (they are trainable).
    assert 0 < float((same - near).abs().max()) < 0.1


def test_a_shallower_trunk_is_refused():
    model = build_model("micro", seed=0)
    with pytest.raises(SystemExit):
        camera_features.deepened(model.camera_head, 0, model.cfg)
