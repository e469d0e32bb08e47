"""P-tuning v2 method (`method: ptuning`): the recipe side of doctorkit.methods.ptuning.prefix.

Only the prefix is trained and saved (RUN_DIR/adapter/prefix_config.json + prefix.safetensors); the base may
be loaded in 4 or 8 bit (ptuning.quantization_bits) since it is never updated.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from doctorkit.errors import DoctorKitError

PEFT_ADAPTER = False  # our own prefix module, not PEFT: vLLM cannot serve it; doctorkit.serve batches it apart

CONFIG_FILE, WEIGHTS_FILE = "prefix_config.json", "prefix.safetensors"   # prefix.py names them too (it is copied into exports)
ADAPTER_CONFIG, ADAPTER_WEIGHTS = CONFIG_FILE, (WEIGHTS_FILE,)
RESUME_KEYS = ("ptuning.pre_seq_len", "ptuning.prefix_projection", "ptuning.prefix_hidden_size")
GRADIENT_CHECKPOINTING = False  # works with our prefix cache; recipes/ptuning.yaml turns it on for memory
SECTION = "ptuning"
SECTIONS = ("ptuning", "quantization")  # quantization: data type and compute dtype of a 4/8-bit base
MERGES = False  # the prefix adds attention positions, not weight deltas: export() writes prefix + loader
COST_TERMS = {"adapter": "prefix"}  # doctorkit.cost.job.Job: key/value prefixes in every layer


def weight_bits(recipe):
    return recipe.ptuning.quantization_bits or None


def cost_terms(recipe, shape) -> dict:
    return {"pre_seq_len": recipe.ptuning.pre_seq_len, **({"weight_bits": b} if (b := weight_bits(recipe)) else {})}


def fit_advice(job) -> list:
    """Recipe changes that shrink this method's peak memory (doctorkit.cost.estimate.what_would_fit)."""
    return [("ptuning.quantization_bits: 4", {"weight_bits": 4})] if job.weight_bits >= 16 else []


def export(recipe, run_dir: Path, out: Path, merged: bool) -> Path:
    from doctorkit.methods.ptuning.export_folder import export_prefix

    if merged:
        raise DoctorKitError(f"{run_dir}: a P-tuning v2 run cannot be exported --merged (its prefix adds "
                             f"attention positions, not weight changes); drop --merged to export prefix + loader")
    return export_prefix(recipe, run_dir, out)


def validate(recipe) -> None:
    cfg = recipe.ptuning
    if cfg.pre_seq_len <= 0:
        raise DoctorKitError(f"ptuning.pre_seq_len must be a positive number of prefix positions, got {cfg.pre_seq_len}")
    if cfg.prefix_projection and cfg.prefix_hidden_size <= 0:
        raise DoctorKitError(f"ptuning.prefix_hidden_size must be positive, got {cfg.prefix_hidden_size}")
    if recipe.data.packing:
        # A packed row holds several conversations; one prefix at the row start would be visible only to the
        # first of them in spirit and to all of them in the mask. Unpacked rows keep the method exact.
        raise DoctorKitError("method ptuning trains without packing (each sample needs its own prefix); "
                             "set data.packing=false")
    if cfg.quantization_bits:
        from doctorkit.methods.quantized import require_bnb

        require_bnb("ptuning.quantization_bits", cfg.quantization_bits)


def load_kwargs(recipe) -> dict:
    bits = recipe.ptuning.quantization_bits
    if not bits:
        return {}
    from doctorkit.methods.quantized import bnb_config, compute_dtype

    q = recipe.quantization  # 4-bit data type / double quant / compute dtype shared with qlora
    return {"quantization_config": bnb_config(bits, compute_dtype(q.compute_dtype, recipe.dtype),
                                              q.quant_type, q.double_quant)}


def prefix_config(model, recipe):
    from doctorkit.methods.ptuning.prefix import PrefixConfig  # transformers loads only with a model

    cfg = recipe.ptuning
    try:
        return PrefixConfig.for_model(model.config, cfg.pre_seq_len, cfg.prefix_projection, cfg.prefix_hidden_size,
                                      base_model=recipe.model)
    except AttributeError as err:  # remote-code models (ChatGLM3 and older) name their shapes differently
        raise DoctorKitError(f"method ptuning: model '{recipe.model}' has no standard attention shape in its "
                             f"config ({err}); use a native transformers model (Qwen2.5/3, GLM-4, Llama-3)") from None


def wrap(model, recipe):
    validate(recipe)
    from doctorkit.methods.ptuning.prefix import PrefixTunedModel

    model = PrefixTunedModel(model, prefix_config(model, recipe))
    if recipe.ptuning.prefix_projection:
        warn_projection(model)
    return model


def warn_projection(model) -> None:
    cfg = model.prefix_config
    plain = cfg.pre_seq_len * cfg.num_layers * 2 * cfg.width
    trained = sum(p.numel() for p in model.prefix_encoder.parameters())
    warnings.warn(f"ptuning.prefix_projection: {trained:,} trainable parameters instead of {plain:,} "
                  f"(x{trained / plain:.1f}); on a 6B model the MLP multiplies them about 30x. "
                  f"Turn it off unless small data makes training unstable.", stacklevel=2)


def load(base_model, run_dir: Path):
    from doctorkit.methods.ptuning.prefix import load_prefix_model

    return load_prefix_model(base_model, Path(run_dir) / "adapter")
