"""PeakMemory: the peak during the block, not the process's lifetime peak."""

import sys

import pytest
import torch

from seta.train.memory import PeakMemory, rss_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or torch.cuda.is_available(),
                                reason="RSS sampling is the CPU/Linux path")


def test_peak_sees_an_allocation_inside_the_block_and_forgets_earlier_ones():
    import mmap
    import time

    # anonymous mappings written through: their pages are new to the process and leave it on close,
    # whatever the allocator keeps from earlier tests (a freed torch tensor's heap can stay resident)
    big = mmap.mmap(-1, 64 * 2**20)
    big.write(b"\1" * (64 * 2**20))  # 64 MiB, touched
    before = rss_bytes()
    big.close()
    with PeakMemory(interval=0.005) as idle:
        pass
    with PeakMemory(interval=0.005) as busy:
        x = mmap.mmap(-1, 96 * 2**20)
        x.write(b"\1" * (96 * 2**20))  # 96 MiB resident while the sampler runs

        time.sleep(0.5)  # many sampling intervals, even when the cores are busy with other processes
        x.close()
    assert busy.peak_mb - idle.peak_mb > 80  # the 96 MiB block is seen
    # the 64 MiB freed before the block is not carried over as a peak (ru_maxrss would carry it)
    assert idle.peak_mb < before / 2**20 - 32
    assert idle.peak_mb > 10  # a real RSS, not zero
