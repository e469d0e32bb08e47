"""GPUs we estimate for: usable memory, dense 16-bit tensor peak, and a typical hourly price.

Peak TFLOP/s are the vendors' published dense (no sparsity) bf16/fp16 tensor-core figures with fp32
accumulation, which is what mixed-precision training uses (GeForce cards run fp32-accumulate at half their
fp16-accumulate rate; T4 has no bf16 and trains in fp16). Memory is what the driver reports as total, in MiB.
Prices are typical on-demand prices, late 2025, rounded, across common clouds (hyperscalers run higher,
community marketplaces lower): pass --price-per-hour for yours.
"""
from __future__ import annotations

import dataclasses
import re

from doctorkit.errors import DoctorKitError

MiB = 1024 ** 2
PRICE_SOURCE = "typical on-demand price, late 2025"


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    label: str
    memory_bytes: int
    peak_tflops: float      # dense bf16/fp16 tensor, fp32 accumulate
    usd_per_hour: float
    bf16: bool = True


GPUS = [
    Gpu("t4", "T4 16GB", 15360 * MiB, 65.0, 0.35, bf16=False),
    Gpu("rtx3090", "RTX 3090 24GB", 24576 * MiB, 35.6, 0.25),
    Gpu("rtx4090", "RTX 4090 24GB", 24564 * MiB, 165.2, 0.40),
    Gpu("a10", "A10 24GB", 23028 * MiB, 125.0, 0.80),
    Gpu("l4", "L4 24GB", 23034 * MiB, 121.0, 0.70),
    Gpu("a100-40gb", "A100 40GB", 40960 * MiB, 312.0, 1.30),
    Gpu("a100-80gb", "A100 80GB", 81920 * MiB, 312.0, 1.80),
    Gpu("h100-80gb", "H100 80GB", 81559 * MiB, 989.0, 2.90),
    Gpu("h200", "H200 141GB", 143771 * MiB, 989.0, 3.80),
]
ALIASES = {"3090": "rtx3090", "4090": "rtx4090", "a100": "a100-80gb", "a10080g": "a100-80gb",
           "a10040g": "a100-40gb", "h100": "h100-80gb", "h200141gb": "h200", "t416gb": "t4"}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_gpu(name: str) -> Gpu:
    wanted = _squash(name)
    for gpu in GPUS:
        if wanted in (_squash(gpu.name), _squash(gpu.label)):
            return gpu
    if wanted in ALIASES:
        return find_gpu(ALIASES[wanted])
    known = ", ".join(g.name for g in GPUS)
    raise DoctorKitError(f"--gpu {name}: unknown GPU (catalog: {known}; pick the closest and set --price-per-hour)")


# torch.cuda.get_device_name() strings -> catalog names, first match wins (the one place bench records and the
# estimator agree on which GPU a measurement was taken on). Patterns run on the lower-cased name.
DEVICE_NAME_PATTERNS = [
    (r"h200", "h200"),
    (r"h100", "h100-80gb"),
    (r"a100.*40\s*gb", "a100-40gb"),
    (r"a100", "a100-80gb"),
    (r"rtx\s*4090", "rtx4090"),
    (r"rtx\s*3090", "rtx3090"),
    (r"\ba10\b", "a10"),            # not A10G (AWS): another chip, another peak
    (r"\bl4\b", "l4"),
    (r"\bt4\b", "t4"),
]


def catalog_name(device_name: str) -> str | None:
    """'NVIDIA H100 80GB HBM3' -> 'h100-80gb'; a catalog name maps to itself; None for a GPU not in the catalog."""
    text = str(device_name).lower()
    if any(text == g.name for g in GPUS):
        return text
    for pattern, name in DEVICE_NAME_PATTERNS:
        if re.search(pattern, text):
            return name
    return None
