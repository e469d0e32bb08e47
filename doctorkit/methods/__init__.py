"""Fine-tuning methods, one module each with the same shape (as PEFT's tuners/<method>/):

    validate(recipe)                 -> None, or DoctorKitError naming the bad key
    load_kwargs(recipe)              -> extra from_pretrained kwargs (quantization), {} if none
    wrap(model, recipe)              -> trainable model (base frozen)
    load(base_model, run_dir)        -> model with the trained parameters loaded back, for inference
    ADAPTER_CONFIG, ADAPTER_WEIGHTS  -> file names in RUN_DIR/adapter/ (checked before loading: doctorkit.rundir)
    RESUME_KEYS (optional)           -> recipe keys a checkpoint is tied to (--resume refuses a change)
    GRADIENT_CHECKPOINTING (optional) -> default when the recipe leaves gradient_checkpointing unset
    PEFT_ADAPTER                     -> True when adapter/ is a PEFT LoRA adapter: several load onto one base
                                        (mixed batches in doctorkit.serve) and vLLM serves it (--lora-modules)
    OPTIMIZER (optional)             -> default when train.optimizer is auto (adamw_torch if absent)

Adding a method means adding one module here and one line to METHODS.
"""
from __future__ import annotations

import importlib

from doctorkit.errors import DoctorKitError

METHODS = {
    "lora": "doctorkit.methods.lora",
    "dpo": "doctorkit.methods.dpo",
    "qlora": "doctorkit.methods.qlora",
    "ptuning": "doctorkit.methods.ptuning",
}


def get_method(name: str):
    if name not in METHODS:
        raise DoctorKitError(f"method '{name}' is not available (available: {', '.join(sorted(METHODS))})")
    return importlib.import_module(METHODS[name])


def resolve_gradient_checkpointing(recipe, method) -> bool:
    """The recipe's choice, or the method's default when unset (on for qlora, off otherwise)."""
    if recipe.gradient_checkpointing is None:
        recipe.gradient_checkpointing = getattr(method, "GRADIENT_CHECKPOINTING", False)
    return recipe.gradient_checkpointing


def resolve_optimizer(recipe) -> str:
    """train.optimizer, or when it says auto the method's OPTIMIZER (adamw_torch for a method that names none)."""
    if recipe.train.optimizer != "auto":
        return recipe.train.optimizer
    return getattr(get_method(recipe.method), "OPTIMIZER", "adamw_torch")
