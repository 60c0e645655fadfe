"""Atomic outputs: replaced whole or not at all, never someone else's files, the user's umask."""
import os
import stat

import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.fileio import (atomic_dir, atomic_path, check_output_dir, check_output_file, current_umask,
                                 write_json)


def _tree(path):
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def _stray(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_atomic_dir_refuses_a_folder_of_user_files(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    before = _tree(target)
    with pytest.raises(QvggtError, match="left alone"):
        with atomic_dir(target, ours="recipe.json") as tmp:
            (tmp / "recipe.json").write_text("{}")
    assert _tree(target) == before and _stray(tmp_path) == []


def test_atomic_dir_refuses_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_bytes(b"\x00data")
    with pytest.raises(QvggtError, match="not a folder"):
        with atomic_dir(target, ours="recipe.json"):
            pass
    assert target.read_bytes() == b"\x00data" and _stray(tmp_path) == []


def test_atomic_dir_replaces_its_own_kind_whole(tmp_path):
    target = tmp_path / "rec"
    target.mkdir()
    (target / "recipe.json").write_text("old")
    (target / "stale.bin").write_text("stale")
    with atomic_dir(target, ours="recipe.json") as tmp:
        (tmp / "recipe.json").write_text("new")
    assert _tree(target) == {"recipe.json": b"new"} and _stray(tmp_path) == []


def test_atomic_dir_force_replaces_anything(tmp_path):
    target = tmp_path / "out"
    target.write_text("file")
    with atomic_dir(target, ours="recipe.json", force=True) as tmp:
        (tmp / "recipe.json").write_text("new")
    assert target.is_dir() and _stray(tmp_path) == []


def test_atomic_dir_failure_keeps_old_and_leaves_nothing(tmp_path):
    target = tmp_path / "rec"
    target.mkdir()
    (target / "recipe.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, ours="recipe.json") as tmp:
            (tmp / "recipe.json").write_text("half")
            raise RuntimeError("boom")
    assert _tree(target) == {"recipe.json": b"old"} and _stray(tmp_path) == []


def test_atomic_dir_empty_folder_is_replaced(tmp_path):
    target = tmp_path / "made_by_mkdir"
    target.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("x")
    assert _tree(target) == {"a": b"x"}


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
            os.chmod(tmp / "f", 0o600)  # as safetensors' writer leaves its files
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o640
    assert current_umask() == old


def test_atomic_path_never_replaces_a_folder(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(QvggtError, match="is a folder"):
        write_json(tmp_path / "x.json", {})
    assert (tmp_path / "x.json").is_dir() and _stray(tmp_path) == []


def test_atomic_path_ours_refuses_foreign_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"mine")
    with pytest.raises(QvggtError, match="left alone"):
        with atomic_path(target, ours=lambda p: False) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"mine" and _stray(tmp_path) == []


@pytest.mark.parametrize("case", ["dir", "parent_is_file", "proc"])
def test_check_output_file_refusals(tmp_path, case):
    path = {"dir": tmp_path, "parent_is_file": tmp_path / "f" / "x.json", "proc": "/proc/qvggt/x.json"}[case]
    (tmp_path / "f").write_text("")
    with pytest.raises(QvggtError):
        check_output_file(path, option="--json")


def test_check_output_dir_adds_into_any_folder(tmp_path):
    (tmp_path / "user.txt").write_text("x")
    assert check_output_dir(tmp_path, replace=False) == tmp_path
    with pytest.raises(QvggtError, match="--force"):
        check_output_dir(tmp_path, ours="recipe.json")
