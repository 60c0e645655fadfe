"""Bad input and faults on the command line, as a new user meets them.

Every case asserts: the exit code (1 for a user error or a value out of range, 2 for a malformed
command line), exactly one error line naming the problem, no traceback, and the case folder
unchanged byte for byte (pre-existing outputs untouched, no stray temporary files).
"""
from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

from qvggt_deploy.cli.main import main

REPO = Path(__file__).resolve().parents[2]
PROFILE = str(REPO / "engines" / "desktop-24gb.yaml")
MICRO = ["--preset", "micro"]


# ---- fixtures --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("QVGGT_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Dict[str, Path]:
    """A small graph with qvggt metadata and external data (what the tools check before running
    anything), a micro checkpoint and the same with one NaN weight."""
    import torch

    from qvggt_deploy.model import build_model
    from qvggt_deploy.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in build_model("micro").state_dict().items()}
    save_checkpoint(state, root / "micro.safetensors")
    name = next(k for k, v in state.items() if k.endswith("weight") and v.is_floating_point() and v.numel() > 8)
    state[name].view(-1)[3] = float("nan")
    save_checkpoint(state, root / "nan.safetensors")
    _qvggt_onnx(root / "m.onnx")
    return {"root": root, "onnx": root / "m.onnx", "ckpt": root / "micro.safetensors",
            "nan": root / "nan.safetensors", "nan_tensor": name}


def _qvggt_onnx(path: Path) -> None:
    """images -> Mul by an external constant, with the metadata `qvggt export` writes (micro, 56x56, ort)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["S", 3, 56, 56])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["S", 3, 56, 56])
    w = numpy_helper.from_array(np.full((3, 56, 56), 0.5, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["images", "w"], ["depth"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    for key, value in {"preset": "micro", "height": "56", "width": "56", "recipe_digest": "none",
                       "target": "ort"}.items():
        model.metadata_props.add(key=f"qvggt.{key}", value=value)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    onnx.save(model, str(path))


def snapshot(folder: Path) -> Dict[str, Tuple]:
    """Every entry below ``folder`` (hidden ones too): kind, bytes digest, permission bits."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), digest, stat.S_IMODE(st.st_mode))
    return out


def error_lines(stderr: str, command: str) -> List[str]:
    """The error messages of a run (the FAILED status line is not a message)."""
    lines = [l for l in stderr.splitlines() if l.startswith("[ERROR]") and "FAILED: qvggt" not in l]
    lines += [l for l in stderr.splitlines() if l.startswith("qvggt") and ": error: " in l]
    return lines


def run(argv: List[str], capsys) -> Tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


# ---- case inputs ---------------------------------------------------------------------------
def _png(path: Path, w: int = 40, h: int = 30) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(path.name))
    Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(path)


