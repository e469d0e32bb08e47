"""Shared fixtures-in-code for the evaluation tests: a LoRA run directory made without training."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from doctorkit.recipe import Recipe, save_recipe


def make_lora_run(run_dir: Path) -> Path:
    """A run directory in the documented layout: LoRA adapter (random B, so it changes the outputs), tokenizer,
    recipe.yaml. Built directly so the evaluation tests need no training (end-to-end training is tested slow)."""
    from doctorkit.methods.lora import wrap
    from doctorkit.builtin.tiny import build_tiny

    recipe = Recipe(model="builtin:tiny", method="lora", output_dir=str(run_dir))
    recipe.lora.r = 4
    model, tokenizer = build_tiny()
    model = wrap(model, recipe)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    save_recipe(recipe, run_dir / "recipe.yaml")
    (run_dir / "metrics.json").write_text(json.dumps({"train_loss_last": 1.0}), encoding="utf-8")
    return run_dir


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file the kit wrote, read back independently of the kit's own readers."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
