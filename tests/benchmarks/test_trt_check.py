"""benchmarks/trt_check.py: step order and arguments, the report after every step, a failing step
recorded while the others go on, resuming; and the real build step against the fake tensorrt."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.benchmarks.scripts import load_benchmark
from tests.bench.test_bench_trt import fake_gpu  # noqa: F401  (fixture: fake tensorrt, cudart, tegrastats)
from tests.trt.conftest import BASE_PROFILE

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["env", "export-native", "export-plugin", "build-native", "build-plugin", "check", "bench"]


@pytest.fixture(scope="module")
def trt_check():
    return load_benchmark("trt_check")


class FakeCommands:
    """Stands in for the qvggt processes: records each command and the report on disk when it
    starts, writes the files the step would, exits with ``codes[step]`` (default 0)."""

    def __init__(self, out: Path, codes=None):
        self.out, self.codes, self.calls = out, codes or {}, []

    def __call__(self, cmd, log_path, timeout):
        step = Path(log_path).stem
        report = json.loads((self.out / "trt_check.json").read_text())
        self.calls.append((step, list(cmd), {n: e["status"] for n, e in report["sections"].items()}))
        code = self.codes.get(step, 0)
        tail = ["working"]
        if step == "env":
            tail.append(json.dumps({"tensorrt": "10.3.0", "device": {"name": "Orin"}}))
        elif code == 0 and step.startswith("export"):
            Path(cmd[cmd.index("--out") + 1]).write_bytes(b"onnx")
        elif code == 0 and step.startswith("build"):
            engine = Path(cmd[cmd.index("--out") + 1])
            engine.write_bytes(b"engine")
            engine.with_name(engine.name + ".json").write_text(json.dumps({"build": {"seconds": 12.5}}))
        elif step == "check":
            folder = Path(cmd[cmd.index("--out") + 1])
            folder.mkdir()
            engines = [a.split("=")[0] for a in cmd[cmd.index("check"):] if a.endswith(".engine")]
            comparisons = [{"candidate": f"trt-{e}", "reference": "ort-native", "passed": None,
                            "metrics_vs_reference": {"abs_rel": 0.01}} for e in engines]
            (folder / "check.json").write_text(json.dumps({"passed": True, "comparisons": comparisons}))
        elif step == "bench" and code == 0:
            labels = [a.split("=")[0] for a in cmd if a.endswith(".engine")]
            results = [{"label": label, "median": 0.1 * (i + 1), "p90": 0.2, "latency_ratio": float(i + 1)}
                       for i, label in enumerate(labels)]
            Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"results": results}))
        if code:
            tail.append("[ERROR] it went wrong")
        return {"command": list(cmd), "exit_code": code, "timed_out": False, "log": str(log_path), "log_tail": tail}


def argv(out, *extra):
    return [str(out), "--profile", str(ROOT / "engines" / "desktop-24gb.yaml"), "--plugin", "libplugin.so",
            "--recipe", "recipe-dir", "--allow-random-weights", *extra]


def test_steps_in_order_with_the_report_written_before_each(trt_check, tmp_path):
    out = tmp_path / "run"
    fake = FakeCommands(out)
    assert trt_check.main(argv(out), command=fake) == 0
    assert [c[0] for c in fake.calls] == ORDER
    for i, (step, _cmd, statuses) in enumerate(fake.calls):  # earlier steps ok on disk, this one running
        assert [statuses[s] for s in ORDER[:i]] == ["ok"] * i and statuses[step] == "running"
    cmds = {step: cmd for step, cmd, _ in fake.calls}
    assert "--trt-plugin" in cmds["export-plugin"] and "--trt-plugin" not in cmds["export-native"]
    assert cmds["export-native"][cmds["export-native"].index("--height") + 1] == "350"  # the profile's size
    assert "--plugin" in cmds["build-plugin"] and "--plugin" not in cmds["build-native"]
    assert cmds["build-native"][-2:] == ["--split", "false"]
    check = cmds["check"]
    assert check[check.index("--trt-reference") + 1] == "native" and f"native={out / 'native.onnx'}" in check
    assert [a for a in check if a.endswith(".engine")] == [f"native={out / 'native.engine'}",
                                                           f"plugin={out / 'plugin.engine'}"]
    report = json.loads((out / "trt_check.json").read_text())
    assert report["env"]["tensorrt"] == "10.3.0" and report["env"]["git"]["commit"]
    assert report["build-plugin"]["sidecar"]["build"]["seconds"] == 12.5
    s = report["summary"]
    assert s["plugin"]["latency_ratio_vs_native"] == 2.0 and s["native"]["build_s"] == 12.5
    assert s["plugin"]["vs_onnxruntime"]["metrics_vs_reference"] == {"abs_rel": 0.01}
    assert report["exit_code"] == 0


def test_a_failing_build_is_recorded_and_the_other_engine_is_still_checked(trt_check, tmp_path):
    out = tmp_path / "run"
    fake = FakeCommands(out, codes={"build-plugin": 1})
    assert trt_check.main(argv(out), command=fake) == 1
    report = json.loads((out / "trt_check.json").read_text())
    status = {n: e["status"] for n, e in report["sections"].items()}
    assert status == {**{s: "ok" for s in ORDER}, "build-plugin": "failed"}
    assert "exit 1" in report["sections"]["build-plugin"]["error"] and "it went wrong" in report["sections"]["build-plugin"]["error"]
    assert report["build-plugin"]["log_tail"][-1] == "[ERROR] it went wrong"  # what the step said is kept
    cmds = {step: cmd for step, cmd, _ in fake.calls}
    assert [a for a in cmds["bench"] if a.endswith(".engine")] == [f"native={out / 'native.engine'}"]
    assert report["check"]["engines"] == ["native"]


def test_resume_keeps_steps_whose_files_are_there(trt_check, tmp_path):
    out = tmp_path / "run"
    assert trt_check.main(argv(out), command=FakeCommands(out)) == 0
    again = FakeCommands(out)
    assert trt_check.main(argv(out, "--resume"), command=again) == 0
    assert [c[0] for c in again.calls] == ["env"]
    (out / "native.engine").unlink()
    third = FakeCommands(out)
    assert trt_check.main(argv(out, "--resume"), command=third) == 0
    assert [c[0] for c in third.calls] == ["env", "build-native", "check", "bench"]
    report = json.loads((out / "trt_check.json").read_text())
    assert report["sections"]["export-native"]["resumed"] and not report["sections"]["build-native"].get("resumed")


def test_given_onnx_files_and_skipped_steps(trt_check, tmp_path):
    out = tmp_path / "run"
    onnx = tmp_path / "given.onnx"
    onnx.write_bytes(b"onnx")
    fake = FakeCommands(out)
    assert trt_check.main(argv(out, "--onnx-native", str(onnx), "--onnx-plugin", str(onnx), "--skip", "check"),
                          command=fake) == 0
    assert [c[0] for c in fake.calls] == ["env", "build-native", "build-plugin", "bench"]
    report = json.loads((out / "trt_check.json").read_text())
    assert report["sections"]["export-native"] == {"status": "not-run", "budget_s": 3600, "reason": "--onnx-native given"}
    assert report["sections"]["check"]["reason"] == "--skip check"


def test_a_folder_of_other_files_is_left_alone(trt_check, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    fake = FakeCommands(tmp_path)
    assert trt_check.main(argv(tmp_path), command=fake) == 2
    assert fake.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    assert "is not a trt_check folder" in capsys.readouterr().err


def test_relative_paths_are_taken_from_where_it_runs(trt_check, tmp_path, monkeypatch):
    """The steps run from the repository root; a path given relative to the caller's folder
    must still name the caller's file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "given.onnx").write_bytes(b"onnx")
    args = trt_check.parse_args(["run", "--profile", "p.yaml", "--plugin", "lib.so", "--recipe", "rec",
                                 "--checkpoint", "facebook/VGGT-1B", "--onnx-native", "given.onnx"])
    assert (args.out, args.recipe, args.onnx_native) == (str(tmp_path / "run"), str(tmp_path / "rec"),
                                                         str(tmp_path / "given.onnx"))
    assert args.checkpoint == "facebook/VGGT-1B"  # not a file here: a model id, left as is


