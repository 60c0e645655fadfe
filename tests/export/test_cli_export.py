import onnx

from qvggt_deploy.cli.main import main
from qvggt_deploy.graph.metadata import read_metadata
from qvggt_deploy.model import build_model
from qvggt_deploy.quant.rtn import rtn_recipe


def test_export_cli_with_recipe(tmp_path, capsys):
    recipe = rtn_recipe(build_model("micro"), "w4a16", 32)
    recipe.save(tmp_path / "recipe")
    out = tmp_path / "m.onnx"
    assert main(["export", "--preset", "micro", "--recipe", str(tmp_path / "recipe"), "--target", "trt",
                 "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["recipe_digest"] == recipe.digest and meta["target"] == "trt" and meta["height"] == "56"
    assert "DequantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "passes fold-constants" in capsys.readouterr().out


def test_export_cli_errors(tmp_path, caplog, capsys):
    assert main(["export", "--preset", "micro", "--height", "50", "--out", str(tmp_path / "x.onnx")]) == 1
    assert "multiple of the patch size" in capsys.readouterr().err
    assert main(["export", "--preset", "micro", "--recipe", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "not a recipe folder" in caplog.text
    assert main(["export", "--preset", "micro", "--ort-int8-kernel", "matmulnbits", "--out", str(tmp_path / "x.onnx")]) == 1
    assert "add that flag" in caplog.text
    assert not (tmp_path / "x.onnx").exists()


def test_export_cli_dense_loop_switch(tmp_path):
    loops = {}
    for flag in (["--dense-loop"], []):
        out = tmp_path / f"m{len(flag)}.onnx"
        assert main(["export", "--preset", "micro", *flag, "--out", str(out)]) == 0
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        loops[bool(flag)] = (ops.count("Loop"), read_metadata(out)["dense_loop"])
    assert loops == {True: (1, "true"), False: (0, "false")}
