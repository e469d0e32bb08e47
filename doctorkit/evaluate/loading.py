"""What to evaluate: a run directory (base + adapter through doctorkit.rundir.load_run, so every training
method loads the same way), an exported model folder, or a plain model (hub id, local folder, builtin:tiny)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError
from doctorkit.rundir import ADAPTER, RECIPE, is_exported_model, is_run_dir


@dataclass
class Target:
    model: torch.nn.Module
    tokenizer: object
    label: str                  # how reports name it
    system_prompt: str | None   # the run's data.system_prompt: evaluate with the prompt it was trained with
    run_dir: Path | None        # where results go by default (None for a plain model)


def has_adapter(model) -> bool:
    """True for a PEFT model (LoRA, QLoRA, P-tuning v2): its base can be evaluated with the adapter off."""
    return callable(getattr(model, "disable_adapter", None))  # PeftModel, and PrefixTunedModel by the same name


def load_target(name: str, device: str | None = None) -> Target:
    from doctorkit.rundir import load_run

    device = device or ("cuda" if torch.cuda.is_available() else None)
    path = Path(name)
    if path.is_dir():
        if not is_run_dir(path) and not is_exported_model(path):
            raise DoctorKitError(f"{path}: holds no model (neither a run directory with {RECIPE} and {ADAPTER}/, "
                                 f"nor a model folder with config.json)")
        run = load_run(path, device=device)
        system = run.recipe.data.system_prompt if run.recipe is not None else None
        return Target(run.model, run.tokenizer, str(path), system, path)
    if path.suffix in (".yaml", ".yml", ".json", ".jsonl") or (path.exists() and not path.is_dir()):
        raise DoctorKitError(f"{name}: give a run directory or a model (hub id, folder, builtin:tiny), not a file")
    return _load_plain_model(name, device)


def _load_plain_model(name: str, device: str | None) -> Target:
    from doctorkit.model import load_model_and_tokenizer
    from doctorkit.recipe import Recipe

    model, tokenizer = load_model_and_tokenizer(Recipe(model=name), for_training=False)
    if device and not getattr(model, "hf_device_map", None):
        model = model.to(device)
    model.eval()
    model.config.use_cache = True
    return Target(model, tokenizer, name, None, None)
