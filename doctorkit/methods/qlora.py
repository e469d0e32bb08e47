"""QLoRA: the frozen base in 4-bit NF4 (double-quantized constants) or 8-bit via bitsandbytes, LoRA on every
linear layer on top, gradient checkpointing and paged 8-bit AdamW by default; embeddings, lm_head and norms stay
in the compute dtype (train.upcast_fp32 to cast them to fp32 as peft's prepare_model_for_kbit_training does).

The LoRA part is the lora method's own config; this module only adds how the base is loaded and prepared.
"""
from __future__ import annotations

from doctorkit.methods import lora
from doctorkit.methods.quantized import bnb_config, compute_dtype, prepare_quantized_base, require_bnb

PEFT_ADAPTER = True  # a LoRA adapter too; it also applies to the 16-bit base when served

RESUME_KEYS = lora.RESUME_KEYS + ("quantization.bits",)
GRADIENT_CHECKPOINTING = True  # default when the recipe leaves gradient_checkpointing unset: QLoRA is about memory
SECTION = "quantization"  # its own keys; the adapter's are lora's
SECTIONS = ("lora", "quantization")
MERGES = True             # export dequantizes the 4/8-bit base as trained, then merges the adapter
# doctorkit.cost.job.Job: LoRA matrices (checkpointing follows the recipe, on by default: GRADIENT_CHECKPOINTING)
COST_TERMS = {"adapter": "lora"}


def weight_bits(recipe):
    return recipe.quantization.bits


def cost_terms(recipe, shape) -> dict:
    return {"weight_bits": recipe.quantization.bits}


# train.optimizer: auto -> 8-bit AdamW states (a quarter of fp32 Adam's), paged to CPU RAM on memory spikes
# (bitsandbytes falls back to unpaged on a CPU). Loss against fp32 AdamW: not measured (bench.lean_loss keeps one
# optimizer in both its arms)
OPTIMIZER = "paged_adamw_8bit"


def validate(recipe) -> None:
    lora.validate(recipe)
    require_bnb("quantization.bits", recipe.quantization.bits)


def load_kwargs(recipe) -> dict:
    q = recipe.quantization
    return {"quantization_config": bnb_config(q.bits, compute_dtype(q.compute_dtype, recipe.dtype),
                                              q.quant_type, q.double_quant)}


def wrap(model, recipe):
    validate(recipe)
    return lora.wrap(prepare_quantized_base(model, recipe), recipe)


def load(base_model, run_dir):
    return lora.load(base_model, run_dir)