def test_argument_errors(trt_check, tmp_path, capsys):
    with pytest.raises(SystemExit):
        trt_check.main([str(tmp_path), "--profile", "p.yaml", "--plugin", "x.so", "--recipe", "r"])
    assert "--allow-random-weights" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        trt_check.main(argv(tmp_path, "--budget", "bild-native=3"))
    assert "STEP one of" in capsys.readouterr().err


@pytest.mark.slow
def test_real_build_step_with_the_fake_tensorrt(trt_check, tmp_path, fake_gpu, monkeypatch):  # noqa: F811
    """`qvggt build-engine` really runs (fake tensorrt and cudart on PYTHONPATH): engines and
    sidecars land in the report; bench cannot load the fake's plan and is recorded as failed."""
    from tests.micro_exports import get_export

    onnx = get_export("w4a16-trt")[0].path
    profile = tmp_path / "micro.yaml"
    profile.write_text(yaml.safe_dump(BASE_PROFILE))
    out = tmp_path / "run"
    code = trt_check.main([str(out), "--profile", str(profile), "--plugin", str(fake_gpu), "--recipe", "unused",
                           "--preset", "micro", "--allow-random-weights", "--onnx-native", str(onnx),
                           "--onnx-plugin", str(onnx), "--skip", "check", "--runs", "1", "--warmup", "0"])
    report = json.loads((out / "trt_check.json").read_text())
    status = {n: e["status"] for n, e in report["sections"].items()}
    assert status["env"] == "ok" and report["env"]["tensorrt"] == "10.3.0", report["sections"]["env"]
    assert status["build-native"] == "ok" and status["build-plugin"] == "ok", report["sections"]
    for kind in ("native", "plugin"):
        assert (out / f"{kind}.engine").read_bytes() == b"PLAN"
        assert report[f"build-{kind}"]["sidecar"]["tensorrt"] == "10.3.0"
        assert (out / "logs" / f"build-{kind}.log").read_text().startswith(f"$ {sys.executable} -m qvggt_deploy build-engine")
    assert report["build-plugin"]["sidecar"]["plugin"]["sha256"]
    assert status["bench"] == "failed" and code == 1
