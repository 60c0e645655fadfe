import json

from qvggt_deploy.cli.main import main


def test_check_cli_passes_and_writes_reports(exports, tmp_path, capsys):
    fp32, _, _ = exports("fp32")
    w4, _, recipe = exports("w4a16")
    int8, _, _ = exports("w4a16-int8-ext")  # same recipe, int8 activations: reported, not gated
    recipe.save(tmp_path / "recipe")
    out = tmp_path / "report"
    code = main(["check", "--preset", "micro", "--recipe", str(tmp_path / "recipe"), "--onnx", f"fp32={fp32.path}",
                 "--onnx", f"w4a16={w4.path}", "--onnx", f"int8={int8.path}", "--scenes", "1", "--frames", "2",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "check.json").read_text())
    assert doc["passed"] is True
    kinds = {(c["candidate"], c["reference"]): c["kind"] for c in doc["comparisons"]}
    assert kinds[("ort-w4a16", "torch-recipe")] == "exact" and kinds[("ort-fp32", "torch-fp32")] == "exact"
    assert kinds[("ort-int8", "torch-recipe")] == "approx"
    assert "PASSED" in (out / "check.md").read_text()


def test_check_cli_errors_are_one_line(exports, tmp_path, caplog):
    w4, _, _ = exports("w4a16")
    code = main(["check", "--preset", "micro", "--onnx", str(w4.path), "--out", str(tmp_path / "r")])
    assert code == 1 and "pass that recipe with --recipe" in caplog.text and "Traceback" not in caplog.text
    caplog.clear()
    code = main(["check", "--preset", "micro", "--onnx", str(w4.path), "--trt", "x.engine", "--out", str(tmp_path / "r")])
    assert code == 1 and "--trt needs the tensorrt Python package" in caplog.text
    caplog.clear()
    code = main(["check", "--preset", "tiny", "--onnx", str(w4.path), "--out", str(tmp_path / "r")])
    assert code == 1 and "not --preset tiny" in caplog.text
    caplog.clear()
    import onnx
    from onnx import TensorProto, helper

    plain = tmp_path / "plain.onnx"  # a valid ONNX file that `qvggt export` did not write
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(plain))
    code = main(["check", "--preset", "micro", "--onnx", str(plain), "--out", str(tmp_path / "r")])
    assert code == 1 and "not a qvggt export (metadata qvggt." in caplog.text and "Traceback" not in caplog.text


def test_check_with_nothing_exact_says_not_gated(exports, tmp_path):
    trt, _, recipe = exports("w4a16-trt")
    recipe.save(tmp_path / "recipe")
    out = tmp_path / "report"
    code = main(["check", "--preset", "micro", "--recipe", str(tmp_path / "recipe"), "--onnx", f"trt={trt.path}",
                 "--scenes", "1", "--frames", "2", "--out", str(out)])
    doc = json.loads((out / "check.json").read_text())
    assert code == 0 and doc["gated"] is False
    assert "NOT GATED" in (out / "check.md").read_text() and "PASSED" not in (out / "check.md").read_text()
