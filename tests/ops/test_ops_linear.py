"""W4A16Linear and convert_model_to_w4a16 on CPU (the reference path)."""
import pytest
import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops.linear import W4A16Linear, convert_model_to_w4a16, quantize_linear, rtn_w4a16_layers
from qvggt_deploy.quant.quantizer import fake_quantize


def make_linear(k, n, bias=True, seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(k, n, bias=bias)
    nn.init.normal_(linear.weight, std=0.05)
    if bias:
        nn.init.normal_(linear.bias, std=0.1)
    return linear


@pytest.mark.parametrize("group,bias", [(32, True), (64, False), (128, True)])
def test_matches_fake_quant_linear(group, bias):
    linear = make_linear(256, 96, bias)
    module = W4A16Linear.from_float(linear, group)
    x = torch.randn(3, 5, 256)
    expected = nn.functional.linear(x, fake_quantize(linear.weight, 4, group), linear.bias)
    y = module(x)
    assert y.shape == (3, 5, 96) and y.dtype == torch.float32
    # fp16 activations, fp16 weights and an fp16 result: errors of fp16 rounding only.
    torch.testing.assert_close(y, expected, rtol=1e-2, atol=5e-3)


def test_keeps_input_dtype():
    module = W4A16Linear.from_float(make_linear(64, 16), 64)
    assert module(torch.randn(2, 64).half()).dtype == torch.float16


def test_rejects_shapes_the_kernel_cannot_run():
    with pytest.raises(QvggtError, match="K=96"):
        W4A16Linear.from_float(make_linear(96, 32), 32)
    with pytest.raises(QvggtError, match="N=9"):
        W4A16Linear(64, 9, 32)
    module = W4A16Linear.from_float(make_linear(64, 16), 32)
    with pytest.raises(QvggtError, match=r"\[\.\.\., 64\]"):
        module(torch.randn(2, 32))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = make_linear(128, 64, seed=1)
        self.head = nn.Sequential(nn.SiLU(), make_linear(64, 32, seed=2))
        self.pose = make_linear(64, 9, seed=3)

    def forward(self, x):
        h = self.head(self.fc1(x))
        return h, self.pose(self.fc1(x))


def test_convert_model_swaps_named_layers_in_place():
    model = Tiny()
    layers = rtn_w4a16_layers(model, group=32)
    assert set(layers) == {"fc1", "head.1"}  # pose (N=9) breaks the kernel rules and is left out
    x = torch.randn(4, 128)
    ref_fc1 = nn.functional.linear(x, fake_quantize(model.fc1.weight, 4, 32), model.fc1.bias)
    assert convert_model_to_w4a16(model, layers) is model
    assert isinstance(model.fc1, W4A16Linear) and isinstance(model.head[1], W4A16Linear)
    assert isinstance(model.pose, nn.Linear)
    torch.testing.assert_close(model.fc1(x), ref_fc1, rtol=1e-2, atol=5e-3)


def test_convert_model_validates_everything_before_swapping():
    model = Tiny()
    qweight, scales = quantize_linear(model.fc1, 32)
    good = (qweight, scales, 32)
    bad_cases = [
        ({"fc1": good, "nope": good}, "no module named 'nope'"),
        ({"fc1": good, "head": good}, "not nn.Linear"),
        ({"fc1": good, "head.1": good}, "expected uint8 \\(32, 32\\)"),
        ({"fc1": (qweight, scales[:, :2], 32)}, "scales"),
        ({"pose": (torch.zeros(9, 32, dtype=torch.uint8), torch.ones(9, 2).half(), 32)}, "N=9"),
    ]
    for layers, message in bad_cases:
        with pytest.raises(QvggtError, match=message):
            convert_model_to_w4a16(model, layers)
        assert isinstance(model.fc1, nn.Linear)


@pytest.mark.slow
def test_tiny_vggt_converted_matches_its_fake_quant_twin():
    """Every aggregator / camera-head Linear converted: the outputs equal those of the float model
    with fake-quantised weights up to fp16 rounding of activations (the only difference)."""
    import copy

    from qvggt_deploy.model import build_model, get_preset

    cfg = get_preset("tiny").replace(enable_track=False)
    model = build_model(cfg)
    layers = rtn_w4a16_layers(model, group=64,
                              filter_fn=lambda name, _: name.startswith(("aggregator", "camera_head")))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for name in layers:
            linear = twin.get_submodule(name)
            linear.weight.copy_(fake_quantize(linear.weight, 4, 64))
        convert_model_to_w4a16(model, layers)
        images = torch.rand(2, 3, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
        got, expected = model(images), twin(images)
    assert len(layers) > 0 and sum(isinstance(m, W4A16Linear) for m in model.modules()) == len(layers)
    for key in ("pose_enc", "depth", "world_points"):
        rel = (got[key] - expected[key]).norm() / expected[key].norm()
        assert torch.isfinite(got[key]).all() and rel < 2e-2, f"{key}: relative difference {rel:.4f}"
