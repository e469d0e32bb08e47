"""LoRA through PEFT: rank-r updates on the chosen linear layers, base frozen; DoRA and rsLoRA as switches."""
from __future__ import annotations

from pathlib import Path

from doctorkit.errors import DoctorKitError

PEFT_ADAPTER = True  # adapter/ is a PEFT LoRA adapter (doctorkit.serve, vLLM --lora-modules)
# The saved adapter folder holds PEFT's file names (doctorkit.methods DEFAULTS); rundir.check_adapter checks them.
RESUME_KEYS = ("lora.r", "lora.target_modules", "lora.use_dora", "lora.adapter_dtype")  # they shape the saved tensors
SECTION = "lora"     # recipe section of its options (doctorkit.recipe.LoraConfig)
MERGES = True        # export merges the adapter into the base weights (merge_and_unload)
COST_TERMS = {"adapter": "lora"}  # doctorkit.cost.job.Job: rank-r matrices on lora.target_modules


def fit_advice(job) -> list:
    """Recipe changes that shrink this method's peak memory (doctorkit.cost.estimate.what_would_fit)."""
    if job.weight_bits >= 16:
        return [("method: qlora (4-bit base)", {"method": "qlora", "weight_bits": 4, "checkpointing": True})]
    return []


def validate(recipe) -> None:
    """Nothing beyond the recipe schema: lora.r >= 1 and 0 <= lora.dropout < 1 are its Field bounds."""


def load_kwargs(recipe) -> dict:
    return {}


def peft_config(recipe):
    from peft import LoraConfig  # peft (and transformers) load only when a model is built: cost/doctor stay light

    cfg = recipe.lora
    return LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=cfg.target_modules,
        use_dora=cfg.use_dora, use_rslora=cfg.use_rslora, bias="none", task_type="CAUSAL_LM",
    )


def wrap(model, recipe):
    validate(recipe)
    try:
        from peft import get_peft_model

        peft_model = get_peft_model(model, peft_config(recipe))
    except ValueError as err:  # e.g. target_modules that match nothing in this model
        raise DoctorKitError(f"lora.target_modules: {str(err).splitlines()[0]}") from None
    return set_adapter_dtype(peft_model, recipe)


def set_adapter_dtype(peft_model, recipe):
    """lora.adapter_dtype: the trainable adapter weights in the compute dtype (bf16) when the recipe asks (compute)
    or leaves it to the run (auto, when it computes in bf16), as torchtune trains them: weights, gradients and AdamW
    states at half the bytes, updates rounded to bf16 (loss: bench/results/lora-defaults-{qlora,lora}.json and
    adapter-dtype-curves.json). PEFT has no switch for this on 4-bit bases (autocast_adapter_dtype=False only skips
    its fp32 upcast of bf16 adapters, and on a bitsandbytes base they are made in fp32), hence the cast here.
    compute with fp16 is refused: the fp16 gradient scaler cannot unscale fp16 gradients."""
    import torch

    from doctorkit.model import resolve_dtype

    compute = resolve_dtype(recipe.dtype)   # what the trainer computes in (bf16 on Ampere+, fp32 on a CPU)
    if recipe.lora.adapter_dtype == "compute" and compute == torch.float16:
        raise DoctorKitError("lora.adapter_dtype: compute needs bf16 (or fp32); with fp16 the gradient scaler "
                             "cannot unscale fp16 adapter gradients: set lora.adapter_dtype: auto or dtype: bf16")
    if not recipe.lora.in_compute_dtype(bf16=compute == torch.bfloat16):
        return peft_model
    for param in peft_model.parameters():
        if param.requires_grad:
            param.data = param.data.to(compute)
    return peft_model


def load(base_model, run_dir: Path):
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, Path(run_dir) / "adapter")
