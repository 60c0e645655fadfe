"""Atomic file output and content hashing.

Every output the tools write (checkpoints, recipes, ONNX files, reports) goes through
:func:`atomic_path` / :func:`atomic_dir`: it is built under a temporary name beside the target
and renamed into place in one step, only when complete, so an interrupt never leaves a
half-written output and a failure leaves the previous one as it was. A folder is replaced only
when it is what the caller writes (``ours``) or empty, so a mistyped ``--out`` never deletes a
user's files. Outputs get the permissions of the user's umask, like any other file they create.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from qvggt_deploy.errors import QvggtError

PathLike = Union[str, os.PathLike]
#: Whether an existing path is an output of the caller's kind: a predicate, or the name of a file
#: that marks the folder (``"recipe.json"``).
Ours = Union[None, str, Callable[[Path], bool]]

_UMASK_LOCK = threading.Lock()
_RENAME_EXCHANGE = 2  # linux/fs.h


def current_umask() -> int:
    """The process umask (reading it means setting it; the lock keeps threads from seeing 0)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _apply_umask(path: Path, base: int) -> None:
    """mkstemp/mkdtemp (and writers that use them, like safetensors) create 0600/0700; give the
    output the mode a plain open() would."""
    os.chmod(path, base & ~current_umask())


def _apply_umask_tree(root: Path) -> None:
    _apply_umask(root, 0o777)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            _apply_umask(Path(folder) / name, 0o777)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _apply_umask(Path(folder) / name, 0o666)


def _is_ours(path: Path, ours: Ours) -> bool:
    if ours is None:
        return False
    if isinstance(ours, str):
        return (path / ours).is_file()
    try:
        return bool(ours(path))
    except (OSError, QvggtError):
        return False


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable_parent(path: PathLike, option: str = "--out") -> None:
    """Refuse ``path`` when its folder cannot be created or written (a file in the way, no
    permission, a read-only or virtual filesystem). Probes with a real file: permission bits
    say nothing for root or a read-only mount."""
    path = Path(path)
    base = _nearest_existing(path)
    if not base.is_dir():
        raise QvggtError(f"{option} {path}: {base} is a file, so no folder can be created there")
    try:
        fd, probe = tempfile.mkstemp(prefix=".qvggt-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise QvggtError(f"{option} {path}: cannot write in {base} ({exc.strerror or exc})") from None


def check_output_file(path: PathLike, ours: Ours = None, what: str = "output file", option: str = "--out",
                      force: bool = False) -> Path:
    """Validate a file output before any work: not a folder, writable folder, and (when ``ours``
    is given) an existing file is replaced only if it is of the caller's kind or ``force``."""
    path = Path(path)
    if not str(path) or path.name in ("", ".", ".."):
        raise QvggtError(f"{option} {str(path)!r}: not a file name")
    if path.is_dir():
        raise QvggtError(f"{option} {path}: is a folder; give a file name")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise QvggtError(f"{option} {path}: exists and is not a regular file")
        if ours is not None and not force and not _is_ours(path, ours):
            raise QvggtError(f"{option} {path}: exists and is not a {what}; it is left alone "
                             f"(choose another name, or pass --force to replace it)")
    check_writable_parent(path, option)
    return path


def check_output_dir(path: PathLike, ours: Ours = None, what: str = "output folder", option: str = "--out",
                     force: bool = False, replace: bool = True) -> Path:
    """Validate a folder output before any work.

    Args:
        path: the folder.
        ours: what marks a folder of the caller's kind (see :data:`Ours`).
        what: the kind's name, for the message.
        option: the option that named it, for the message.
        force: allow replacing a folder that is not ``ours`` (never a file).
        replace: True when the folder is replaced whole (``ours`` decides); False when the
            command only adds its files into it (any folder is fine).
    """
    path = Path(path)
    if not str(path) or (replace and path.name in ("", ".", "..")):
        raise QvggtError(f"{option} {str(path)!r}: not a folder name that can be replaced")
    if path.exists() or path.is_symlink():
        if not path.is_dir() or (replace and path.is_symlink()):
            raise QvggtError(f"{option} {path}: exists and is not a folder; it is left alone")
        if replace and not force and not _is_empty_dir(path) and not _is_ours(path, ours):
            raise QvggtError(f"{option} {path}: exists and is not a {what}; it is left alone "
                             f"(choose another folder, or pass --force to replace it)")
    check_writable_parent(path if replace else path / "x", option)
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike, ours: Ours = None, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    An existing file is replaced (only if ``ours`` approves it, when given); a folder never is.
    """
    path = Path(path)
    if path.is_dir():
        raise QvggtError(f"{path}: is a folder, not replaced by a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _apply_umask(tmp_path, 0o666)
        yield tmp_path
        _apply_umask(tmp_path, 0o666)  # again: the block may have replaced the file
        if ours is not None and path.exists() and not force and not _is_ours(path, ours):
            raise QvggtError(f"{path}: exists and is not an output of this kind; it is left alone")
        if path.is_dir():
            raise QvggtError(f"{path}: is a folder, not replaced by a file")
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_figure(fig, path: PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG through :func:`atomic_path`, then close it (pyplot keeps
    every open figure alive otherwise)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path

def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put folder ``tmp`` at ``path``, whose previous content goes only once the new one is there."""
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
        return
    if _is_empty_dir(path):
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):
        old = tmp  # after the swap the temporary name holds the previous folder
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)) / "old"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)
            shutil.rmtree(old.parent, ignore_errors=True)
            raise
        old = old.parent
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


@contextlib.contextmanager
def atomic_dir(path: PathLike, ours: Ours = None, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success replace ``path`` with it in one step.

    An existing ``path`` is replaced only if it is an empty folder, or ``ours`` approves it
    (a marker file name or a predicate), or ``force`` (a folder or file the user chose to
    drop). Otherwise :class:`QvggtError`, checked before the block runs and again before the swap.
    """
    path = Path(path)

    def refuse_foreign() -> None:
        if force or not (path.exists() or path.is_symlink()):
            return
        if not path.is_dir() or path.is_symlink():
            raise QvggtError(f"{path}: exists and is not a folder; it is left alone")
        if not _is_empty_dir(path) and not _is_ours(path, ours):
            raise QvggtError(f"{path}: exists and is not an output of this kind; it is left alone "
                             f"(choose another folder, or pass --force)")

    refuse_foreign()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _apply_umask(tmp, 0o777)
        yield tmp
        _apply_umask_tree(tmp)
        refuse_foreign()
        _replace_dir(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (streamed, constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_json_or_none(path: PathLike) -> Optional[Any]:
    """Parsed JSON of ``path``, or None if it is missing or not JSON (for kind checks)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
