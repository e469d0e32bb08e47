"""What the server serves: TARGET (a run directory, an exported model folder or a base model) plus
`--adapter NAME=RUN_DIR` runs, each answering under its own name in the request's `model` field.

A Backend is one model in memory with the names served from it:
- LoRA-family runs (their method's PEFT_ADAPTER is True) load as named PEFT adapters onto ONE base; the base
  answers under its own name through PEFT's "__base__" slot, so any mix of them shares a batch
  (`generate(adapter_names=[...])`).
- A P-tuning v2 run is our own prefix module (doctorkit.methods.ptuning), not a PEFT adapter: it wraps its own
  copy of the base. Its prefix switch is model-wide, so its batches hold one served name at a time.
Loading goes through the same functions as chat, the demo and evaluation (doctorkit.evaluate.loading,
doctorkit.rundir), so every method loads exactly as it was trained.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.errors import DoctorKitError

BASE_SLOT = "__base__"   # PEFT's adapter name for "no adapter" in a mixed batch


@dataclass
class Served:
    """One name a client can put in `model`."""
    name: str
    adapter: str | None           # PEFT adapter name, or None for the model as loaded / its base
    base: bool                    # True: the base model with any adapter switched off
    tokenizer: object             # the run's own tokenizer: its chat template formats the prompt
    system_prompt: str | None     # the run's data.system_prompt, used when a request brings no system message
    data: object                  # the run's DataConfig (knowledge keys), or None
    backend: "Backend | None" = None


@dataclass
class Backend:
    model: object
    label: str
    served: list[Served] = field(default_factory=list)

    @property
    def mixes_adapters(self) -> bool:
        from peft import PeftModel
        return isinstance(self.model, PeftModel)

    def batch_key(self, served: Served):
        """Requests whose keys are equal may share one generate() call."""
        return None if self.mixes_adapters else served.base

    def generate_context(self, batch: list[Served]) -> tuple[contextlib.AbstractContextManager, dict]:
        """How to run a batch: a context manager around generate() and extra generate() kwargs."""
        if self.mixes_adapters:
            names = [s.adapter if s.adapter and not s.base else BASE_SLOT for s in batch]
            if len(set(names)) > 1:
                return contextlib.nullcontext(), {"adapter_names": names}
            # One adapter for the whole batch: switch to it instead, since adapter_names' per-layer hooks cost
            # about a third of the speed of a tiny model on CPU (measured: 51 -> 33 tokens/s at batch 1).
            if names[0] == BASE_SLOT:
                return self.model.disable_adapter(), {}
            self.model.set_adapter(names[0], inference_mode=True)
            return contextlib.nullcontext(), {}
        if batch[0].base and callable(getattr(self.model, "disable_adapter", None)):
            return self.model.disable_adapter(), {}
        return contextlib.nullcontext(), {}


def _method(recipe):
    from doctorkit.methods import get_method
    return get_method(recipe.method)


def parse_adapter(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise DoctorKitError(f"--adapter {text}: expected NAME=RUN_DIR")
    return name.strip(), Path(path.strip())


def load_served(target: str, adapters: list[tuple[str, Path]], device: str | None = None) -> dict[str, Served]:
    """Every served name -> Served (its backend attached). Raises DoctorKitError on any bad input, before
    the slow part where possible."""
    from doctorkit.evaluate.loading import load_target
    from doctorkit.rundir import is_run_dir, read_run_recipe

    recipes = {name: read_run_recipe(path) for name, path in adapters}   # one-line errors first
    main = load_target(target, device=device)
    recipe = read_run_recipe(main.run_dir) if main.run_dir is not None and is_run_dir(main.run_dir) else None
    base_id = recipe.model if recipe is not None else main.label
    base_name = display_name(base_id)
    served: dict[str, Served] = {}

    def add(backend: Backend, s: Served) -> None:
        if s.name in served:
            raise DoctorKitError(f"model name '{s.name}' is served twice; rename one --adapter NAME=...")
        s.backend = backend
        backend.served.append(s)
        served[s.name] = s

    data = recipe.data if recipe is not None else None
    backend = Backend(main.model, main.label)
    shared = None   # the backend LoRA adapters attach to
    if recipe is None:   # a base model or an exported folder: the model itself
        add(backend, Served(base_name, None, False, main.tokenizer, None, None))
        shared = backend
    else:
        from peft import PeftModel
        run_name = Path(main.run_dir).name
        adapter = "default" if isinstance(main.model, PeftModel) else None
        add(backend, Served(run_name, adapter, False, main.tokenizer, main.system_prompt, data))
        add(backend, Served(base_name, None, True, main.tokenizer, None, None))
        shared = backend if adapter else None

    for name, path in adapters:
        run_recipe = recipes[name]
        if not same_model(run_recipe.model, base_id):
            raise DoctorKitError(f"--adapter {name}={path}: trained on '{run_recipe.model}', but the server's base "
                                 f"is '{base_id}'; one server serves adapters of one base")
        tokenizer = _run_tokenizer(path, main.tokenizer)
        entry = Served(name, name, False, tokenizer, run_recipe.data.system_prompt, run_recipe.data)
        if getattr(_method(run_recipe), "PEFT_ADAPTER", False):
            shared = shared or _plain_base_backend(base_id, device)
            shared.model = _attach_lora(shared.model, path, name)
            add(shared, entry)
        else:   # P-tuning: its own model (see the module docstring); its base name is served by the others
            from doctorkit.rundir import load_run
            run = load_run(path, device=device)
            entry.adapter = None
            add(Backend(run.model, name), entry)
    return served


def display_name(model_id: str) -> str:
    """How a base is named to clients: a hub id or builtin name as is, a local folder by its own name."""
    return Path(model_id).name if Path(model_id).is_dir() else model_id


def same_model(a: str, b: str) -> bool:
    return a == b or (Path(a).is_dir() and Path(b).is_dir() and Path(a).resolve() == Path(b).resolve())


def _run_tokenizer(run_dir: Path, fallback):
    from doctorkit.model import load_tokenizer
    from doctorkit.rundir import TOKENIZER
    tokenizer = load_tokenizer(run_dir) if (Path(run_dir) / TOKENIZER).is_dir() else fallback
    if len(tokenizer) != len(fallback):
        raise DoctorKitError(f"{run_dir}: its tokenizer has {len(tokenizer)} tokens, the base's {len(fallback)}; "
                             f"adapters on one base must share its vocabulary")
    return tokenizer


def _plain_base_backend(base_id: str, device) -> Backend:
    """A fresh copy of the base for LoRA adapters when TARGET's own model cannot take them (P-tuning target)."""
    from doctorkit.evaluate.loading import load_target
    return Backend(load_target(base_id, device=device).model, display_name(base_id))


def _attach_lora(model, run_dir: Path, name: str):
    from peft import PeftModel

    from doctorkit.rundir import ADAPTER
    if isinstance(model, PeftModel):
        model.load_adapter(Path(run_dir) / ADAPTER, adapter_name=name)
        return model
    return PeftModel.from_pretrained(model, Path(run_dir) / ADAPTER, adapter_name=name).eval()
