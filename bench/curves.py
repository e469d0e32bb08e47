"""Loss curves of two training arms that differ only in a few recipe keys (bench.lean_loss, bench.adapter_dtype):
each arm is `python -m doctorkit.train recipes/quickstart.yaml --set ...` in a fresh process, its per-step train
loss read back from RUN/metrics.json, and the pair drawn with their relative difference below."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_curve(name: str, run_dir: Path, sets: list[str]) -> list[dict]:
    """[{step, loss}] of one arm trained with these --set overrides (logging every step)."""
    cmd = [sys.executable, "-m", "doctorkit.train", "recipes/quickstart.yaml", "--overwrite"]
    for item in [*sets, "train.logging_steps=1", "train.save_steps=100000", f"output_dir={run_dir}"]:
        cmd += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
           "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"arm {name} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return [{"step": h["step"], "loss": h["loss"]} for h in metrics["log_history"] if "loss" in h]


def tail_mean(curve: list[dict]) -> float:
    tail = curve[-max(1, len(curve) // 4):]
    return sum(p["loss"] for p in tail) / len(tail)


def plot(curves: dict, path: Path, title: str, new: str, old: str, ylabel: str = "train loss") -> None:
    """The two curves (the `new` arm dashed, on top: they overlap when they agree) and, below, their relative
    difference |new - old| / old per step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for name in (old, new):
        curve = curves[name]
        top.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=name,
                 linestyle="--" if name == new else "-", linewidth=1.2 if name == new else 2.5)
    top.set_ylabel(ylabel)
    top.set_title(title)
    top.legend()
    bottom.plot([p["step"] for p in curves[new]],
                [abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(curves[new], curves[old])],
                marker=".", color="black")
    bottom.set_ylabel(f"|{new} - {old}| / {old}")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
