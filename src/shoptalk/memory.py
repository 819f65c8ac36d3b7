"""Keep the memory a process frees for its next tensors.

PyTorch on a CPU allocates through the C library's malloc. glibc gives large
freed blocks back to the kernel (a block over its mmap threshold is unmapped on
free, and the heap's free top is trimmed), so the next batch's activations of the
same size are fresh pages again: one page fault per 4 KiB, each zero-filled.
Training and answering allocate and free gigabytes per step this way, and in a
virtual machine a fresh page is dear: on the 2-core VM of bench/RESULTS.md
touching 3 GB of fresh memory took 15.5 s, touching it again 0.13 s. Intel's
guide for PyTorch on CPUs preloads jemalloc or tcmalloc for the same reason;
glibc's own `mallopt` needs no extra library and no environment set before start.
"""

from __future__ import annotations

import ctypes

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

KEEP = {
    M_MMAP_MAX: 0,  # large blocks come from the heap too, where a free keeps them
    M_TRIM_THRESHOLD: 2**31 - 1,  # never shrink the heap (the most an int can say)
    M_TOP_PAD: 256 * 2**20,  # grow it 256 MiB at a time (untouched pages cost nothing)
}


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; False where the C library is not glibc.

    The process's resident memory stays at its peak instead of falling back
    after each step: the price of not faulting the same pages in again.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # macOS, Windows: no mallopt to call
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in KEEP.items())
