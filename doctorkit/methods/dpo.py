"""DPO's policy: a LoRA adapter (on a 16-bit or a 4-bit base) trained on preference pairs by TRL's DPOTrainer.

The saved adapter is an ordinary LoRA adapter on the recipe's base model, so chat, demo, eval and export load a
DPO run exactly like a LoRA run. `dpo.base_method: qlora` loads the base in 4 bit: through the qlora method's
own `load_kwargs`/`wrap` when that method is installed, otherwise through the BitsAndBytesConfig below
(built from the recipe's `quantization` section, passed via load_model_and_tokenizer's extra_kwargs).
"""
from __future__ import annotations

from pathlib import Path

from doctorkit.errors import DoctorKitError
from doctorkit.methods import METHODS, get_method, lora

# TRL 1.16 DPOConfig.loss_type values we can drive from the recipe (exo_pair also needs label_smoothing > 0).
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def validate(recipe) -> None:
    cfg = recipe.dpo
    if cfg.beta <= 0:
        raise DoctorKitError(f"dpo.beta must be positive, got {cfg.beta}")
    if cfg.loss_type not in LOSS_TYPES:
        raise DoctorKitError(f"dpo.loss_type '{cfg.loss_type}' is not one of {', '.join(LOSS_TYPES)}")
    if cfg.rounds < 1:
        raise DoctorKitError(f"dpo.rounds must be at least 1, got {cfg.rounds}")
    if len(cfg.round_data) > cfg.rounds - 1:
        raise DoctorKitError(f"dpo.round_data names {len(cfg.round_data)} file(s) but only {cfg.rounds - 1} "
                             f"round(s) follow the first (round 1 reads data.path); raise dpo.rounds or drop files")
    if not 0 < cfg.max_prompt_len < recipe.train.max_seq_len:
        raise DoctorKitError(f"dpo.max_prompt_len ({cfg.max_prompt_len}) must be positive and below "
                             f"train.max_seq_len ({recipe.train.max_seq_len}) to leave room for the replies")
    lora.validate(recipe)


def is_4bit(recipe) -> bool:
    return recipe.dpo.base_method == "qlora"


def load_kwargs(recipe) -> dict:
    if not is_4bit(recipe):
        return {}
    if "qlora" in METHODS:
        return get_method("qlora").load_kwargs(recipe)
    from transformers import BitsAndBytesConfig

    from doctorkit.model import resolve_dtype

    q = recipe.quantization
    compute = resolve_dtype(recipe.dtype if q.compute_dtype == "auto" else q.compute_dtype)
    if q.bits == 8:
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=q.quant_type, bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute)}


def _prepare_kbit(model, recipe):
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)


def wrap(model, recipe):
    """A fresh adapter on the base: the DPO start (and, through TRL's frozen copy, the reference) is the base."""
    if is_4bit(recipe) and "qlora" in METHODS:
        return get_method("qlora").wrap(model, recipe)
    if is_4bit(recipe):
        model = _prepare_kbit(model, recipe)
    return lora.wrap(model, recipe)


def continue_adapter(model, adapter_dir: Path, recipe):
    """The adapter of an SFT run (or of the previous DPO round), loaded trainable as PEFT's 'default' adapter."""
    from peft import PeftModel

    if is_4bit(recipe):
        model = _prepare_kbit(model, recipe)
    return PeftModel.from_pretrained(model, Path(adapter_dir), is_trainable=True)


def load(base_model, run_dir: Path):
    return lora.load(base_model, run_dir)
