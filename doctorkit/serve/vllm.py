"""`--engine vllm`: serve the same runs with vLLM's OpenAI server (an existing engine for GPUs at scale).

We build vLLM's command line instead of importing vLLM (an optional extra: `pip install vllm`):
the base model, `--enable-lora` with one `--lora-modules NAME=PATH` per LoRA-family run, `--max-lora-rank` at
least the largest rank (vLLM's default 16 is below our QLoRA recipe's 64), the run's own tokenizer and chat
template, and tensor parallelism. The pre-flight says in one line what vLLM cannot take; those runs are served
by the built-in engine (python -m doctorkit.serve without --engine).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.errors import DoctorKitError

# Architectures of the model families DoctorKit supports that vLLM runs with LoRA (vLLM's model registry).
VLLM_LORA_ARCHITECTURES = {"Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                           "Glm4ForCausalLM", "GlmForCausalLM", "Qwen3MoeForCausalLM", "Qwen2MoeForCausalLM"}
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # the values vLLM accepts for --max-lora-rank
BUILTIN_HINT = "vLLM loads models from a folder or the hub; builtin models exist only inside DoctorKit"


@dataclass
class Plan:
    base: str                                   # model path / hub id for vLLM
    served_name: str                            # --served-model-name of the base
    tokenizer: str | None = None                # the run's tokenizer folder (its chat template comes with it)
    chat_template: str | None = None
    loras: list[tuple[str, str]] = field(default_factory=list)   # (name, adapter folder)
    max_rank: int = 0


def preflight(target: str, adapters: list[tuple[str, Path]]) -> Plan:
    """What vLLM will serve, or a one-line DoctorKitError naming what it cannot take."""
    from doctorkit.rundir import is_exported_model, is_run_dir, read_run_recipe
    from doctorkit.serve.models import display_name, same_model

    runs = []
    path = Path(target)
    if is_run_dir(path):
        runs.append((path.name, path))
        base = read_run_recipe(path).model
    elif is_exported_model(path):   # an exported (merged) folder: a plain model
        base = str(path)
    else:
        base = target
    runs += list(adapters)
    if base.startswith("builtin:"):
        raise DoctorKitError(f"--engine vllm: '{base}' is a builtin model; {BUILTIN_HINT}")
    check_architecture(base)
    plan = Plan(base, display_name(base))
    for name, run_dir in runs:
        recipe = read_run_recipe(run_dir)
        if not same_model(recipe.model, base):
            raise DoctorKitError(f"--engine vllm: {run_dir} was trained on '{recipe.model}', not '{base}'")
        adapter = check_lora_run(name, Path(run_dir), recipe)
        plan.loras.append((name, str(adapter)))
        plan.max_rank = max(plan.max_rank, json.loads((adapter / "adapter_config.json").read_text())["r"])
        if plan.tokenizer is None and (Path(run_dir) / "tokenizer").is_dir():
            plan.tokenizer = str(Path(run_dir) / "tokenizer")
            template = Path(run_dir) / "tokenizer" / "chat_template.jinja"
            plan.chat_template = str(template) if template.is_file() else None
    return plan


def check_lora_run(name: str, run_dir: Path, recipe) -> Path:
    from doctorkit.methods import get_method

    if not getattr(get_method(recipe.method), "PEFT_ADAPTER", False):
        raise DoctorKitError(f"--engine vllm: {run_dir} ({recipe.method}) is not a LoRA adapter and vLLM cannot "
                             f"serve it; serve it with the built-in engine (python -m doctorkit.serve {run_dir})")
    adapter = run_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("modules_to_save"):
        raise DoctorKitError(f"--engine vllm: {run_dir} trains whole modules too (modules_to_save: "
                             f"{config['modules_to_save']}), which vLLM's LoRA cannot load; export it "
                             f"(python -m doctorkit.export) and serve the merged folder, or use the built-in engine")
    if config.get("use_dora"):
        raise DoctorKitError(f"--engine vllm: {run_dir} is a DoRA adapter, which vLLM cannot load; export it "
                             f"(python -m doctorkit.export) or use the built-in engine")
    return adapter


def check_architecture(base: str) -> None:
    config = Path(base) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(base, "config.json")
        if not isinstance(cached, str):
            print(f"warning: --engine vllm: {base}: config.json not available offline; architecture not checked",
                  file=sys.stderr)
            return
        config = Path(cached)
    archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    if not set(archs) & VLLM_LORA_ARCHITECTURES:
        raise DoctorKitError(f"--engine vllm: {base} is {', '.join(archs) or 'of unknown architecture'}, which "
                             f"vLLM does not serve with LoRA here; use the built-in engine")


def command(plan: Plan, host: str, port: int, tensor_parallel: int = 1) -> list[str]:
    """The exact `vllm serve` argv (the API key, if any, travels in VLLM_API_KEY, not on the command line)."""
    argv = ["vllm", "serve", plan.base, "--host", host, "--port", str(port), "--served-model-name", plan.served_name]
    if plan.tokenizer:
        argv += ["--tokenizer", plan.tokenizer]
    if plan.chat_template:
        argv += ["--chat-template", plan.chat_template]
    if plan.loras:
        rank = next((r for r in VLLM_LORA_RANKS if r >= plan.max_rank), None)
        if rank is None:
            raise DoctorKitError(f"--engine vllm: LoRA rank {plan.max_rank} is above vLLM's largest, {VLLM_LORA_RANKS[-1]}")
        argv += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in plan.loras),
                 "--max-lora-rank", str(rank), "--max-loras", str(len(plan.loras))]
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel)]
    return argv


def main_vllm(args) -> int:
    from doctorkit.serve.cli import api_keys
    from doctorkit.serve.models import parse_adapter

    plan = preflight(args.target, [parse_adapter(a) for a in args.adapter])
    keys = api_keys(args.api_key_env, args.host)
    if len(keys) > 1:
        raise DoctorKitError("--engine vllm takes one API key; put a single key in the environment variable")
    argv = command(plan, args.host, args.port, args.tensor_parallel_size)
    print(" ".join(argv), flush=True)
    if args.dry_run:
        return 0
    if shutil.which("vllm") is None:
        raise DoctorKitError("vLLM is not installed (pip install vllm, on a CUDA machine); the command is above")
    env = dict(os.environ, **({"VLLM_API_KEY": keys[0]} if keys else {}))
    os.execvpe(argv[0], argv, env)
    return 0
