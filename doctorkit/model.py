"""Load the base model and tokenizer a recipe names: `builtin:tiny`, a local folder, or a hub id.

A model that cannot be found or fetched is one clear error naming it, never a hub traceback.
Quantized loading (QLoRA, 4/8-bit P-tuning) asks the method for its `from_pretrained` extras.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from doctorkit.builtin.tiny import BUILTIN_PREFIX, build_tiny, build_tiny_tokenizer
from doctorkit.errors import DoctorKitError
from doctorkit.offline import missing_hub_model, missing_model_hint
from doctorkit.rundir import TOKENIZER

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_dtype(name: str = "auto") -> torch.dtype:
    """auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if name != "auto":
        return DTYPES[name]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__


def _not_found(name: str, err: Exception, key: str = "model") -> DoctorKitError:
    if missing_hub_model(name):   # a hub id that is not on this machine: where to put it
        return DoctorKitError(f"{key} '{name}' is not on this machine; {missing_model_hint(name, key)}")
    quickstart = ", or try `make quickstart` (model: builtin:tiny) offline" if key == "model" else ""
    return DoctorKitError(f"{key} '{name}' could not be loaded ({_first_line(err)}). Pass a local model folder with "
                          f"--set {key}=/path/to/model{quickstart}")


def load_tokenizer(name: str | Path, trust_remote_code: bool = False, chat: bool = True, offline: bool = False,
                   key: str = "model"):
    """The one tokenizer loader of the kit: builtin:tiny, a run directory (the tokenizer/ it saved), a model or
    tokenizer folder, or a hub id; a one-line DoctorKitError naming recipe `key` when it cannot be loaded.

    chat: the tokenizer must carry a chat template (a chat model's; False where tokens are only counted, or for
    the seq2seq translation student). offline: local files only, even when downloads are allowed (cost estimates).
    """
    name = str(name)
    if name.startswith(BUILTIN_PREFIX):
        try:
            return build_tiny_tokenizer(name[len(BUILTIN_PREFIX):])
        except ValueError as err:
            raise DoctorKitError(str(err)) from None
    run_tokenizer = Path(name) / TOKENIZER
    source = str(run_tokenizer) if run_tokenizer.is_dir() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=offline)
    except Exception as err:  # OSError, HF hub errors, ValueError for unknown types: all mean "cannot use it"
        if Path(name).is_dir():   # a folder the user gave: what is wrong with it, no "pass a folder" hint
            raise DoctorKitError(f"{key} '{name}': cannot load a tokenizer from this folder ({_first_line(err)})"
                                 ) from None
        raise _not_found(name, err, key) from None
    if chat and tokenizer.chat_template is None:
        raise DoctorKitError(f"{key} '{name}': its tokenizer has no chat template; use a chat/instruct model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(recipe, for_training: bool = True, extra_kwargs: dict | None = None):
    """(model, tokenizer) for recipe.model, in the recipe's dtype and attention implementation."""
    dtype = resolve_dtype(recipe.dtype)
    name = recipe.model
    if name.startswith(BUILTIN_PREFIX):
        try:
            model, tokenizer = build_tiny(name[len(BUILTIN_PREFIX):], dtype=dtype)
        except ValueError as err:
            raise DoctorKitError(str(err)) from None
        if extra_kwargs and extra_kwargs.get("quantization_config") is not None:
            model = _quantize_builtin(model, extra_kwargs["quantization_config"])
    else:
        if not Path(name).exists() and "/" not in name:
            raise _not_found(name, FileNotFoundError("no such folder, and not a hub id like org/name"))
        tokenizer = load_tokenizer(name, recipe.trust_remote_code)
        kwargs = dict(dtype=dtype, trust_remote_code=recipe.trust_remote_code, **(extra_kwargs or {}))
        if recipe.attn_implementation != "auto":
            kwargs["attn_implementation"] = recipe.attn_implementation
        if torch.cuda.is_available():
            kwargs.setdefault("device_map", {"": torch.cuda.current_device()})
        try:
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        except ImportError as err:  # e.g. flash_attention_2 requested but not installed
            raise DoctorKitError(f"model '{name}': {str(err).splitlines()[0]}") from None
        except Exception as err:
            raise _not_found(name, err) from None
    if extra_kwargs and getattr(extra_kwargs.get("quantization_config"), "load_in_4bit", False):
        from doctorkit.methods.quantized import keep_off_packed_cpu_path

        keep_off_packed_cpu_path(model)   # one 4-bit arithmetic on every CPU; why: in that function
    if recipe.attn_implementation != "auto" and name.startswith(BUILTIN_PREFIX):
        model.set_attn_implementation(recipe.attn_implementation)
    if for_training:
        model.config.use_cache = False  # the KV cache is useless while training and costs memory
    return model, tokenizer


def _quantize_builtin(model, quantization_config):
    """builtin:tiny is built in memory, so quantize it the way from_pretrained would: save and reload it.

    Going through from_pretrained keeps one code path for real and embedded models (bitsandbytes layers,
    k-bit preparation) instead of hand-replacing Linear layers here.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="doctorkit-tiny-") as folder:
        model.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization_config,
                                                    dtype=model.dtype)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their logical element count."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if getattr(param, "quant_state", None) is not None:  # bnb packs two 4-bit values per byte
            n *= 2
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total
