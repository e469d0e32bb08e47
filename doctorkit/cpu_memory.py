"""Training on a CPU: keep freed blocks in the process instead of handing them back to the kernel every step.

PyTorch's CPU tensors come straight from the C library's malloc (there is no caching allocator as on CUDA). glibc
serves blocks above its mmap threshold (128 KiB at first, raised to the largest block freed so far) with a fresh
mmap and unmaps them when freed, and trims the heap top above twice that. A training step allocates and frees the
same few-MB activations, logits and gradients every time, so each step page-faults (and the kernel zero-fills) them
anew: on builtin:tiny's real batches that was 20-40% of the LM head + loss CPU time, spent in the kernel (measured
with getrusage: ru_stime, ru_minflt; issue 20). With a fixed 32 MiB threshold (glibc's maximum) and no trimming, the
next step reuses the last one's pages. The cost: freed memory stays in the process, so the peak RSS can grow where
batches change shape (probably why the 20M bench model's grouped arm went 3.1 -> 3.5 GiB; cpu-packing-*-v2.json).

Hand-written (ten lines of ctypes): the library way is LD_PRELOAD of jemalloc or tcmalloc (PyTorch's CPU tuning
guide), which must be set before the process starts and is not installed here; glibc's own knob is mallopt.
Other C libraries (musl, macOS) have no such knobs: nothing happens there.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # glibc malloc.h
MMAP_THRESHOLD = 32 * 2 ** 20                   # glibc's largest allowed value (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2 ** 31 - 1                   # the largest value mallopt takes: keep up to 2 GiB of free heap top


def keep_freed_blocks() -> bool:
    """Sets glibc's malloc to reuse freed blocks up to 32 MiB instead of unmapping them; False where that is unknown."""
    try:
        mallopt = ctypes.CDLL(None).mallopt   # the running process's C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(trim)
