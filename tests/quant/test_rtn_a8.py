"""RTN recipes with INT8 activations: dynamic per-token scales (no calibration data)."""
import torch

from qvggt_deploy.model import build_model
from qvggt_deploy.quant.recipe import apply_recipe
from qvggt_deploy.quant.rtn import rtn_recipe


def test_rtn_w8a8_recipe_is_valid_and_applies(tmp_path):
    model = build_model("micro")
    recipe = rtn_recipe(model, "w8a8", 32)
    spec = recipe.layers["aggregator.frame_blocks.0.attn.qkv"]
    assert spec.precision == "w8a8" and spec.act_granularity == "per_token"
    recipe.save(tmp_path / "r")
    quant = apply_recipe(build_model("micro"), recipe)
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        out = quant(x)
    assert torch.isfinite(out["depth"]).all()
