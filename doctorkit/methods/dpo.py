"""DPO's policy: a LoRA adapter (on a 16-bit or a 4-bit base) trained on preference pairs by TRL's DPOTrainer.

The saved adapter is an ordinary LoRA adapter on the recipe's base model, so chat, demo, eval and export load a
DPO run exactly like a LoRA run. `dpo.base_method` names the method whose base loading and adapter we use:
`lora`, or `qlora` (4/8-bit base through the qlora method's load_kwargs / wrap and the `quantization` keys).
"""
from __future__ import annotations

from pathlib import Path

from doctorkit.errors import DoctorKitError
from doctorkit.methods import get_method, lora

PEFT_ADAPTER = True  # the policy is a LoRA adapter (lora or qlora base method alike)
RESUME_KEYS = lora.RESUME_KEYS + ("dpo.base_method", "dpo.rounds")
SECTION = "dpo"
SECTIONS = ("dpo", "lora", "quantization")  # the adapter is lora's; quantization when dpo.base_method is qlora
STAGE = "dpo"        # trained by doctorkit.stages.dpo on preference pairs, not by the SFT stage
MERGES = True        # the policy is a LoRA adapter: export merges it like lora / qlora
# doctorkit.cost.job.Job: LoRA matrices, chosen + rejected per pair, a reference forward, full logits for the loss
COST_TERMS = {"adapter": "lora", "pairs": True, "reference_forward": True, "loss_head": "full"}
CONTINUES = ("lora", "qlora", "dpo")  # methods whose runs dpo.from_run can continue (their adapter is LoRA)

# TRL 1.16 DPOConfig.loss_type values we can drive from the recipe (exo_pair also needs label_smoothing > 0).
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def base_method(recipe):
    """The lora or qlora module: how the base is loaded and the adapter added."""
    return get_method(recipe.dpo.base_method)


def validate(recipe) -> None:
    cfg = recipe.dpo   # beta > 0 and rounds >= 1 are the recipe schema's Field bounds; what it cannot say is here
    if cfg.loss_type not in LOSS_TYPES:
        raise DoctorKitError(f"dpo.loss_type '{cfg.loss_type}' is not one of {', '.join(LOSS_TYPES)}")
    if len(cfg.round_data) > cfg.rounds - 1:
        raise DoctorKitError(f"dpo.round_data names {len(cfg.round_data)} file(s) but only {cfg.rounds - 1} "
                             f"round(s) follow the first (round 1 reads data.path); raise dpo.rounds or drop files")
    if not 0 < cfg.max_prompt_len < recipe.train.max_seq_len:
        raise DoctorKitError(f"dpo.max_prompt_len ({cfg.max_prompt_len}) must be positive and below "
                             f"train.max_seq_len ({recipe.train.max_seq_len}) to leave room for the replies")
    base_method(recipe).validate(recipe)


def is_quantized(recipe) -> bool:
    return weight_bits(recipe) is not None


def weight_bits(recipe):
    return get_method(recipe.dpo.base_method).weight_bits(recipe)


def base_method_of(run_recipe) -> str:
    """The base method a DPO run continuing `run_recipe`'s run uses: its own, or its dpo.base_method."""
    return run_recipe.dpo.base_method if run_recipe.method == "dpo" else run_recipe.method


def load_kwargs(recipe) -> dict:
    return base_method(recipe).load_kwargs(recipe)


def wrap(model, recipe):
    """A fresh adapter on the base: the DPO start (and, through TRL's frozen copy, the reference) is the base."""
    return base_method(recipe).wrap(model, recipe)


def continue_adapter(model, adapter_dir: Path, recipe):
    """The adapter of an SFT run (or of the previous DPO round), loaded trainable as PEFT's 'default' adapter."""
    from peft import PeftModel

    from doctorkit.methods.quantized import prepare_quantized_base

    if is_quantized(recipe):  # the same preparation qlora.wrap gives a fresh adapter
        model = prepare_quantized_base(model, recipe)
    return lora.set_adapter_dtype(PeftModel.from_pretrained(model, Path(adapter_dir), is_trainable=True), recipe)


def load(base_model, run_dir: Path):
    return lora.load(base_model, run_dir)
