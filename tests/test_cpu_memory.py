"""doctorkit.cpu_memory: after keep_freed_blocks, a training-like loop of multi-MB allocations stops page-faulting.

Each round allocates ~150 MiB in blocks of 8-20 MiB (a CPU step's activations, logits and gradients) and frees
them. glibc's default returns such memory to the kernel (unmap, heap-top trim) in most runs here, which then
fault 20,000-40,000 pages in every later round (in 1 of 5 runs the address layout let the heap keep it). Kept,
rounds settle after a few heap growths (2,048 pages each) and then fault none. Three fresh interpreters (malloc's
state is per process): a call that did nothing would pass all three in under 1% of test runs.
"""
import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from doctorkit.cpu_memory import keep_freed_blocks
assert keep_freed_blocks()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(m * 2 ** 18) for m in [20, 16, 12, 8] * 3]   # m MiB of float32, written
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_without_page_faults():
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
        faults = list(map(int, out.split()))
        assert faults[0] > 30000          # the first round maps fresh pages: 150 MiB are ~38,000 pages of 4 KiB
        # the last three reuse them: together under a quarter of one fresh round (a kept heap faults only where it
        # grows past its old top, a few 2,048-page steps on a busy machine; unmapped blocks fault ~38,000 a round)
        assert sum(faults[3:]) < faults[0] // 4
