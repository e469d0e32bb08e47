"""The run directory: the contract between training and everything after it (chat, demo, eval, export, cost).

    RUN_DIR/
      adapter/        trained parameters (PEFT format: LoRA / QLoRA adapter, P-tuning v2 prefix)
      tokenizer/      the tokenizer, chat template included
      recipe.yaml     the resolved recipe; `model` names the base, `method` how to load the adapter
      metrics.json    losses, token counts, speed, memory, skipped samples (see README)
      loss.png        training and eval loss curves
      tb/             TensorBoard logs
      checkpoints/    Trainer checkpoints for --resume

An exported model folder (config.json + weights, no recipe.yaml) loads the same way for chat and demo.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError
from doctorkit.noise import log_to

ADAPTER, TOKENIZER, RECIPE, METRICS, LOSS_PNG, TB, CHECKPOINTS = (
    "adapter", "tokenizer", "recipe.yaml", "metrics.json", "loss.png", "tb", "checkpoints")


@dataclass
class Run:
    model: torch.nn.Module
    tokenizer: object
    recipe: object | None   # None for an exported, standalone model folder
    run_dir: Path


def write_metrics(run_dir: Path, metrics: dict) -> None:
    path = Path(run_dir) / METRICS
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text(encoding="utf-8"))


def read_run_recipe(run_dir: str | Path):
    """The recipe of a finished run; one-line error for a missing or half-written run directory."""
    from doctorkit.recipe import load_recipe

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DoctorKitError(f"{run_dir}: run directory not found (train one: python -m doctorkit.train RECIPE)")
    if not (run_dir / RECIPE).is_file():
        raise DoctorKitError(f"{run_dir}: no {RECIPE} here; not a run directory, or its training did not finish")
    recipe = load_recipe(run_dir / RECIPE)
    if not (run_dir / ADAPTER).is_dir():
        raise DoctorKitError(f"{run_dir}: no {ADAPTER}/ here; the run did not finish (resume it with --resume)")
    return recipe


def load_run(run_dir: str | Path, device: str | None = None) -> Run:
    """Base model + trained parameters + tokenizer, in eval mode, ready to generate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer, resolve_dtype

    run_dir = Path(run_dir)
    if run_dir.is_dir():
        log_to(run_dir)   # chat / demo / evaluate: library messages go to RUN/library.log (doctorkit.noise)
    if (run_dir / "config.json").is_file() and not (run_dir / RECIPE).is_file():  # exported model folder
        model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=resolve_dtype("auto"))
        tokenizer = AutoTokenizer.from_pretrained(run_dir)
        return Run(_ready(model, device), tokenizer, None, run_dir)
    recipe = read_run_recipe(run_dir)
    method = get_method(recipe.method)
    model, tokenizer = load_model_and_tokenizer(recipe, for_training=False, extra_kwargs=method.load_kwargs(recipe))
    if (run_dir / TOKENIZER).is_dir():
        tokenizer = AutoTokenizer.from_pretrained(run_dir / TOKENIZER)
    model = method.load(model, run_dir)
    return Run(_ready(model, device), tokenizer, recipe, run_dir)


def _ready(model, device):
    if device and not getattr(model, "is_loaded_in_4bit", False) and not getattr(model, "is_loaded_in_8bit", False):
        model = model.to(device)
    model.eval()
    model.config.use_cache = True  # generation needs the cache (and P-tuning's prefix lives in it)
    return model
