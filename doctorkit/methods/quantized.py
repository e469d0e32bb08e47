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


def prepare_quantized_base(model, recipe):
    """What training adapters over a 4/8-bit base needs: a frozen base and, when asked, non-reentrant checkpointing.

    This replaces peft's prepare_model_for_kbit_training, which also casts every non-quantized weight to fp32:
    embeddings and lm_head are 2 x vocab x hidden weights (2.1 GB in bf16, 4.2 GB in fp32 on Llama-3.1-8B's
    128k vocabulary) that neither torchtune nor Unsloth upcast. RMSNorm already computes in fp32 internally, so
    its weight needs no fp32 copy either; and an fp32 norm weight would turn every layer's activations fp32.
    Loss with and without the upcast: python -m bench.lean_loss (not yet measured: README "Memory, traced shapes").
    Non-reentrant checkpointing needs no input-require-grads hook (the reentrant kind drops gradients of a
    frozen input), so none is added. `train.upcast_fp32: true` restores peft's behaviour.
    """
    if recipe.train.upcast_fp32:
        from peft import prepare_model_for_kbit_training
        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(recipe.gradient_checkpointing),
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    for param in model.parameters():
        param.requires_grad_(False)
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model
