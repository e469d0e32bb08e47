"""Loss curves with the lean memory defaults against the previous ones, same data, seed, optimizer and steps.

    python -m bench.lean_loss [--model small-llama] [--steps 80] [--dtype auto] [--out bench/results/lean-loss-curves.json]

lean (today's defaults): embeddings, lm_head and norms left in the compute dtype (train.upcast_fp32: false) and the
chunked cross-entropy (train.loss: lean). previous: peft's prepare_model_for_kbit_training fp32 upcast
(train.upcast_fp32: true) and the model's own full-logit loss (train.loss: full). Both arms train QLoRA (NF4 base)
on the ~20M bench model, each in a fresh process, with the same optimizer (--optimizer, fp32 AdamW by default: the
8-bit AdamW that QLoRA picks by default is a separate question, not arithmetic-equal, and not compared here).
--dtype auto is fp32 on a CPU and bf16 on a GPU. Writes the curves (JSON) and a picture next to it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.curves import plot, tail_mean, train_curve
from bench.data import make_conversations, write_jsonl
from bench.models import model_path

RESULTS = Path(__file__).parent / "results"
ARMS = {
    "lean": [],
    "previous": ["train.upcast_fp32=true", "train.loss=full"],
}
# The tolerance follows from the arithmetic of the compute dtype.
# fp32 (CPU): the upcast casts nothing (every weight outside the NF4 linears is fp32 already), and the chunked loss
# is the same cross-entropy summed in another order (per chunk of supervised positions, then the chunks). Such
# reorderings change a loss by a few fp32 ulps (~1e-7 relative) and a gradient by ~1e-6 relative; a few dozen Adam
# steps of lr 1e-3 carry that into the weights without growing it by orders of magnitude. So every step's loss must
# agree within 1e-4 relative: 100x above that noise, and far below what a wrong reduction (a mean over the wrong
# token count moves the loss by the ratio of counts) or a dropped position would do.
# bf16 (GPU): the arms then differ in rounding, not just order: bf16 keeps 8 significant bits (2^-9 = 0.2% relative
# per value) and the lean arm keeps the head and embeddings in bf16 where the previous one computes them in fp32.
# The per-step curves are then expected to drift apart like two seeds; over the last quarter of the run, mean losses
# within 2% count as "the same loss" (the step-to-step noise of one arm over that window at batch 8 on this data).
TOLERANCE = {"float32": ("every step, relative", 1e-4), "bfloat16": ("last-quarter mean, relative", 0.02)}


def train_arm(name: str, model: str, data: Path, steps: int, workdir: Path, dtype: str, optimizer: str) -> list[dict]:
    return train_curve(name, workdir / name, [
        f"model={model}", "method=qlora", f"dtype={dtype}", f"train.optimizer={optimizer}", f"data.path={data}",
        "data.val_ratio=0", "data.packing=true", f"train.max_steps={steps}", "train.max_seq_len=256",
        "train.batch_size=8", "train.learning_rate=1e-3", "train.warmup_ratio=0", "lora.r=16", "lora.alpha=32",
        *ARMS[name]])


def compare(curves: dict, dtype_name: str) -> dict:
    lean, previous = curves["lean"], curves["previous"]
    rule, tolerance = TOLERANCE[dtype_name]
    per_step = [abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(lean, previous)]
    tail = abs(tail_mean(lean) - tail_mean(previous)) / tail_mean(previous)
    measured = max(per_step) if rule.startswith("every step") else tail
    return {"tail_mean_loss": {"lean": tail_mean(lean), "previous": tail_mean(previous)},
            "max_relative_difference_per_step": max(per_step), "relative_difference_of_tail_means": tail,
            "rule": rule, "tolerance": tolerance, "same_loss": len(lean) == len(previous) and measured <= tolerance}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lean_loss", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-llama")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--out", type=Path, default=RESULTS / "lean-loss-curves.json")
    p.add_argument("--dtype", default="auto", help="auto: fp32 on a CPU, bf16 on a GPU")
    p.add_argument("--optimizer", default="adamw_torch", help="the same in both arms")
    args = p.parse_args(argv)
    model = model_path(args.model)
    from doctorkit.model import resolve_dtype
    dtype_name = str(resolve_dtype(args.dtype)).removeprefix("torch.")
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="doctorkit-lean-") as tmp:
        data = write_jsonl(make_conversations(args.steps * 8 * 3, seed=1), Path(tmp) / "data.jsonl")
        curves = {name: train_arm(name, model, data, args.steps, Path(tmp), args.dtype, args.optimizer) for name in ARMS}
    verdict = compare(curves, dtype_name)
    result = {
        "command": "python -m bench." + Path(__file__).stem + " " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs while measured (load average "
                   f"{load:.1f} at the start), {time.perf_counter() - started:.0f} s for both arms",
        "model": args.model, "method": "qlora (NF4)", "compute_dtype": dtype_name, "optimizer": args.optimizer,
        "steps": args.steps, "arms": ARMS, **verdict, "curves": curves,
    }
    if dtype_name == "float32":
        result["note"] = ("fp32 compute: train.upcast_fp32 casts nothing (embeddings, lm_head and norms are fp32 "
                          "already), so this measures the chunked loss against the full loss only. Whether keeping "
                          "them in bf16 costs loss on a GPU is not measured by this run.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot(curves, args.out.with_suffix(".png"), f"QLoRA on {args.model} ({dtype_name}): lean defaults vs previous",
         "lean", "previous")
    print(f"lean vs previous: max per-step {verdict['max_relative_difference_per_step']:.2e}, tail means "
          f"{verdict['relative_difference_of_tail_means']:.2e} ({verdict['rule']} <= {verdict['tolerance']:g}: "
          f"{'same' if verdict['same_loss'] else 'NOT the same'} loss) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
