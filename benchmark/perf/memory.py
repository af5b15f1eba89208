"""Peak memory of a block of training steps, counted like ``torch.cuda.max_memory_allocated`` on
both CUDA and CPU (see :class:`PeakMemory`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

SAMPLE_S = 0.001  # CPU memory sampling period
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


class PeakMemory:
    """Peak memory of a block, counted like ``torch.cuda.max_memory_allocated``.

    CUDA: max_memory_allocated during the block minus memory_allocated when the probe was made
    (before the model was built). CPU: the bytes of the ``live`` tensors at the start of the
    block (model, optimizer state, inputs: counted exactly), plus the largest growth of the
    process's anonymous resident memory (resident - shared pages of /proc/self/statm: heap and
    tensors, not library pages; Linux) over its level at the start, sampled every millisecond by
    a thread. Freed heap memory is returned to the OS first (glibc ``malloc_trim``), so it cannot
    hide that growth.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_live_tensors+rss_anon_growth"
        self._baseline = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        self.peak = 0

    @staticmethod
    def _rss_anon() -> int:
        resident, shared = Path("/proc/self/statm").read_text().split()[1:3]
        return (int(resident) - int(shared)) * PAGE_BYTES

    def _sample(self, stop: threading.Event, found: list[int]) -> None:
        while not stop.wait(SAMPLE_S):
            found[0] = max(found[0], self._rss_anon())

    @contextmanager
    def track(self, live: Iterable[Tensor]) -> Iterator[None]:
        """Measure the peak of the block into :attr:`peak`."""
        free(self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._baseline
            return
        live_bytes, start = tensor_bytes(live), self._rss_anon()
        stop, found = threading.Event(), [start]
        sampler = threading.Thread(target=self._sample, args=(stop, found), daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()
        self.peak = live_bytes + max(found[0], self._rss_anon()) - start


def free(device: torch.device) -> None:
    """Collect garbage and give cached / freed memory back (CUDA cache, glibc heap)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif _LIBC is not None:
        _LIBC.malloc_trim(0)
