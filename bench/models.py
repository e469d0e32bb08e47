"""Models the benchmark trains: the embedded tiny model, a ~20M Llama, and real 1.5B/7B shapes for GPUs.

All weights are random (built offline from a config, fixed seed): throughput and memory depend on the
shapes, not on what the weights know. Non-builtin models are written once to a folder with the embedded
tokenizer, so both arms load them through the same `from_pretrained` path a real model takes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.cost.shapes import KNOWN

CACHE = Path(__file__).parent / ".cache" / "models"


def _small_llama(vocab: int) -> LlamaConfig:
    # ~20M parameters: 12 layers of 384 wide with grouped-query attention, like a scaled-down Llama-3
    return LlamaConfig(vocab_size=vocab, hidden_size=384, intermediate_size=1024, num_hidden_layers=12,
                       num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False)


def _qwen25_1_5b(vocab: int) -> Qwen2Config:
    # shapes from Qwen2.5-1.5B-Instruct's config.json (the cost estimator's table, doctorkit/cost/shapes.py)
    return Qwen2Config(**KNOWN["qwen2.5-1.5b"].config_kwargs(), max_position_embeddings=32768, rope_theta=1e6)


def _qwen25_7b(vocab: int) -> Qwen2Config:
    # shapes from Qwen2.5-7B-Instruct's config.json (the cost estimator's table, doctorkit/cost/shapes.py)
    return Qwen2Config(**KNOWN["qwen2.5-7b"].config_kwargs(), max_position_embeddings=32768, rope_theta=1e6)


BUILDERS = {"small-llama": _small_llama, "qwen2.5-1.5b-shape": _qwen25_1_5b, "qwen2.5-7b-shape": _qwen25_7b}
MODEL_NAMES = ["builtin:tiny", *BUILDERS]


def model_path(name: str) -> str:
    """What a recipe's `model` key should say for this benchmark model (built on first use)."""
    if name.startswith("builtin:"):
        return name
    if name not in BUILDERS:
        raise ValueError(f"unknown benchmark model '{name}' (available: {', '.join(MODEL_NAMES)})")
    folder = CACHE / name
    if not (folder / "config.json").is_file():
        build_folder(name, folder)
    return str(folder)


def build_folder(name: str, folder: Path) -> None:
    tokenizer = build_tokenizer("chatml")
    config = BUILDERS[name](len(tokenizer))
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config.bos_token_id = None
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda" if on_gpu else "cpu"):  # initialising 7B on a GPU takes seconds, on a CPU minutes
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def parameter_count(name: str) -> int:
    """Total parameters, counted on the meta device (nothing is built or written)."""
    if name.startswith("builtin:"):
        from doctorkit.builtin.tiny import build_tiny
        return sum(p.numel() for p in build_tiny()[0].parameters())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(BUILDERS[name](len(build_tokenizer("chatml"))))
    return sum(p.numel() for p in model.parameters())
