"""A process that keeps its freed memory reuses it: no page faults for the same tensors again."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Ten steps that each make and free a 64 MiB and a 16 MiB tensor, as a training step makes
# and frees its activations; prints the page faults of the last five.
PROGRAM = """
import resource, sys, torch
from shoptalk.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for step in range(10):
    if step == 5:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x, y = torch.ones(16 * 2**20), torch.ones(4 * 2**20)
    del x, y
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def late_step_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults() -> None:
    step_pages = 80 * 2**20 // 4096
    # glibc's defaults give the freed blocks back: every step faults them in again.
    assert late_step_faults("default") > 5 * step_pages // 2
    # Kept, the heap grows over the first steps until its free blocks fit, then is reused.
    assert late_step_faults("keep") < step_pages // 4
