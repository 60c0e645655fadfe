import numpy as np
import pytest
import torch
from polygraphy.backend.base import BaseRunner

from qvggt_deploy.backends import get_backend
from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.backends.torch.loader import ModelFromPreset
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model import build_model
from qvggt_deploy.quant.recipe import apply_recipe
from qvggt_deploy.quant.rtn import rtn_recipe
from tests.micro_exports import H, W


def test_fake_quantized_runner_is_the_recipe_model(images):
    TorchRunner = get_backend("torch")
    assert issubclass(TorchRunner, BaseRunner)
    recipe = rtn_recipe(build_model("micro"), "w4a16", 32)
    with TorchRunner(ModelFromPreset("micro", recipe=recipe), name="torch-w4a16", height=H, width=W) as runner:
        out = runner.infer({"images": images.numpy()})
    ref = apply_recipe(build_model("micro"), recipe)
    with torch.no_grad():
        want = ref(images)
    assert list(out) == list(OUTPUT_NAMES)
    for k in OUTPUT_NAMES:
        np.testing.assert_array_equal(out[k], want[k].numpy())


def test_wrong_size_is_refused():
    with get_backend("torch")(build_model("micro"), height=H, width=W) as runner:
        with pytest.raises(QvggtError, match="exported for"):
            runner.infer({"images": np.zeros((1, 3, H + 14, W), np.float32)})


def test_unknown_backend():
    with pytest.raises(QvggtError, match="unknown backend"):
        get_backend("tflite")