def _bomb_png(path: Path, w: int = 20000, h: int = 10000) -> None:
    """A PNG header claiming 200 megapixels (PIL refuses it on open; no pixel data needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _foreign_onnx(path: Path, nodes: bool = True) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])] if nodes else [], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _copy_export(d: Path, s, data: Optional[str] = "full") -> Path:
    shutil.copy(s["onnx"], d / "m.onnx")
    raw = Path(f"{s['onnx']}.data").read_bytes()
    if data == "full":
        (d / "m.onnx.data").write_bytes(raw)
    elif data == "truncated":
        (d / "m.onnx.data").write_bytes(raw[: len(raw) // 2])
    return d / "m.onnx"


def _escaping_onnx(d: Path, s) -> None:
    import onnx

    model = onnx.load(str(s["onnx"]), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save(model, str(d / "m.onnx"))


def _user_folder(d: Path) -> None:
    (d / "userdir").mkdir()
    (d / "userdir" / "notes.txt").write_text("irreplaceable")
    (d / "userdir" / "sub").mkdir()
    (d / "userdir" / "sub" / "data.bin").write_bytes(os.urandom(64))


SETUPS: Dict[str, Callable] = {
    "userdir": lambda d, s: _user_folder(d),
    "userfile": lambda d, s: (d / "userfile").write_bytes(b"\x08 user bytes, not ONNX"),
    "afile": lambda d, s: (d / "afile").write_text("a file where a folder is expected"),
    "imgs": lambda d, s: ((d / "imgs").mkdir(), _png(d / "imgs" / "a.png"), _png(d / "imgs" / "b.png")),
    "emptyimgs": lambda d, s: (d / "imgs").mkdir(),
    "corruptimg": lambda d, s: ((d / "imgs").mkdir(), (d / "imgs" / "a.png").write_bytes(b"not a png")),
    "zeroimg": lambda d, s: ((d / "imgs").mkdir(), (d / "imgs" / "a.jpg").write_bytes(b"")),
    "bomb": lambda d, s: ((d / "imgs").mkdir(), _bomb_png(d / "imgs" / "a.png")),
    "truncimg": lambda d, s: ((d / "imgs").mkdir(), _png(d / "imgs" / "a.png"),
                              (d / "imgs" / "a.png").write_bytes((d / "imgs" / "a.png").read_bytes()[:60])),
    "foreign_onnx": lambda d, s: _foreign_onnx(d / "f.onnx"),
    "nodeless_onnx": lambda d, s: _foreign_onnx(d / "f.onnx", nodes=False),
    "zero_onnx": lambda d, s: (d / "z.onnx").write_bytes(b""),
    "garbage_onnx": lambda d, s: (d / "g.onnx").write_bytes(os.urandom(256)),
    "qv_onnx": lambda d, s: _copy_export(d, s),
    "ext_missing": lambda d, s: _copy_export(d, s, None),
    "ext_trunc": lambda d, s: _copy_export(d, s, "truncated"),
    "ext_escape": _escaping_onnx,
    "foreign_data": lambda d, s: (d / "x.onnx.data").write_bytes(b"someone's data"),
    "foreign_work": lambda d, s: ((d / "rec.work").mkdir(), (d / "rec.work" / "mine.txt").write_text("x")),
    "jsondir": lambda d, s: (d / "r.json").mkdir(),
    "pngdir": lambda d, s: (d / "r.png").mkdir(),
    "mddir": lambda d, s: (d / "r.md").mkdir(),
    "sensfile": lambda d, s: (d / "s.json").write_text('{"group": 64, "precisions": ["fp16", "w8a16", "w4a16"]}'),
    "textprofile": lambda d, s: (d / "p.yaml").write_text(": : not yaml ["),
}


@dataclass
class Case:
    id: str
    argv: List[str]
    code: int
    needle: str
    setup: Tuple[str, ...] = ()
    env: Optional[Dict[str, str]] = None

    @property
    def command(self) -> str:
        return self.argv[0]


C = Case
CASES: List[Case] = [
    # ---- calibrate: --out onto what is not a recipe, option ranges -----------------------------
    C("calibrate-out-user-folder", ["calibrate", *MICRO, "--method", "rtn", "--out", "{d}/userdir"], 1,
      "not a recipe folder", ("userdir",)),
    C("calibrate-out-user-file", ["calibrate", *MICRO, "--out", "{d}/userfile"], 1, "not a folder", ("userfile",)),
    C("calibrate-out-under-file", ["calibrate", *MICRO, "--out", "{d}/afile/rec"], 1, "is a file", ("afile",)),
    C("calibrate-out-proc", ["calibrate", *MICRO, "--out", "/proc/qvggt-test/rec"], 1, "cannot write"),
    C("calibrate-out-dot", ["calibrate", *MICRO, "--out", "."], 1, "not a folder name"),
    C("calibrate-work-folder-foreign", ["calibrate", *MICRO, "--out", "{d}/rec"], 1, "work folder",
      ("foreign_work",)),
    C("calibrate-group-7", ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1",
                            "--group", "7", "--out", "{d}/rec"], 1, "--group 7 divides none"),
    C("calibrate-group-512", ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1",
                              "--group", "512", "--out", "{d}/rec"], 1, "use one of"),
    C("calibrate-memory", ["calibrate", *MICRO, "--synthetic", "100000", "--frames", "1000", "--out", "{d}/rec"], 1,
      "GiB of memory by estimate"),
    C("calibrate-calib-missing", ["calibrate", *MICRO, "--calib", "{d}/nope", "--out", "{d}/rec"], 1, "nope"),
    C("calibrate-sensitivity-missing", ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1",
                                        "--avg-bits", "5", "--sensitivity", "{d}/nope.json", "--out", "{d}/rec"],
      1, "nope.json"),
    C("calibrate-sensitivity-other-group", ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames",
                                            "1", "--avg-bits", "5", "--sensitivity", "{d}/s.json", "--out", "{d}/rec"],
      1, "need group 128", ("sensfile",)),
    C("calibrate-checkpoint-missing", ["calibrate", *MICRO, "--checkpoint", "{d}/nope.safetensors",
                                       "--out", "{d}/rec"], 1, "checkpoint not found"),
    C("calibrate-checkpoint-nan", ["calibrate", *MICRO, "--checkpoint", "{nan}", "--out", "{d}/rec"], 1, "NaN/Inf"),
    C("calibrate-clips-bad", ["calibrate", *MICRO, "--clips", "1.5", "--out", "{d}/rec"], 1, "--clips"),
    C("calibrate-mp-options-bad", ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1",
                                   "--avg-bits", "5", "--mp-options", "w2a16", "--out", "{d}/rec"], 1, "w2a16"),
    C("calibrate-device-bad", ["calibrate", *MICRO, "--device", "tpu", "--out", "{d}/rec"], 1, "--device"),
    C("calibrate-out-missing-arg", ["calibrate", *MICRO], 2, "--out"),
    C("calibrate-method-bad", ["calibrate", *MICRO, "--method", "gptq", "--out", "{d}/rec"], 2, "--method"),
    # ---- export ------------------------------------------------------------------------------
    C("export-out-user-file", ["export", *MICRO, "--out", "{d}/userfile"], 1, "not a qvggt ONNX export",
      ("userfile",)),
    C("export-out-foreign-onnx", ["export", *MICRO, "--out", "{d}/f.onnx"], 1, "not a qvggt ONNX export",
      ("foreign_onnx",)),
    C("export-out-user-folder", ["export", *MICRO, "--out", "{d}/userdir"], 1, "is a folder", ("userdir",)),
    C("export-out-foreign-data", ["export", *MICRO, "--out", "{d}/x.onnx"], 1, "x.onnx.data exists",
      ("foreign_data",)),
    C("export-out-under-file", ["export", *MICRO, "--out", "{d}/afile/x.onnx"], 1, "is a file", ("afile",)),
    C("export-out-proc", ["export", *MICRO, "--out", "/proc/self/qvggt.onnx"], 1, "cannot write"),
    C("export-recipe-missing", ["export", *MICRO, "--recipe", "{d}/nope", "--out", "{d}/x.onnx"], 1,
      "not a recipe folder"),
    C("export-recipe-user-folder", ["export", *MICRO, "--recipe", "{d}/userdir", "--out", "{d}/x.onnx"], 1,
      "not a recipe folder", ("userdir",)),
    C("export-int8-kernel-alone", ["export", *MICRO, "--ort-int8-kernel", "qgemm", "--out", "{d}/x.onnx"], 1,
      "add that flag"),
    C("export-memory", ["export", *MICRO, "--frames", "10000000", "--out", "{d}/x.onnx"], 1, "by estimate"),
    C("export-target-bad", ["export", *MICRO, "--target", "tflite", "--out", "{d}/x.onnx"], 2, "--target"),
    # ---- infer -------------------------------------------------------------------------------
    C("infer-out-user-folder", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/userdir"], 1,
      "not a qvggt infer output folder", ("imgs", "userdir")),
    C("infer-out-user-file", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/userfile"], 1,
      "not a folder", ("imgs", "userfile")),
    C("infer-out-under-file", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/afile/o"], 1,
      "is a file", ("imgs", "afile")),
    C("infer-images-missing", ["infer", *MICRO, "--images", "{d}/nope", "--out", "{d}/o"], 1, "not found"),
    C("infer-images-empty", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "no images",
      ("emptyimgs",)),
    C("infer-images-is-file", ["infer", *MICRO, "--images", "{d}/afile", "--out", "{d}/o"], 1, "not found",
      ("afile",)),
    C("infer-image-corrupt", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "a.png",
      ("corruptimg",)),
    C("infer-image-zero-bytes", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "a.jpg",
      ("zeroimg",)),
    C("infer-image-truncated", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "a.png",
      ("truncimg",)),
    C("infer-image-bomb", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "decompression bomb",
      ("bomb",)),
    C("infer-checkpoint-nan", ["infer", *MICRO, "--checkpoint", "{nan}", "--images", "{d}/imgs",
                               "--out", "{d}/o"], 1, "NaN/Inf", ("imgs",)),
    C("infer-checkpoint-garbage", ["infer", *MICRO, "--checkpoint", "{d}/g.onnx", "--images", "{d}/imgs",
                                   "--out", "{d}/o"], 1, "g.onnx", ("imgs", "garbage_onnx")),
    C("infer-recipe-user-folder", ["infer", *MICRO, "--recipe", "{d}/userdir", "--images", "{d}/imgs",
                                   "--out", "{d}/o"], 1, "not a recipe folder", ("imgs", "userdir")),
    C("infer-memory", ["infer", *MICRO, "--images", "{d}/imgs", "--out", "{d}/o"], 1, "by estimate", ("imgs",),
      {"QVGGT_MEMORY_BYTES": "1000"}),
    C("infer-mode-bad", ["infer", *MICRO, "--images", "{d}/imgs", "--mode", "stretch", "--out", "{d}/o"], 2,
      "--mode", ("imgs",)),
    # ---- lint --------------------------------------------------------------------------------
    C("lint-zero-bytes", ["lint", "{d}/z.onnx"], 1, "empty file", ("zero_onnx",)),
    C("lint-garbage", ["lint", "{d}/g.onnx"], 1, "g.onnx", ("garbage_onnx",)),
    C("lint-no-nodes", ["lint", "{d}/f.onnx"], 1, "no nodes", ("nodeless_onnx",)),
    C("lint-missing", ["lint", "{d}/nope.onnx"], 1, "not found"),
    C("lint-external-missing", ["lint", "{d}/m.onnx"], 1, "is missing", ("ext_missing",)),
    C("lint-external-truncated", ["lint", "{d}/m.onnx"], 1, "truncated", ("ext_trunc",)),
    C("lint-external-escapes", ["lint", "{d}/m.onnx"], 1, "outside the model's folder", ("ext_escape",)),
    C("lint-json-folder", ["lint", "{d}/m.onnx", "--json", "{d}/r.json"], 1, "is a folder", ("qv_onnx", "jsondir")),
    C("lint-json-under-file", ["lint", "{d}/m.onnx", "--json", "{d}/afile/r.json"], 1, "is a file",
      ("qv_onnx", "afile")),
    C("lint-json-proc", ["lint", "{d}/m.onnx", "--json", "/proc/self/r.json"], 1, "cannot write", ("qv_onnx",)),
    C("lint-target-bad", ["lint", "{d}/m.onnx", "--target", "tvm"], 2, "--target", ("qv_onnx",)),
    C("lint-no-file", ["lint"], 2, "models"),
    # ---- build-engine --dry-run ------------------------------------------------------------
    C("build-dry-zero-bytes", ["build-engine", "--dry-run", "--profile", PROFILE, "--onnx", "{d}/z.onnx"], 1,
      "empty file", ("zero_onnx",)),
    C("build-dry-garbage", ["build-engine", "--dry-run", "--profile", PROFILE, "--onnx", "{d}/g.onnx"], 1,
      "g.onnx", ("garbage_onnx",)),
    C("build-dry-external-missing", ["build-engine", "--dry-run", "--profile", PROFILE, "--onnx", "{d}/m.onnx"], 1,
      "is missing", ("ext_missing",)),
    C("build-dry-external-truncated", ["build-engine", "--dry-run", "--profile", PROFILE, "--onnx", "{d}/m.onnx"],
      1, "truncated", ("ext_trunc",)),
    C("build-dry-ort-graph", ["build-engine", "--dry-run", "--profile", PROFILE, "--onnx", "{d}/m.onnx"], 1,
      "exported for ONNX Runtime", ("qv_onnx",)),
    C("build-profile-missing", ["build-engine", "--dry-run", "--profile", "{d}/nope.yaml"], 1, "nope.yaml"),
    C("build-profile-garbage", ["build-engine", "--dry-run", "--profile", "{d}/p.yaml"], 1, "p.yaml",
      ("textprofile",)),
    C("build-export-split-onto-file", ["build-engine", "--profile", PROFILE, "--export-split", "{d}/afile"], 1,
      "not a folder", ("afile",)),
    # ---- bench -------------------------------------------------------------------------------
    C("bench-out-user-folder", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--out", "{d}/userdir"], 1,
      "not a bench report folder", ("qv_onnx", "userdir")),
    C("bench-out-is-file", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--out", "{d}/afile"], 1,
      "not a folder", ("qv_onnx", "afile")),
    C("bench-json-folder", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--json", "{d}/r.json"], 1,
      "is a folder", ("qv_onnx", "jsondir")),
    C("bench-md-folder", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--json", "{d}/r.json"], 1,
      "is a folder", ("qv_onnx", "mddir")),
    C("bench-png-folder", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--json", "{d}/r.json"], 1,
      "is a folder", ("qv_onnx", "pngdir")),
    C("bench-non-vggt-onnx", ["bench", "--backend", "ort", "--model", "{d}/f.onnx", "--out", "{d}/b"], 1,
      "not a qvggt export", ("foreign_onnx",)),
    C("bench-zero-onnx", ["bench", "--backend", "ort", "--model", "{d}/z.onnx", "--out", "{d}/b"], 1,
      "empty file", ("zero_onnx",)),
    C("bench-model-missing", ["bench", "--backend", "ort", "--model", "{d}/nope.onnx", "--out", "{d}/b"], 1,
      "file not found"),
    C("bench-external-truncated", ["bench", "--backend", "ort", "--model", "{d}/m.onnx", "--out", "{d}/b"],
      1, "truncated", ("ext_trunc",)),
    C("bench-recipe-with-ort", ["bench", "--backend", "ort", "--recipe", "{d}/r", "--out", "{d}/b"], 1,
      "--recipe is for --backend torch"),
    C("bench-backend-bad", ["bench", "--backend", "tvm", "--out", "{d}/b"], 2, "--backend"),
    # ---- check -------------------------------------------------------------------------------
    C("check-out-is-file", ["check", *MICRO, "--onnx", "{d}/m.onnx", "--out", "{d}/afile"], 1, "not a folder",
      ("qv_onnx", "afile")),
    C("check-frames-1000", ["check", *MICRO, "--onnx", "{d}/m.onnx", "--frames", "1000", "--out", "{d}/c"], 1,
      "by estimate", ("qv_onnx",), {"QVGGT_MEMORY_BYTES": "2e9"}),  # micro on a 2 GB device
    C("check-scenes-million", ["check", *MICRO, "--onnx", "{d}/m.onnx", "--scenes", "10000000",
                               "--out", "{d}/c"], 1, "by estimate", ("qv_onnx",)),
    C("check-onnx-foreign", ["check", *MICRO, "--onnx", "{d}/f.onnx", "--out", "{d}/c"], 1, "not a qvggt export",
      ("foreign_onnx",)),
    C("check-onnx-zero", ["check", *MICRO, "--onnx", "{d}/z.onnx", "--out", "{d}/c"], 1, "empty file",
      ("zero_onnx",)),
    C("check-onnx-truncated-data", ["check", *MICRO, "--onnx", "{d}/m.onnx", "--out", "{d}/c"], 1, "truncated",
      ("ext_trunc",)),
    C("check-preset-mismatch", ["check", "--preset", "tiny", "--onnx", "{d}/m.onnx", "--out", "{d}/c"], 1,
      "preset", ("qv_onnx",)),
    C("check-no-onnx", ["check", *MICRO, "--out", "{d}/c"], 1, "--onnx"),
    C("check-out-user-folder", ["check", *MICRO, "--onnx", "{d}/m.onnx", "--out", "{d}/userdir"], 1,
      "not a check report folder", ("qv_onnx", "userdir")),
    # ---- eval, sensitivity, ablate, scenes, demo ---------------------------------------------
    C("eval-json-folder", ["eval", *MICRO, "--json", "{d}/r.json"], 1, "is a folder", ("jsondir",)),
    C("eval-json-under-file", ["eval", *MICRO, "--json", "{d}/afile/r.json"], 1, "is a file", ("afile",)),
    C("eval-scene-dir-missing", ["eval", *MICRO, "--scene-dir", "{d}/nope"], 1, "nope"),
    C("sensitivity-out-user-folder", ["sensitivity", *MICRO, "--out", "{d}/userdir"], 1, "not a sensitivity folder",
      ("userdir",)),
    C("sensitivity-out-is-file", ["sensitivity", *MICRO, "--out", "{d}/afile"], 1, "not a folder", ("afile",)),
    C("sensitivity-json-folder", ["sensitivity", *MICRO, "--json", "{d}/r.json"], 1, "is a folder", ("jsondir",)),
    C("sensitivity-png-folder", ["sensitivity", *MICRO, "--json", "{d}/s.json", "--png", "{d}/r.png"], 1,
      "is a folder", ("pngdir",)),
    C("sensitivity-fp32", ["sensitivity", *MICRO, "--precisions", "fp32", "--out", "{d}/s"], 1, "fp32"),
    C("ablate-out-user-folder", ["ablate", *MICRO, "--out", "{d}/userdir"], 1, "not a qvggt ablate folder",
      ("userdir",)),
    C("ablate-out-is-file", ["ablate", *MICRO, "--out", "{d}/afile"], 1, "not a folder", ("afile",)),
    C("ablate-unknown-setting", ["ablate", *MICRO, "--settings", "w5", "--out", "{d}/r"], 1, "no such setting"),
    C("ablate-sets-method", ["ablate", *MICRO, "--method", "rtn", "--out", "{d}/r"], 1, "sets --method"),
    C("scenes-out-is-file", ["scenes", "--out", "{d}/afile"], 1, "not a folder", ("afile",)),
    C("scenes-out-under-file", ["scenes", "--out", "{d}/afile/s"], 1, "is a file", ("afile",)),
    C("demo-out-is-file", ["demo", "--out", "{d}/afile"], 1, "not a folder", ("afile",)),
    C("demo-out-user-folder", ["demo", "--out", "{d}/userdir"], 1, "not a demo report folder", ("userdir",)),
    C("unknown-command", ["frobnicate"], 2, "frobnicate"),
]

# Option values out of range: refused where they are parsed, before any work (exit 1).
RANGES = [
    ("calibrate", "--threads", ["-3", "0", "abc"]), ("calibrate", "--image-size", ["15", "0", "-14", "1e3"]),
    ("calibrate", "--frames", ["0", "-1"]), ("calibrate", "--synthetic", ["0", "-5"]),
    ("calibrate", "--calib-batches", ["0"]), ("calibrate", "--group", ["0", "-32"]), ("calibrate", "--grid", ["0"]),
    ("calibrate", "--top-m", ["-1"]), ("calibrate", "--task-scenes", ["0"]), ("calibrate", "--comp-directions", ["-1"]),
    ("calibrate", "--max-rows", ["0"]), ("calibrate", "--avg-bits", ["0", "nan", "inf", "-2"]),
    ("calibrate", "--max-weight-mb", ["-1"]),
    ("export", "--height", ["0", "15", "-28"]), ("export", "--width", ["100", "x"]), ("export", "--frames", ["0"]),
    ("export", "--threads", ["-1"]),
    ("infer", "--max-frames", ["0", "-1"]), ("infer", "--conf-percentile", ["200", "-5", "nan", "100.5"]),
    ("infer", "--threads", ["0"]),
    ("lint", "--max-findings", ["-1"]),
    ("bench", "--runs", ["0"]), ("bench", "--warmup", ["-1"]), ("bench", "--frames", ["0"]), ("bench", "--threads", ["0"]),
    ("bench", "--height", ["15"]),
    ("check", "--scenes", ["0"]), ("check", "--frames", ["0", "-2"]), ("check", "--threads", ["-2"]),
    ("scenes", "--num", ["0"]), ("scenes", "--frames", ["0"]), ("scenes", "--seed", ["-1"]),
    ("sensitivity", "--group", ["0"]), ("sensitivity", "--threads", ["0"]),
    ("ablate", "--eval-scenes", ["0"]), ("ablate", "--max-points", ["0"]),
    ("eval", "--threads", ["0"]),
    ("demo", "--frames", ["0"]), ("demo", "--group", ["0"]),
]
REQUIRED = {"calibrate": ["--out", "{d}/rec"], "export": ["--out", "{d}/x.onnx"],
            "infer": ["--images", "{d}/imgs", "--out", "{d}/o"], "lint": ["{d}/m.onnx"],
            "bench": ["--backend", "ort", "--out", "{d}/b"], "check": ["--out", "{d}/c"],
            "scenes": ["--out", "{d}/s"], "sensitivity": ["--out", "{d}/s"], "ablate": ["--out", "{d}/a"],
            "eval": [], "demo": ["--out", "{d}/demo"]}
for command, option, values in RANGES:
    for value in values:
        CASES.append(C(f"{command}{option}={value}", [command, *REQUIRED[command], option, value], 1, option))

# Random values of count options, seeded: negative numbers, floats, hex, blanks.
_rng = random.Random(15)
for command, option in [("calibrate", "--frames"), ("calibrate", "--group"), ("infer", "--max-frames"),
                        ("check", "--scenes"), ("bench", "--runs"), ("export", "--frames")]:
    for i in range(2):
        value = _rng.choice([str(-_rng.randint(1, 10 ** 6)), f"{_rng.random() * 10:.3f}", "0x10", "", " "])
        CASES.append(C(f"{command}{option}=random{i}", [command, *REQUIRED[command], option, value], 1, option))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, shared, capsys, monkeypatch):
    d = tmp_path / "case"
    d.mkdir()
    for name in case.setup:
        SETUPS[name](d, shared)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
    argv = [a.format(d=d, nan=shared["nan"]) for a in case.argv]
    before = snapshot(d)
    code, err = run(argv, capsys)
    assert "Traceback" not in err
    assert code == case.code, err
    lines = error_lines(err, case.command)
    assert len(lines) == 1, err
    assert case.needle in lines[0], lines[0]
    assert snapshot(d) == before, "a failed command changed or left files"


def test_case_count():
    """The issue asks for at least 100 bad-input cases."""
    assert len(CASES) >= 100


# ---- outputs replaced whole or not at all ----------------------------------------------------
def test_calibrate_replaces_its_own_recipe_with_the_users_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        argv = ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1", "--out", str(tmp_path / "rec")]
        assert main(argv) == 0
        (tmp_path / "rec" / "stale.txt").write_text("from an earlier version")
        assert main(argv) == 0
    finally:
        os.umask(old)
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "rec").iterdir()}
    assert files == {"recipe.json": 0o644, "weights.safetensors": 0o644}
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_calibrate_force_replaces_a_user_folder(tmp_path, capsys):
    _user_folder(tmp_path)
    argv = ["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1", "--force",
            "--out", str(tmp_path / "userdir")]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "userdir").iterdir()) == ["recipe.json", "weights.safetensors"]


def test_infer_rerun_with_fewer_images_leaves_no_stale_files(tmp_path, capsys):
    SETUPS["imgs"](tmp_path, None)
    out = tmp_path / "o"
    assert main(["infer", *MICRO, "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 0
    assert len(list((out / "depth").glob("*.npy"))) == 2
    assert main(["infer", *MICRO, "--images", str(tmp_path / "imgs"), "--max-frames", "1", "--out", str(out)]) == 0
    assert [p.name for p in (out / "depth").glob("*.npy")] == ["000_a.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "o"]


def test_infer_failure_keeps_the_previous_output_whole(tmp_path, shared, capsys):
    SETUPS["imgs"](tmp_path, None)
    out = tmp_path / "o"
    assert main(["infer", *MICRO, "--checkpoint", str(shared["ckpt"]), "--images", str(tmp_path / "imgs"),
                 "--out", str(out)]) == 0
    before = snapshot(tmp_path)
    code, err = run(["infer", *MICRO, "--checkpoint", str(shared["nan"]), "--images", str(tmp_path / "imgs"),
                     "--out", str(out)], capsys)
    assert code == 1 and shared["nan_tensor"] in err
    assert snapshot(tmp_path) == before


def test_infer_nan_output_names_the_output(tmp_path, shared, capsys, monkeypatch):
    """NaN that only appears at run time (not in the weights) is reported by output name."""
    import torch

    from qvggt_deploy.model.vggt import VGGT

    SETUPS["imgs"](tmp_path, None)
    forward = VGGT.forward

    def nan_depth(self, *a, **k):
        out = forward(self, *a, **k)
        out["depth"] = out["depth"] * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(VGGT, "forward", nan_depth)
    code, err = run(["infer", *MICRO, "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "output depth has" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_interrupt_during_recipe_save_leaves_no_temporaries(tmp_path, capsys, monkeypatch):
    import safetensors.torch

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a scheduler's time limit

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "recipe.json").write_text("{}")
    before = snapshot(tmp_path)
    code, err = run(["calibrate", *MICRO, "--method", "rtn", "--synthetic", "1", "--frames", "1", "--keep-work",
                     "--out", str(tmp_path / "rec")], capsys)
    assert code == 130
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("rec.work")}
    assert after == before


# ---- the error boundary: the environment's errors are one sentence ---------------------------
def _raises(exc):
    def run_(self, args):
        raise exc
    return run_


@pytest.mark.parametrize("exc, needle", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out.onnx"), "/data/out.onnx: no space left"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x.json"), "/root/x.json: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/r.json"), "/tmp/r.json: Is a directory"),
    (MemoryError(), "out of memory"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"), "out of memory"),
    ("bomb", "exceeds limit"),
])
def test_error_boundary(exc, needle, capsys, monkeypatch):
    from PIL import Image

    from qvggt_deploy.cli.lint import Lint

    if exc == "bomb":
        exc = Image.DecompressionBombError("Image size (200000000 pixels) exceeds limit of 178956970 pixels")
    monkeypatch.setattr(Lint, "run", _raises(exc))
    code, err = run(["lint", "x.onnx"], capsys)
    assert code == 1 and "Traceback" not in err
    lines = error_lines(err, "lint")
    assert len(lines) == 1 and needle in lines[0]


def test_a_bug_keeps_its_traceback(monkeypatch):
    from qvggt_deploy.cli.lint import Lint

    monkeypatch.setattr(Lint, "run", _raises(ZeroDivisionError("bug")))
    with pytest.raises(ZeroDivisionError):
        main(["lint", "x.onnx"])


def test_lint_passes_a_complete_export(tmp_path, shared, capsys):
    """The checks that refuse broken files accept the real thing."""
    _copy_export(tmp_path, shared)
    code, out = main(["lint", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "l.json")]), capsys.readouterr().out
    assert code == 0 and "PASSED" in out and (tmp_path / "l.json").is_file()


def test_tiny_image_is_upscaled_with_a_warning(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "imgs" / "dot.png")
    code, err = run(["infer", *MICRO, "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "dot.png is only 1x1 pixels" in err


def test_16_bit_images_scale_by_the_format_not_their_own_maximum(tmp_path):
    from PIL import Image

    from qvggt_deploy.data.images import open_rgb

    for name, level in (("dark", 1000), ("bright", 60000)):
        Image.fromarray(np.full((8, 8), level, np.uint16)).save(tmp_path / f"{name}.png")
    dark, bright = (np.asarray(open_rgb(tmp_path / f"{n}.png"))[0, 0, 0] for n in ("dark", "bright"))
    assert (dark, bright) == (round(1000 / 65535 * 255), round(60000 / 65535 * 255))
