"""Builds libqvggt_w4a16.so with nvcc (one architecture: sm_87, Jetson Orin) and exercises its C ABI
through the ctypes binding. No GPU needed: every check here returns before the first CUDA call
(shape, NULL, alignment and argument rules come first by design)."""
import ctypes

import pytest

from qvggt_deploy.ops import dispatch, w4a16
from qvggt_deploy.ops.build import build_library, find_nvcc

pytestmark = [pytest.mark.nvcc,
              pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found (set NVCC or CUDA_HOME)")]

OK, SHAPE, GROUP, ALIGN, NULL, ARG, WORKSPACE, LAUNCH, CUBLAS = range(9)
AUTO, GEMV, MMA16, MMA64, MMA128, DEQUANT_CUBLAS, FUSED = range(7)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    path = build_library("87", tmp_path_factory.mktemp("w4a16-sm87"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(w4a16.ENV_LIB, str(path))
        mp.setattr(w4a16, "_lib", None)
        yield w4a16.load_library()  # also checks the ABI version
        w4a16._lib = None


def test_only_the_abi_is_exported(lib):
    assert lib.qvggt_w4a16_abi_version() == w4a16.ABI_VERSION
    with pytest.raises(AttributeError):
        lib.launch_mma  # internal symbols stay hidden (-fvisibility=hidden)


@pytest.mark.parametrize("m,n,k,group,status", [
    (1, 16, 64, 32, OK), (0, 1024, 4096, 128, OK), (13740, 8192, 2048, 64, OK), (5, 64, 320, 320, OK),
    (-1, 16, 64, 32, SHAPE), (1, 24, 64, 32, SHAPE), (1, 16, 96, 32, SHAPE), (1, 0, 64, 32, SHAPE),
    (1, 16, 64, 48, GROUP), (1, 16, 192, 128, GROUP), (1, 16, 64, 0, GROUP), (1, 16, 64, 16, GROUP),
])
def test_shape_rules(lib, m, n, k, group, status):
    assert lib.qvggt_w4a16_check_shape(m, n, k, group) == status


def test_status_strings_are_distinct(lib):
    texts = [lib.qvggt_w4a16_status_string(code).decode() for code in range(9)]
    assert len(set(texts)) == 9 and lib.qvggt_w4a16_status_string(99) == b"unknown status"


def workspace(lib, m, n, k, group=128, algo=None):
    size = ctypes.c_size_t(0)
    if algo is None:
        assert lib.qvggt_w4a16_workspace_size(m, n, k, group, ctypes.byref(size)) == OK
    else:
        assert lib.qvggt_w4a16_workspace_size_ex(m, n, k, group, algo, ctypes.byref(size)) == OK
    return size.value


@pytest.mark.parametrize("n,k,group", [(1024, 4096, 128), (3072, 1024, 64), (8192, 2048, 32), (16, 64, 64)])
def test_workspace_covers_every_smaller_m(lib, n, k, group):
    sizes = [workspace(lib, m, n, k, group, FUSED) for m in range(1, 300)]
    assert sizes == sorted(sizes), "a bound for m must hold for every m' <= m"
    assert sizes[-1] == sizes[255] == workspace(lib, 13740, n, k, group, FUSED)  # no split-K past 256 rows
    assert sizes[-1] <= 8 * 256 * n * 4 + 4 * max(n // 16, 16 * -(-n // 128))  # partials + tile counters
    if k == 64:
        assert sizes[-1] == 0  # one K chunk cannot be split
    assert [workspace(lib, m, n, k, group, MMA64) for m in (1, 100, 299)] == [sizes[0], sizes[99], sizes[298]]
    gemv = workspace(lib, 8, n, k, group, GEMV)  # forced GEMV serves m <= 8, split across K
    assert gemv == workspace(lib, 300, n, k, group, GEMV) >= workspace(lib, 4, n, k, group, GEMV)
    assert gemv <= 16 * 8 * n * 4 + 4 * max(n // 16, 1)


def smallest_threshold(n, k):
    table = dispatch.load_table()
    found = [dispatch.cublas_min_m(int(key[3:]), k, n, table) for key in table["archs"]]
    return min(t for t in found if t is not None)


@pytest.mark.parametrize("n,k", [(3072, 1024), (1024, 1024), (1024, 4096), (8192, 2048)])
def test_auto_workspace_adds_weights_and_cublas_scratch_from_the_smallest_threshold(lib, n, k):
    t = smallest_threshold(n, k)
    cublas = workspace(lib, 1, n, k, 128, DEQUANT_CUBLAS)
    assert cublas >= n * k * 2 + (32 << 20)  # fp16 W, then cuBLAS's 32 MiB
    assert workspace(lib, t - 1, n, k) == workspace(lib, t - 1, n, k, 128, FUSED) < cublas
    assert workspace(lib, t, n, k) == workspace(lib, 100000, n, k) == cublas


def test_compiled_table_agrees_with_the_python_reader(lib):
    table = dispatch.load_table()
    value = ctypes.c_int(0)
    shapes = [(1024, 3072), (1024, 1024), (4096, 1024), (2048, 6144), (1536, 640), (320, 80), (16384, 4096)]
    for sm in (75, 80, 86, 87, 89, 90, 100, 120):
        for k, n in shapes:
            assert lib.qvggt_w4a16_dispatch_min_m(sm, n, k, ctypes.byref(value)) == OK
            assert (value.value or None) == dispatch.cublas_min_m(sm, k, n, table), (sm, k, n)
    assert lib.qvggt_w4a16_dispatch_min_m(90, 16, 64, None) == NULL


def test_workspace_query_rejects_bad_shapes(lib):
    size = ctypes.c_size_t(0)
    assert lib.qvggt_w4a16_workspace_size(4, 24, 64, 32, ctypes.byref(size)) == SHAPE
    assert lib.qvggt_w4a16_workspace_size(4, 16, 64, 32, None) == NULL


def gemm(lib, a=0x1000, qw=0x2000, s=0x3000, bias=None, out=0x4000, m=4, n=64, k=128, group=64, ws=None,
         ws_bytes=0, algo=0, split_k=0):
    return lib.qvggt_w4a16_gemm_ex(a, qw, s, bias, out, m, n, k, group, ws, ws_bytes, None, algo, split_k)


@pytest.mark.parametrize("kwargs,status", [
    (dict(n=40), SHAPE), (dict(group=96), GROUP),
    (dict(a=None), NULL), (dict(qw=None), NULL), (dict(s=None), NULL), (dict(out=None), NULL),
    (dict(a=0x1008), ALIGN), (dict(qw=0x2004), ALIGN), (dict(s=0x3002), ALIGN), (dict(out=0x4002), ALIGN),
    (dict(bias=0x5002), ALIGN), (dict(ws=0x6008, ws_bytes=64), ALIGN),
    (dict(algo=7), ARG), (dict(algo=-1), ARG), (dict(split_k=-1), ARG), (dict(algo=1, m=9), ARG),
    (dict(algo=1, split_k=2), WORKSPACE),  # a forced GEMV split needs its partials
    (dict(algo=MMA16, split_k=2, ws=0x6000, ws_bytes=2 * 4 * 64 * 4), WORKSPACE),  # partials but no counters
    (dict(algo=DEQUANT_CUBLAS, split_k=2, ws=0x6000, ws_bytes=1 << 20), ARG),
    (dict(algo=DEQUANT_CUBLAS), WORKSPACE),  # no room for the fp16 weights
    (dict(algo=DEQUANT_CUBLAS, ws=0x6000, ws_bytes=64 * 128 * 2 - 16), WORKSPACE),
    (dict(m=0), OK),  # nothing to do: no CUDA call, no kernel
])
def test_gemm_argument_checks_come_before_cuda(lib, kwargs, status):
    assert gemm(lib, **kwargs) == status


def test_contexts_need_no_cublas_until_asked(lib):
    assert lib.qvggt_w4a16_context_destroy(None) == OK
    assert lib.qvggt_w4a16_context_reserve_cublas(None) == NULL
    assert lib.qvggt_w4a16_context_create(None) == NULL


def test_dequantize_argument_checks(lib):
    assert lib.qvggt_w4a16_dequantize(0x1000, 0x2000, 0x3000, 24, 128, 64, None) == SHAPE
    assert lib.qvggt_w4a16_dequantize(None, 0x2000, 0x3000, 16, 128, 64, None) == NULL
    assert lib.qvggt_w4a16_dequantize(0x1004, 0x2000, 0x3000, 16, 128, 64, None) == ALIGN


@pytest.mark.slow
def test_full_fat_binary_builds(tmp_path):
    """What `make -C kernels` builds: sm_80, 86, 87, 89, 90 (+ compute_90 PTX)."""
    archs = ["80", "86", "87", "89", "90"]
    path = build_library(archs, tmp_path)
    assert (tmp_path / "libqvggt_w4a16.archs").read_text().split() == archs
    assert path.stat().st_size > 0


@pytest.mark.parametrize("n,k", [(1024, 1024), (1024, 4096), (4096, 1024), (3072, 1024), (8192, 2048), (16, 64)])
def test_split_choices_of_the_emulation_tests_are_the_library_s(lib, n, k):
    """The GEMV and MMA16 split transcripts of tests/ops/test_ops_fragments_splitk.py, checked
    through the workspace the library asks for (its split choices at the SM bound)."""
    from tests.ops.test_ops_fragments_splitk import K_SM_BOUND, auto_splits, gemv_splits, partial_bytes

    group = min(128, k)
    assert workspace(lib, 8, n, k, group, GEMV) == max(partial_bytes(gemv_splits(n, k, K_SM_BOUND), m, n)
                                                     for m in range(1, 9))
    assert workspace(lib, 16, n, k, group, MMA16) == max(
        max(partial_bytes(gemv_splits(n, k, K_SM_BOUND), m, n) for m in range(1, 5)),
        max(partial_bytes(auto_splits(tile, m, n, k, K_SM_BOUND), m, n) for m in range(1, 17)
            for tile in ("mma16", "mma64", "mma128")))
