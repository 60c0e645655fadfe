"""fp16 activations of the fake-quantized model: the W4A16 kernel's arithmetic (its CPU reference
is the yardstick), a small change from the fp32 emulation, and ``qvggt eval --activations``."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from qvggt_deploy.cli.main import main
from qvggt_deploy.model import build_model
from qvggt_deploy.ops.layout import repack_for_kernel
from qvggt_deploy.ops.reference import w4a16_gemm_reference
from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.fake import QuantLinear, set_activations
from qvggt_deploy.quant.recipe import apply_recipe
from qvggt_deploy.quant.rtn import rtn_recipe


def _layer(n=48, k=192, group=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(k, n)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n, k, generator=g) * 0.05)
        linear.bias.copy_(torch.randn(n, generator=g))
    scales = quantizer.compute_scales(linear.weight, 4, group)
    return QuantLinear.from_linear(linear, "w4a16", bits=4, group=group, scales=scales), group


def test_fp16_linear_is_the_kernel_reference():
    ql, group = _layer()
    x = torch.randn(33, 192) * 3
    qweight_dev, scales_dev = repack_for_kernel(quantizer.pack_int4(ql.qweight), ql.scales.half(), group)
    expected = w4a16_gemm_reference(x, qweight_dev, scales_dev, ql.bias, group).float()
    exact = ql(x)
    set_activations(ql, "fp16")
    y = ql(x)
    assert torch.equal(y, y.half().float())  # fp16 outputs
    # the same numbers up to the fp32 summation order: at most one fp16 ulp apart
    ulp = torch.finfo(torch.float16).eps * expected.abs().clamp_min(2 ** -14)
    assert bool(((y - expected).abs() <= ulp).all())
    assert float((y == expected).float().mean()) > 0.9
    # and not the fp32 emulation: that one is off the fp16 grid
    assert not torch.equal(exact, expected)
    assert float((exact - y).abs().max()) > 0


def test_fp16_rounds_the_input():
    ql, _ = _layer()
    x = torch.randn(4, 192)
    x16 = x.half().float()
    assert not torch.equal(ql(x), ql(x16))  # fp32 emulation sees the bits fp16 drops
    set_activations(ql, "fp16")
    assert torch.equal(ql(x), ql(x16))


def test_set_activations_counts_and_validates():
    model = build_model("micro", seed=0)
    assert set_activations(model, "fp16") == 0  # a float model has no quantized layer
    recipe = rtn_recipe(model, "w4a16", 32)
    apply_recipe(model, recipe)
    n = sum(isinstance(m, QuantLinear) for m in model.modules())
    assert n > 0 and set_activations(model, "fp16") == n
    with pytest.raises(ValueError, match="activations"):
        set_activations(model, "bf16")


def test_micro_model_changes_slightly(scenes):
    model = build_model("micro", seed=0)
    apply_recipe(model, rtn_recipe(model, "w4a16", 32))
    with torch.no_grad():
        exact = model(scenes[0])
        set_activations(model, "fp16")
        fp16 = model(scenes[0])
        set_activations(model, "fp32")
        again = model(scenes[0])
    for key in ("pose_enc", "depth", "world_points"):
        assert not torch.equal(exact[key], fp16[key]), key
        rel = float((exact[key] - fp16[key]).norm() / exact[key].norm())
        assert rel < 1e-2, (key, rel)
        assert torch.equal(exact[key], again[key]), key


def test_eval_activations_option(tmp_path):
    recipe = tmp_path / "recipe"
    rtn_recipe(build_model("micro", seed=0), "w4a16", 32).save(recipe)
    results = {}
    for act in ("fp32", "fp16"):
        out = tmp_path / f"{act}.json"
        assert main(["eval", "--preset", "micro", "--scenes", "1", "--frames", "2", "--recipe", str(recipe),
                     "--activations", act, "--json", str(out)]) == 0
        results[act] = json.loads(out.read_text())
        assert results[act]["settings"]["activations"] == act
    a, b = results["fp32"]["mean"], results["fp16"]["mean"]
    assert a["abs_rel"] != b["abs_rel"]
    assert b["abs_rel"] == pytest.approx(a["abs_rel"], rel=1e-2)
    assert b["chamfer"] == pytest.approx(a["chamfer"], rel=1e-2)
    assert main(["eval", "--preset", "micro", "--scenes", "1", "--frames", "2", "--activations", "fp16"]) == 1
