"""The ctypes binding (qvggt_deploy/ops/w4a16.py): loader errors and input checks here; the kernel
itself against the CPU reference where a GPU exists (marker gpu)."""
import functools
import os

import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops import w4a16
from qvggt_deploy.ops.build import build_library, cuda_arch_of_current_gpu, find_nvcc
from qvggt_deploy.ops.layout import repack_for_kernel
from qvggt_deploy.ops.linear import W4A16Linear
from qvggt_deploy.ops.reference import dequantize_reference, w4a16_gemm_reference
from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


def test_missing_library_names_the_path_and_the_build(monkeypatch, tmp_path):
    monkeypatch.setenv(w4a16.ENV_LIB, str(tmp_path / "nope.so"))
    monkeypatch.setattr(w4a16, "_lib", None)
    assert w4a16.library_path() == tmp_path / "nope.so"
    with pytest.raises(QvggtError, match=r"not found at .*nope\.so.*make -C kernels"):
        w4a16.load_library()


def test_unloadable_library_is_a_qvggt_error(monkeypatch, tmp_path):
    bogus = tmp_path / "libqvggt_w4a16.so"
    bogus.write_text("not an ELF file")
    monkeypatch.setenv(w4a16.ENV_LIB, str(bogus))
    monkeypatch.setattr(w4a16, "_lib", None)
    with pytest.raises(QvggtError, match="cannot load"):
        w4a16.load_library()


