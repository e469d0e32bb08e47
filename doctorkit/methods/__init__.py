"""Fine-tuning methods: each one registered object that every command asks (as PEFT's tuners/<method>/ + mapping).

A method is any object (a module here; a class instance or a module of a user's own works the same) with:

    validate(recipe)                 -> None, or DoctorKitError naming the bad key
    load_kwargs(recipe)              -> extra from_pretrained kwargs (quantization), {} if none
    wrap(model, recipe)              -> trainable model (base frozen)
    load(base_model, run_dir)        -> model with the trained parameters loaded back, for inference
and, optional (their defaults are in DEFAULTS below, the one place they are written):
    ADAPTER_CONFIG, ADAPTER_WEIGHTS  -> file names in RUN_DIR/adapter/ (checked before loading: doctorkit.rundir)
    RESUME_KEYS                      -> recipe keys a checkpoint is tied to (--resume refuses a change)
    SECTION, CONFIG                  -> the recipe key of its own options and their pydantic Section class
    SECTIONS                         -> every recipe section it reads (default: SECTION alone); a recipe may
                                        hold a method's section only when its own method reads it
                                        (doctorkit.recipe checks it: one line naming the sections it reads)
    STAGE                            -> "sft" or "dpo": the training stage that runs it (doctorkit.stages)
    GRADIENT_CHECKPOINTING           -> default when the recipe leaves gradient_checkpointing unset
    PEFT_ADAPTER                     -> True when adapter/ is a PEFT adapter: several load onto one base
                                        (mixed batches in doctorkit.serve) and vLLM serves it (--lora-modules)
    MERGES                           -> True when export merges adapter/ into the base weights (PEFT's
                                        merge_and_unload); False: export(recipe, run_dir, out) writes the folder
    weight_bits(recipe)              -> 4 or 8 when the frozen base is loaded quantized, else None
    COST_TERMS                       -> fixed cost facts (DEFAULT_COST_TERMS: adapter kind, pairs per row,
                                        reference forward, loss head)
    cost_terms(recipe, shape)        -> doctorkit.cost.job.Job fields read from the recipe (weight bits, prefix
                                        length, own_trainable: the trainable-parameter count of a new kind)
    fit_advice(job)                  -> [(recipe change, Job change)] that shrink the peak (cost estimate)
    OPTIMIZER                        -> default when train.optimizer is auto

Adding a method: `register("name", obj)` (built-in ones: one line in METHODS). Nothing else changes.
"""
from __future__ import annotations

import importlib

from doctorkit.errors import DoctorKitError
from doctorkit.registry import Registered

METHODS = {
    "lora": "doctorkit.methods.lora",
    "dpo": "doctorkit.methods.dpo",
    "qlora": "doctorkit.methods.qlora",
    "ptuning": "doctorkit.methods.ptuning",
}

DEFAULTS = {
    "SECTION": None, "CONFIG": None, "SECTIONS": None, "STAGE": "sft", "GRADIENT_CHECKPOINTING": False,
    "PEFT_ADAPTER": False, "MERGES": False, "weight_bits": lambda recipe: None, "cost_terms": lambda recipe, shape: {},
    "COST_TERMS": {}, "fit_advice": lambda job: [],
    # PEFT's file names: a PEFT-based method (LoRA, IA3, ...) saves these
    "ADAPTER_CONFIG": "adapter_config.json", "ADAPTER_WEIGHTS": ("adapter_model.safetensors", "adapter_model.bin"),
    "RESUME_KEYS": (), "OPTIMIZER": "adamw_torch",
}
# What doctorkit.cost assumes of a method that says nothing (a method's COST_TERMS overrides these).
DEFAULT_COST_TERMS = {"adapter": "none", "pairs": False, "reference_forward": False,
                      "loss_head": "fused"}


class Method(Registered):
    """A registered method, with DEFAULTS filled in for what it leaves out. `name` is its recipe name."""

    DEFAULTS = DEFAULTS

    def reads(self) -> tuple[str, ...]:
        """The recipe sections this method reads: SECTIONS, or its own SECTION alone."""
        if self.SECTIONS is not None:
            return tuple(self.SECTIONS)
        return (self.SECTION,) if self.SECTION else ()

    def quantizes_base(self, recipe) -> bool:
        return self.weight_bits(recipe) is not None


def register(name: str, method) -> None:
    """Make `method: name` valid in recipes; `method` is an object (or a module path) with the shape above.
    A method with a CONFIG gets its recipe section SECTION (accepted only when the recipe chooses it)."""
    METHODS[name] = method
    impl = get_method(name)
    if impl.CONFIG is not None:
        from doctorkit.recipe import add_method_section
        add_method_section(impl.SECTION, impl.CONFIG)


def unregister(name: str) -> None:
    """Undo register (tests): the name and its recipe section are gone."""
    impl = get_method(name)
    del METHODS[name]
    if impl.CONFIG is not None:
        from doctorkit.recipe import remove_method_section
        remove_method_section(impl.SECTION)


def names() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise DoctorKitError(f"method '{name}' is not available (available: {', '.join(sorted(METHODS))})")
    impl = METHODS[name]
    return Method(name, importlib.import_module(impl) if isinstance(impl, str) else impl)


def section_readers() -> dict[str, list[str]]:
    """{recipe section: the registered methods that read it}; a section missing here is shared by all methods."""
    found: dict[str, list[str]] = {}
    for name in sorted(METHODS):
        for key in get_method(name).reads():
            found.setdefault(key, []).append(name)
    return found


def resolve_gradient_checkpointing(recipe) -> bool:
    """The recipe's choice, or when unset the method's default (on for qlora, off otherwise); a DPO run takes the
    default of the method it trains on top of (dpo.base_method). Training and the cost estimate both ask here."""
    if recipe.gradient_checkpointing is None:
        method = get_method(recipe.method)
        if hasattr(method, "base_method"):
            method = method.base_method(recipe)
        recipe.gradient_checkpointing = method.GRADIENT_CHECKPOINTING
    return recipe.gradient_checkpointing


def resolve_optimizer(recipe) -> str:
    """train.optimizer, or when it says auto the method's OPTIMIZER."""
    if recipe.train.optimizer != "auto":
        return recipe.train.optimizer
    return get_method(recipe.method).OPTIMIZER
