"""Loss curves of LoRA adapters in fp32 (PEFT's default) and in the bf16 compute dtype (lora.adapter_dtype: compute).

    python -m bench.adapter_dtype [--model small-llama] [--steps 80] [--out bench/results/adapter-dtype-curves.json]

Both arms train LoRA (r=16, all linear layers, AdamW) over the same bf16 base, data, seed and steps at the recipes'
learning rate (2e-4, where rounding updates to bf16 matters most), each in a fresh process. compute halves the bytes
of the adapters, their gradients and AdamW states (doctorkit.cost); the question is whether the loss stays the same.
Runs on a CPU (bf16 weights, no autocast), so it checks the optimizer's bf16 rounding, not GPU kernels.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from bench.curves import plot, tail_mean, train_curve
from bench.data import make_conversations, write_jsonl
from bench.models import model_path

RESULTS = Path(__file__).parent / "results"
ARMS = {"fp32": ["lora.adapter_dtype=fp32"], "compute": ["lora.adapter_dtype=compute"]}
TOLERANCE = 0.02   # the same criterion as bench.lean_loss: last quarter's mean loss within 2%


def train_arm(name: str, model: str, data: Path, steps: int, workdir: Path) -> list[dict]:
    return train_curve(name, workdir / name, [
        f"model={model}", "method=lora", "dtype=bf16", f"data.path={data}", "data.val_ratio=0", "data.packing=true",
        f"train.max_steps={steps}", "train.max_seq_len=256", "train.batch_size=8", "train.learning_rate=2e-4",
        "train.warmup_ratio=0", "train.optimizer=adamw_torch", "lora.r=16", "lora.alpha=32", *ARMS[name]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.adapter_dtype", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-llama")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--out", type=Path, default=RESULTS / "adapter-dtype-curves.json")
    args = p.parse_args(argv)
    model = model_path(args.model)
    with tempfile.TemporaryDirectory(prefix="doctorkit-adapter-dtype-") as tmp:
        data = write_jsonl(make_conversations(args.steps * 8 * 3, seed=1), Path(tmp) / "data.jsonl")
        curves = {name: train_arm(name, model, data, args.steps, Path(tmp)) for name in ARMS}
    fp32, compute = tail_mean(curves["fp32"]), tail_mean(curves["compute"])
    difference = abs(compute - fp32) / fp32
    result = {
        "command": "python -m bench." + Path(__file__).stem + " " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs while measured)",
        "model": args.model, "method": "lora r=16 all-linear over a bf16 base, AdamW, lr 2e-4", "steps": args.steps,
        "arms": ARMS, "first_loss": {k: v[0]["loss"] for k, v in curves.items()},
        "tail_mean_loss": {"fp32": fp32, "compute": compute},
        "relative_difference": difference, "tolerance": TOLERANCE, "same_loss": difference <= TOLERANCE,
        "curves": curves,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot(curves, args.out.with_suffix(".png"), f"LoRA on {args.model}: fp32 vs bf16 (compute) adapters",
         "compute", "fp32")
    print(f"tail-mean loss fp32 {fp32:.4f}, compute {compute:.4f} ({difference:.2%}, tolerance {TOLERANCE:.0%}) "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
