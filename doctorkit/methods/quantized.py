"""bitsandbytes loading shared by QLoRA and 4/8-bit P-tuning: one config builder, one clear backend check."""
from __future__ import annotations

import importlib

import torch

from doctorkit.errors import DoctorKitError


def bnb_backend_problem() -> str | None:
    """Why bitsandbytes cannot quantize on this machine, or None when it can.

    Checked up front so a missing or CPU-less/GPU-less build is one sentence, not a stack trace from deep
    inside from_pretrained. bitsandbytes >= 0.46 lists the torch devices its compiled backends support.
    """
    try:
        bnb = importlib.import_module("bitsandbytes")
    except Exception as err:  # ImportError, or a broken native library raising RuntimeError/OSError
        return f"bitsandbytes is not importable ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
    supported = set(getattr(bnb, "supported_torch_devices", set()))
    available = {"cpu"} | ({"cuda"} if torch.cuda.is_available() else set())
    if not supported & available:
        version = getattr(bnb, "__version__", "?")
        return f"bitsandbytes {version} has no backend for {', '.join(sorted(available))} (it supports: {', '.join(sorted(supported)) or 'nothing'})"
    return None


def require_bnb(key: str, bits: int) -> None:
    problem = bnb_backend_problem()
    if problem:
        raise DoctorKitError(f"{key}={bits}: {bits}-bit loading needs a working bitsandbytes, but {problem}; "
                             f"install bitsandbytes>=0.46 (pip install -U bitsandbytes) or use method: lora")


def compute_dtype(name: str, model_dtype: str) -> torch.dtype:
    from doctorkit.model import resolve_dtype

    return resolve_dtype(model_dtype if name == "auto" else name)


def bnb_config(bits: int, compute: torch.dtype, quant_type: str = "nf4", double_quant: bool = True):
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute)


# Which arithmetic bitsandbytes' 4-bit layers use on a CPU. bitsandbytes (0.49+) decides per CPU: where the
# native library reports AVX512-BF16 (`bitsandbytes.functional.has_avx512bf16()`, copied into every
# Linear4bit as `support_avx512bf16_for_cpu` when the layer is built), a layer called in eval mode with an
# input that needs no grad repacks its weight in place (`quant_state.packing_format_for_cpu`) and from then
# on runs a fused bf16 kernel; elsewhere every call dequantizes and multiplies in the compute dtype.
CPU_PATH_PACKED = "packed-bf16"
CPU_PATH_DEQUANTIZE = "dequantize"


def cpu_4bit_path() -> str:
    """The 4-bit CPU path bitsandbytes takes on this machine: CPU_PATH_PACKED or CPU_PATH_DEQUANTIZE."""
    from bitsandbytes.functional import has_avx512bf16

    return CPU_PATH_PACKED if has_avx512bf16() else CPU_PATH_DEQUANTIZE
