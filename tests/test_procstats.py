import sys

import numpy as np

from qvggt_deploy import procstats


def test_peak_rss_is_bytes_and_covers_an_allocation():
    block = np.ones(64 * 2 ** 20, np.uint8)  # 64 MiB touched
    now, peak = procstats.current_rss_bytes(), procstats.peak_rss_bytes()
    assert block.sum() == block.size
    if sys.platform.startswith("linux"):
        # the two counters differ by a few pages; KiB read as bytes would be ~1000x too small
        assert now >= block.nbytes and peak >= 0.9 * now


def test_ru_maxrss_units(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert procstats.ru_maxrss_bytes(3) == 3072
    monkeypatch.setattr(sys, "platform", "darwin")
    assert procstats.ru_maxrss_bytes(3) == 3
