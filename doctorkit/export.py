"""Export a run for serving: `python -m doctorkit.export RUN_DIR --out DIR [--merged]`.

LoRA / QLoRA: the adapter is merged into the base weights and DIR is a standalone Hugging Face model folder
(config, safetensors weights, tokenizer with its chat template): `AutoModelForCausalLM.from_pretrained(DIR)`
works with no PEFT and no DoctorKit, and so do vLLM, TGI, llama.cpp converters, chat and the demo.
QLoRA trained against the 4-bit base, so that base is loaded in 4 bit as in training and dequantized to
16/32 bit before merging: the merged model computes what the adapter model computed.

P-tuning v2 cannot be merged (its prefix adds attention positions, not weight deltas): DIR gets the prefix,
the tokenizer and a small loader (load_ptuning.py + ptuning_prefix.py) that attaches it to the base model.

DIR is written whole under a temporary name next to it and renamed into place at the end (doctorkit.atomic):
it exists only once complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from doctorkit import atomic
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.noise import log_to


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m doctorkit.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory written by doctorkit.train")
    parser.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    parser.add_argument("--merged", action="store_true",
                        help="require a merged standalone model (the default for LoRA/QLoRA; P-tuning cannot be merged)")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default=None,
                        help="dtype of the merged weights (default: the run's dtype)")
    return parser.parse_args(argv)


def _check_out(out: Path) -> None:
    """Before anything loads: --out must be new (or an empty folder) in a place we can write."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DoctorKitError(f"{out}: already exists and is not empty; choose another --out")
    atomic.check_writable(out, "--out")


def load_base(recipe, run_dir: Path, quantized: bool):
    """The run's base model, with the run directory named in the error when it is gone."""
    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer

    extra = get_method(recipe.method).load_kwargs(recipe) if quantized else None  # the base as trained
    try:
        model, _ = load_model_and_tokenizer(recipe, for_training=False, extra_kwargs=extra)
    except DoctorKitError as err:
        raise DoctorKitError(f"{run_dir}: the run's base model is missing — {err}") from None
    return model


def export_merged(recipe, run_dir: Path, out: Path, dtype_name: str | None) -> Path:
    from peft import PeftModel

    from doctorkit.methods import get_method
    from doctorkit.model import load_tokenizer, resolve_dtype
    from doctorkit.rundir import ADAPTER, loading

    quantized = get_method(recipe.method).quantizes_base(recipe)
    model = load_base(recipe, run_dir, quantized)
    if quantized:  # weights as the adapter saw them during training, now in plain 16/32-bit tensors
        model = model.dequantize()
    with loading(run_dir / ADAPTER):
        model = PeftModel.from_pretrained(model, run_dir / ADAPTER).merge_and_unload()
    model = model.to(resolve_dtype(dtype_name or recipe.dtype))
    with atomic.folder(out) as folder:  # a kill or a full disk leaves no half-written --out behind
        model.save_pretrained(folder)
        load_tokenizer(run_dir, recipe.trust_remote_code).save_pretrained(folder)   # the run's tokenizer/
    print(f"exported {recipe.method} run {run_dir} merged into {recipe.model}: {out} "
          f"(standalone: AutoModelForCausalLM.from_pretrained('{out}'), no PEFT needed)")
    return out


def export(run_dir: str | Path, out: str | Path, merged: bool = False, dtype: str | None = None) -> Path:
    from doctorkit.methods import get_method
    from doctorkit.rundir import read_run_recipe

    run_dir, out = Path(run_dir), Path(out)
    recipe = read_run_recipe(run_dir)  # checks the adapter files against the recipe's method (rundir.check_adapter)
    _check_out(out)
    log_to(run_dir)   # library messages of the merge go to RUN/library.log (doctorkit.noise)
    method = get_method(recipe.method)
    if not method.MERGES:  # the method writes its own export folder (P-tuning: prefix + loader)
        with atomic.disk_errors(out.parent):
            return method.export(recipe, run_dir, out, merged)
    if not (run_dir / "adapter" / "adapter_config.json").is_file():  # LoRA-family (PEFT) adapters merge
        raise DoctorKitError(f"{run_dir}: its adapter/ is not a PEFT LoRA adapter; cannot merge method '{recipe.method}'")
    with atomic.disk_errors(out.parent):
        return export_merged(recipe, run_dir, out, dtype)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    export(args.run_dir, args.out, merged=args.merged, dtype=args.dtype)
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
