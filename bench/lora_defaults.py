"""Held-out loss of a recipe's previous LoRA settings against its lean ones, one change at a time, over seeds.

    python -m bench.lora_defaults --recipe qlora|lora [--steps 200] [--out bench/results/lora-defaults-<recipe>.json]

previous: the recipe's LoRA settings until issue 16 (both with dropout 0.05 and PEFT's fp32 adapters):
qlora.yaml r=64, alpha=16 (the QLoRA paper's); lora.yaml r=16, alpha=32.
lean: what they ship now, without dropout and with the adapters in the bf16 compute dtype (lora.adapter_dtype: auto
on a bf16 GPU), at half the rank: qlora.yaml r=32, alpha=16 (axolotl's QLoRA examples); lora.yaml r=8, alpha=16
(the rank of DoctorGLM, torchtune and LLaMA-Factory).
The middle arms change one setting of `previous` each (rank with alpha, dropout, adapter dtype), so a difference can
be pinned on it; `previous` and `lean` run with three seeds, whose spread is the noise a change is judged against.

Every arm trains LoRA over the bf16 builtin:tiny model on our sample dialogs (data/sample_zh.jsonl, a fixed 90/10
split), packed 8 x 256, AdamW at the quickstart's learning rate for this model, each arm in a fresh process, and
reports its loss on the held-out tenth. What this can and cannot show: dropout and the adapters' dtype act the same
way on any base, so their arms speak for the recipes. Rank does not: the tiny model's weights are random, so its
adapters must learn everything, and at 64 wide r=64 is full rank (measured: every rank cut costs held-out loss
here, whatever alpha; r=32 with alpha 8, 11 or 16 and r=16 with alpha 16 all land outside the seed spread). A pretrained 7B's fine-tuning update is close to
low rank (LoRA, Hu et al. 2021; QLoRA, Dettmers et al. 2023, found r from 8 to 64 equal once every linear layer is
adapted), which no model that trains on this CPU can reproduce: the rank arm's loss is reported, not used as proof.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.curves import plot, train_curve

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "sample_zh.jsonl"
SETTINGS = {   # recipe: (previous, lean)
    "qlora": (["lora.r=64", "lora.alpha=16", "lora.dropout=0.05", "lora.adapter_dtype=fp32"],
              ["lora.r=32", "lora.alpha=16", "lora.dropout=0", "lora.adapter_dtype=compute"]),
    "lora": (["lora.r=16", "lora.alpha=32", "lora.dropout=0.05", "lora.adapter_dtype=fp32"],
             ["lora.r=8", "lora.alpha=16", "lora.dropout=0", "lora.adapter_dtype=compute"]),
}
SEEDS = (42, 43, 44)
EVAL_EVERY = 50


def arms_of(recipe: str) -> dict[str, list[str]]:
    """previous, previous with each lean change alone (rank and alpha together: they set the scale), lean."""
    previous, lean = SETTINGS[recipe]
    arms = {"previous": previous}
    for group in (("lora.r", "lora.alpha"), ("lora.dropout",), ("lora.adapter_dtype",)):
        changed = [item for item in lean if item.split("=")[0] in group]
        arms[" ".join(changed)] = [*previous, *changed]
    arms["lean"] = lean
    return arms


def split(workdir: Path) -> tuple[Path, Path]:
    """The sample dialogs shuffled once (seed 0) into a training file and a held-out tenth."""
    rows = [line for line in DATA.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    random.Random(0).shuffle(rows)
    held = len(rows) // 10
    train, val = workdir / "train.jsonl", workdir / "val.jsonl"
    train.write_text("".join(rows[held:]), encoding="utf-8")
    val.write_text("".join(rows[:held]), encoding="utf-8")
    return train, val


def train_arm(name: str, sets: list[str], seed: int, data: tuple[Path, Path], steps: int, lr: float,
              workdir: Path) -> dict:
    run_dir = workdir / ("".join(c if c.isalnum() else "-" for c in name) + f"-{seed}")
    train = train_curve(name, run_dir, [
        "model=builtin:tiny", "method=lora", "dtype=bf16", f"data.path={data[0]}", f"data.val_path={data[1]}",
        "data.packing=true", f"train.max_steps={steps}", "train.max_seq_len=256", "train.batch_size=8",
        f"train.learning_rate={lr}", "train.warmup_ratio=0", "train.optimizer=adamw_torch",
        f"train.eval_steps={EVAL_EVERY}", f"seed={seed}", *sets])
    history = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["log_history"]
    held_out = [{"step": h["step"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h]
    print(f"  {name} (seed {seed}): held-out loss {held_out[-1]['loss']:.4f}", flush=True)
    return {"seed": seed, "held_out_loss": held_out[-1]["loss"], "train_curve": train, "held_out_curve": held_out}


def verdict(runs: dict[str, list[dict]]) -> dict:
    """Each arm's mean held-out loss against the previous settings' seeds: within their spread, better or worse."""
    previous = [r["held_out_loss"] for r in runs["previous"]]
    low, high, mean = min(previous), max(previous), statistics.mean(previous)
    out = {"previous_seeds": previous, "seed_spread": high - low}
    for name, arm_runs in runs.items():
        loss = statistics.mean(r["held_out_loss"] for r in arm_runs)
        out[name] = {"mean_held_out_loss": loss, "relative_to_previous_mean": (loss - mean) / mean,
                     "judged": "better" if loss < low else "worse" if loss > high else "within the seed spread"}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.lora_defaults", description=__doc__.splitlines()[0])
    p.add_argument("--recipe", choices=sorted(SETTINGS), required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-3, help="the quickstart's, for this model (default 3e-3)")
    p.add_argument("--out", type=Path, help="default: bench/results/lora-defaults-<recipe>.json")
    args = p.parse_args(argv)
    out = args.out or RESULTS / f"lora-defaults-{args.recipe}.json"
    arms = arms_of(args.recipe)
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="doctorkit-lora-defaults-") as tmp:
        data = split(Path(tmp))
        runs = {name: [train_arm(name, sets, seed, data, args.steps, args.lr, Path(tmp))
                       for seed in (SEEDS if name in ("previous", "lean") else SEEDS[:1])]
                for name, sets in arms.items()}
    judged = verdict(runs)
    result = {
        "command": "python -m bench." + Path(__file__).stem + " " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs while measured (load average "
                   f"{load:.1f} at the start), {time.perf_counter() - started:.0f} s for all arms",
        "recipe": f"recipes/{args.recipe}.yaml", "model": "builtin:tiny (random weights, 64 wide), bf16",
        "data": "data/sample_zh.jsonl, 90/10 split (shuffle seed 0)", "steps": args.steps, "learning_rate": args.lr,
        "arms": arms, "verdict": judged, "runs": runs,
        "note": "dropout and adapter dtype speak for the recipes; rank does not (random base, r=64 is full rank at "
                "64 wide): see the module docstring",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    plot({name: runs[name][0]["held_out_curve"] for name in ("lean", "previous")}, out.with_suffix(".png"),
         f"{args.recipe}.yaml on builtin:tiny: lean vs previous LoRA settings (held-out loss, seed 42)",
         "lean", "previous", ylabel="held-out loss")
    for name in arms:
        v = judged[name]
        print(f"{name}: held-out {v['mean_held_out_loss']:.4f} ({v['relative_to_previous_mean']:+.1%}): {v['judged']}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
