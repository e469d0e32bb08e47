"""Loss curves of three batch orders on the same data and seed: does length grouping hurt training?

    python -m bench.group_order [--model small-llama] [--samples 240] [--out bench/results/group-order]

- random: data.group_by_length false (transformers' RandomSampler, much padding)
- grouped, random order: data.group_by_length true (doctorkit/batching.py, what the recipes use)
- grouped, longest first: transformers' LengthGroupedSampler order (sorted mega-batches), for contrast

The three run at once in separate processes (same seed, same samples, same hyper-parameters) and their
train and eval losses go to OUT.json and OUT.png.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.data import make_conversations, write_jsonl
from bench.models import MODEL_NAMES, model_path

ORDERS = {"random": "random order (no grouping)", "grouped": "length groups, random order (ours)",
          "longest-first": "length groups, sorted mega-batches (transformers)"}


def train_one(order: str, recipe_path: str) -> None:
    """One training run; `longest-first` swaps our sampler's order for transformers' own."""
    import doctorkit.batching as batching
    from doctorkit.recipe import load_recipe
    from doctorkit.train import train

    if order == "longest-first":
        from transformers.trainer_pt_utils import get_length_grouped_indices
        batching.ShuffledLengthGroups.__iter__ = lambda self: iter(
            get_length_grouped_indices(self.lengths, self.batch_size))
    train(load_recipe(recipe_path), overwrite=True)


def recipe_for(args, order: str, data: Path, out_dir: Path) -> dict:
    return {"model": model_path(args.model), "method": "lora", "seed": 42, "output_dir": str(out_dir),
            "data": {"path": str(data), "val_ratio": 0.1, "packing": False, "group_by_length": order != "random"},
            "train": {"epochs": 1, "max_seq_len": args.max_seq_len, "batch_size": 8, "learning_rate": 5e-4,
                      "lr_scheduler": "constant", "warmup_ratio": 0.0, "logging_steps": 1, "eval_steps": 5,
                      "save_steps": 10 ** 6},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0}}


def plot(curves: dict, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for order, history in curves.items():
        train = [(h["step"], h["loss"]) for h in history if "loss" in h]
        evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
        left.plot(*zip(*train), label=ORDERS[order], linewidth=1)
        right.plot(*zip(*evals), marker="o", label=ORDERS[order])
    left.set(title="train loss (each step)", xlabel="step", ylabel="loss")
    right.set(title="eval loss (same held-out samples)", xlabel="step")
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.group_order", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-llama", choices=MODEL_NAMES)
    p.add_argument("--samples", type=int, default=240)
    p.add_argument("--max-seq-len", type=int, default=256)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "group-order"))
    p.add_argument("--one", nargs=2, metavar=("ORDER", "RECIPE"), help=argparse.SUPPRESS)  # a child process
    args = p.parse_args(argv)
    if args.one:
        train_one(*args.one)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="doctorkit-order-") as tmp:
        data = write_jsonl(make_conversations(args.samples, seed=1), Path(tmp) / "data.jsonl")
        procs = {}
        for order in ORDERS:
            recipe = Path(tmp) / f"{order}.json"  # JSON is YAML
            recipe.write_text(json.dumps(recipe_for(args, order, data, Path(tmp) / order)), encoding="utf-8")
            procs[order] = subprocess.Popen([sys.executable, "-m", "bench.group_order", "--one", order, str(recipe)],
                                            env=env, cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL)
        if any(proc.wait() for proc in procs.values()):
            raise SystemExit("a training run failed")
        curves = {order: json.loads((Path(tmp) / order / "metrics.json").read_text())["log_history"] for order in ORDERS}
    out = Path(args.out)
    command = "python -m bench.group_order " + " ".join(argv if argv is not None else sys.argv[1:])
    out.with_suffix(".json").write_text(json.dumps({"command": command, "model": args.model, "samples": args.samples,
                                                   "note": "measured on a 2-core machine shared with 7 other jobs",
                                                   "curves": curves}, indent=1) + "\n", encoding="utf-8")
    plot(curves, f"{args.model}, LoRA, {args.samples} samples, batch 8, same seed: {command}", out.with_suffix(".png"))
    print(f"{out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