def weights(n, k, group, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.05
    scales = compute_scales(w, 4, group)
    qweight, scales_dev = repack_for_kernel(pack_int4(quantize(w, scales, 4, group)), scales.half(), group)
    return qweight.to(device), scales_dev.to(device)


def test_inputs_are_checked_before_the_library_is_needed(monkeypatch, tmp_path):
    monkeypatch.setenv(w4a16.ENV_LIB, str(tmp_path / "absent.so"))
    monkeypatch.setattr(w4a16, "_lib", None)
    qweight, scales = weights(32, 128, 64)
    with pytest.raises(QvggtError, match="CUDA tensor"):
        w4a16.gemm(torch.zeros(2, 128).half(), qweight, scales, None, 64)
    with pytest.raises(QvggtError, match="needs CUDA"):
        w4a16.dequantize(qweight, scales, 64)


# ------------------------------------------------------------------------------------------ GPU


@pytest.fixture(scope="module")
def cuda_library(tmp_path_factory):
    """The library under test: $QVGGT_W4A16_LIB or kernels/build, else built now for this GPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    w4a16._lib = None
    if not w4a16.library_path().is_file():
        if find_nvcc() is None:
            pytest.skip(f"{w4a16.library_path()} is not built and nvcc is absent")
        os.environ[w4a16.ENV_LIB] = str(build_library(cuda_arch_of_current_gpu(),
                                                      tmp_path_factory.mktemp("w4a16-build"), jobs=8))
    return w4a16.load_library()


SHAPES = [(48, 192, 64), (128, 256, 32), (256, 1024, 128), (1024, 4096, 128), (80, 320, 320)]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("n,k,group", SHAPES)
def test_dequantize_is_bit_exact(cuda_library, n, k, group):
    qweight, scales = weights(n, k, group, "cuda")
    assert torch.equal(w4a16.dequantize(qweight, scales, group).cpu(),
                       dequantize_reference(qweight.cpu(), scales.cpu(), group))


def relative_error(got, expected):
    return ((got.float() - expected.float()).abs().mean() / expected.float().abs().mean()).item()


@functools.lru_cache(maxsize=None)
def gemm_case(n, k, group, m):
    """CPU inputs and the reference output of one problem, shared by every algo."""
    qweight, scales = weights(n, k, group, seed=m)
    gen = torch.Generator().manual_seed(m)
    a = (torch.randn(m, k, generator=gen) * 0.5).half()
    bias = (torch.randn(n, generator=gen) * 0.1).half() if m % 2 else None
    return qweight, scales, a, bias, w4a16_gemm_reference(a, qweight, scales, bias, group)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("algo,split_k", [("auto", 0), ("gemv", 0), ("mma16", 0), ("mma64", 0), ("mma128", 0),
                                          ("gemv", 3), ("mma16", 3), ("mma16", 16), ("mma64", 2), ("mma128", 5),
                                          ("fused", 0), ("dequant_cublas", 0)])
@pytest.mark.parametrize("n,k,group", SHAPES)
@pytest.mark.parametrize("m", [1, 3, 8, 16, 17, 100, 300])
def test_gemm_matches_reference(cuda_library, algo, split_k, n, k, group, m):
    if algo == "gemv" and m > 8:
        pytest.skip("GEMV serves m <= 8")
    qweight, scales, a, bias, expected = gemm_case(n, k, group, m)
    got = w4a16.gemm(a.cuda(), qweight.cuda(), scales.cuda(), bias.cuda() if bias is not None else None, group,
                     algo=algo, split_k=split_k).cpu()
    assert relative_error(got, expected) < 1e-3  # Marlin's criterion (FP32 summation order only)
    torch.testing.assert_close(got.float(), expected.float(), rtol=1e-2, atol=2e-3)


@gpu
@pytest.mark.gpu
def test_gemm_errors_name_the_problem(cuda_library):
    qweight, scales = weights(64, 256, 64, "cuda")
    storage = torch.zeros(5 * 256 + 1, dtype=torch.float16, device="cuda")
    misaligned = storage[1:].view(5, 256)  # contiguous, but 2 bytes off a 16-byte boundary
    with pytest.raises(QvggtError, match=r"m=5, n=64, k=256, group=64: misaligned"):
        w4a16.gemm(misaligned, qweight, scales, None, 64)
    with pytest.raises(QvggtError, match=r"m=20, .*bad algo"):
        w4a16.gemm(torch.zeros(20, 256, dtype=torch.float16, device="cuda"), qweight, scales, None, 64, algo="gemv")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("cublas_min_m", [None, 1, "table"])
def test_linear_on_cuda_equals_cpu(cuda_library, cublas_min_m):
    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 256)
    module = W4A16Linear.from_float(linear, 128, cublas_min_m=cublas_min_m)
    x = torch.randn(2, 37, 512)
    expected = module(x)
    got = module.cuda()(x.cuda()).cpu()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=2e-3)


@pytest.mark.parametrize("split_k,m,n,k,expected", [
    # fp32 partials [splits][m][n], then one int32 counter per output tile: max(n/16, ceil(m/16) * ceil(n/128))
    (0, 8, 64, 1024, 0), (1, 8, 64, 1024, 0), (4, 8, 64, 1024, 4 * 8 * 64 * 4 + 4 * 4),
    (5, 300, 48, 192, 3 * 300 * 48 * 4 + 19 * 4),  # 3 chunks: at most 3 slices; 19 row tiles of 16
    (3, 2, 16, 320, 3 * 2 * 16 * 4 + 4), (4, 2, 16, 320, 3 * 2 * 16 * 4 + 4),  # 5 chunks: 4 -> slices of 2 -> 3
    (2, 1, 16, 64, 0),
])
def test_forced_split_workspace_follows_the_library_rule(split_k, m, n, k, expected):
    assert w4a16._forced_split_bytes(split_k, m, n, k) == expected


def test_library_lookup_order(tmp_path, monkeypatch):
    """$QVGGT_W4A16_LIB, then package data, then the checkout's kernels/build."""
    from qvggt_deploy.ops import build

    monkeypatch.delenv(w4a16.ENV_LIB, raising=False)
    monkeypatch.setattr(w4a16, "PACKAGE_LIB", tmp_path / "lib")
    monkeypatch.setenv(build.ENV_KERNELS, str(tmp_path / "none"))
    assert w4a16.library_path() == tmp_path / "lib" / build.LIB_NAME  # nothing found: the package place
    assert build.kernels_dir(required=False) is None
    with pytest.raises(QvggtError, match="QVGGT_KERNELS_DIR"):
        build.kernels_dir()
    src = tmp_path / "kernels"
    src.mkdir()
    (src / "w4a16_gemm.cu").write_text("")
    monkeypatch.setenv(build.ENV_KERNELS, str(src))
    assert w4a16.library_path() == src / "build" / build.LIB_NAME
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / build.LIB_NAME).write_bytes(b"")
    assert w4a16.library_path() == tmp_path / "lib" / build.LIB_NAME
    monkeypatch.setenv(w4a16.ENV_LIB, str(tmp_path / "x.so"))
    assert w4a16.library_path() == tmp_path / "x.so"
