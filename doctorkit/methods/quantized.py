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


def keep_off_packed_cpu_path(model) -> int:
    """Keep every 4-bit layer of `model` on the dequantize path, on every CPU; returns how many layers.

    Why the kit does not use bitsandbytes' packed bf16 path (see CPU_PATH_PACKED above):
    - training: the packed kernel is inference-only (no backward, and `matmul_4bit` adds the bias in place,
      which autograd refuses). A layer switches as soon as it is called in eval mode without grad, so the first
      evaluation during training switched every layer and the next training step crashed
      ("a view of a leaf Variable that requires grad is being used in an in-place operation").
    - inference (chat, demo, evaluate, export): the packed path computes in bf16 with the block scales rounded
      to bf16, so the same run would give other logits, scores and merged-vs-adapter differences on a CPU with
      AVX512-BF16 than on one without. One arithmetic everywhere (the recipe's compute dtype, fp32 on CPU) is
      worth more here than its speed: the kit serves real models on GPUs, where this path does not exist.
    Turning the per-layer switch off when the model is loaded means no layer ever converts. A layer that
    something else already converted is converted back (bitsandbytes' own inverse; its block scales keep the
    bf16 rounding, so prefer never converting).
    """
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    layers = 0
    for module in model.modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        module.support_avx512bf16_for_cpu = False
        state = module.weight.quant_state
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(module.weight.data,
                                                                                                   state)
            module.quant_state = module.weight.quant_state
        layers += 1
    return layers


def packed_cpu_layers(model) -> int:
    """How many 4-bit layers of `model` are on the packed bf16 CPU path now (0 under DoctorKit)."""
    import bitsandbytes as bnb

    return sum(1 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)
               and getattr(m.weight.quant_state, "packing_format_for_cpu", False))


def compute_dtype_in_use(model) -> torch.dtype | None:
    """The dtype the 4-bit layers of `model` multiply in (None: no 4-bit layer): bf16 on the packed CPU path,
    else the layer's compute dtype. Tests derive their tolerances from it."""
    import bitsandbytes as bnb

    dtypes = set()
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            packed = getattr(m.weight.quant_state, "packing_format_for_cpu", False)
            dtypes.add(torch.bfloat16 if packed else (m.compute_dtype or m.weight.quant_state.dtype))
    if not dtypes:
        return None
    return min(dtypes, key=lambda d: torch.finfo(d).bits)
def prepare_quantized_base(model, recipe):
    """What training adapters over a 4/8-bit base needs: a frozen base and, when asked, non-reentrant checkpointing.

    This replaces peft's prepare_model_for_kbit_training, which also casts every non-quantized weight to fp32:
    embeddings and lm_head are 2 x vocab x hidden weights (2.1 GB in bf16, 4.2 GB in fp32 on Llama-3.1-8B's
    128k vocabulary) that neither torchtune nor Unsloth upcast. RMSNorm already computes in fp32 internally, so
    its weight needs no fp32 copy either; and an fp32 norm weight would turn every layer's activations fp32.
    Loss with and without the upcast: python -m bench.lean_loss; measured only in fp32 on a CPU, where the upcast
    casts nothing (bench/results/lean-loss-cpu-fp32.json); in bf16 not measured.
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
