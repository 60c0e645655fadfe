import copy

import torch

from qvggt_deploy.model import build_model, get_preset
from qvggt_deploy.ops.linear import W4A16Linear, apply_recipe_with_kernel
from qvggt_deploy.quant.fake import QuantLinear
from qvggt_deploy.quant.recipe import apply_recipe
from qvggt_deploy.quant.rtn import rtn_recipe


def test_recipe_with_kernel_matches_fake_quant_on_cpu():
    cfg = get_preset("tiny").replace(enable_track=False, depth=2, vit_depth=1, intermediate_layer_idx=(0, 1, 1, 1))
    model = build_model(cfg, seed=0)
    recipe = rtn_recipe(model, "w4a16", group=64)
    fake = apply_recipe(copy.deepcopy(model), recipe)
    real = apply_recipe_with_kernel(copy.deepcopy(model), recipe)
    kinds = {type(m) for m in real.modules()}
    assert W4A16Linear in kinds
    # the 9-wide pose embedding cannot take the kernel and stays fake-quantized (fp16 fallback)
    assert isinstance(real.camera_head.embed_pose, QuantLinear)
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        a, b = fake(x), real(x)
    for key in ("pose_enc", "depth", "world_points"):
        err = (a[key] - b[key]).abs().max() / a[key].abs().max()
        assert err < 2e-2, (key, float(err))  # fp16 activations in the kernel arithmetic
