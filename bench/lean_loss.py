"""Loss curves with the lean memory defaults against the previous ones, same data, seed and steps.

    python -m bench.lean_loss [--model small-llama] [--steps 80] [--out bench/results/lean-loss-curves.json]

lean (today's defaults): embeddings, lm_head and norms in bf16 (train.upcast_fp32: false), chunked cross-entropy
(train.loss: lean), paged 8-bit AdamW (train.optimizer: auto for qlora).
previous: peft's prepare_model_for_kbit_training fp32 upcast, the model's own full-logit loss, fp32 AdamW.
Both train QLoRA (NF4 base, bf16 compute) on the ~20M bench model, each arm in a fresh process, arms alternating.
Writes the curves (JSON) and a picture next to it; the tolerance is stated in the JSON.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.data import make_conversations, write_jsonl
from bench.models import model_path

RESULTS = Path(__file__).parent / "results"
ARMS = {
    "lean": [],
    "previous": ["train.upcast_fp32=true", "train.loss=full", "train.optimizer=adamw_torch"],
}
# Same seed, same data order: the arms differ by bf16 vs fp32 rounding of the head/embeddings and 8-bit vs fp32
# optimizer states. Over the last quarter of the run, mean losses within 2% count as "the same loss" (the
# step-to-step noise of one arm's loss over that window is of that order at batch 8 on this data).
TOLERANCE = 0.02


def train_arm(name: str, model: str, data: Path, steps: int, workdir: Path) -> list[dict]:
    run_dir = workdir / name
    sets = [f"model={model}", "method=qlora", "dtype=bf16", f"data.path={data}", "data.val_ratio=0",
            "data.packing=true", f"train.max_steps={steps}", "train.max_seq_len=256", "train.batch_size=8",
            "train.logging_steps=1", "train.save_steps=100000", "train.learning_rate=1e-3", "train.warmup_ratio=0",
            "lora.r=16", "lora.alpha=32", f"output_dir={run_dir}", *ARMS[name]]
    cmd = [sys.executable, "-m", "doctorkit.train", "recipes/quickstart.yaml", "--overwrite"]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise SystemExit(f"arm {name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return [{"step": h["step"], "loss": h["loss"]} for h in metrics["log_history"] if "loss" in h]


def tail_mean(curve: list[dict]) -> float:
    tail = curve[-max(1, len(curve) // 4):]
    return sum(p["loss"] for p in tail) / len(tail)


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lean_loss", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small-llama")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--out", type=Path, default=RESULTS / "lean-loss-curves.json")
    args = p.parse_args(argv)
    model = model_path(args.model)
    with tempfile.TemporaryDirectory(prefix="doctorkit-lean-") as tmp:
        data = write_jsonl(make_conversations(args.steps * 8 * 3, seed=1), Path(tmp) / "data.jsonl")
        curves = {name: train_arm(name, model, data, args.steps, Path(tmp)) for name in ARMS}
    lean, previous = tail_mean(curves["lean"]), tail_mean(curves["previous"])
    result = {
        "command": "python -m bench." + Path(__file__).stem + " " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs while measured)",
        "model": args.model, "method": "qlora (NF4, bf16 compute)", "steps": args.steps, "arms": ARMS,
        "tail_mean_loss": {"lean": lean, "previous": previous},
        "relative_difference": abs(lean - previous) / previous, "tolerance": TOLERANCE,
        "same_loss": abs(lean - previous) / previous <= TOLERANCE, "curves": curves,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot(curves, args.out.with_suffix(".png"), f"QLoRA on {args.model}: lean defaults vs previous")
    print(f"tail-mean loss lean {lean:.4f}, previous {previous:.4f} "
          f"({result['relative_difference']:.2%}, tolerance {TOLERANCE:.0%}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
