"""DoctorKit against LLaMA-Factory on the same CPU job, side by side (issue 20).

    python -m bench.vs_llamafactory --lf-python /work/lf/venv/bin/python [--threads 1 --threads 2] [--repeats 3]
        [--data /work/shared/data/medical_sft_1k.sharegpt.jsonl] [--arm ours-packed --arm lf-neat-packing ...]

The job: builtin:tiny saved as a model folder, 400 ShareGPT dialogs to train on and 100 held back (a fixed
seeded draw from --data), max length 512, batch 8, grad_accum 1, LoRA r=32 / alpha 64 / dropout 0.05 on all
linear layers, fp32 on the CPU, AdamW lr 2e-4 cosine without warmup, one epoch, no evaluation or checkpoint
during training, the chatml format of the tiny model's own chat template on both sides. Arms:

  ours-packed      data.packing: true (TRL bfd rows of 512; on a CPU sdpa runs per document, doctorkit/packing.py)
  lf-neat-packing  neat_packing: true (knapsack rows of 513, a block-diagonal 4-D float mask, sdpa)
  ours-grouped     data.packing: false, data.group_by_length: true (the recipe default)
  lf-default       no packing (random batches padded to the longest)

LLaMA-Factory turns gradient checkpointing on by default; it is off here on both sides (DoctorKit's LoRA default),
so both compute the same thing. Every run is a fresh process (bench/train_timer.py under the tool's own Python),
with OMP/MKL threads set; arms alternate inside each repeat so load from other jobs hits them alike.
Rate = supervised (assistant) tokens of the training set, counted ONCE with DoctorKit's masking and the tiny
tokenizer, over the HF Trainer's `train_runtime` that each tool writes (both train with transformers.Trainer).
Also per CPU-second of the Trainer.train call, the tokens each side really fed as labels, its own eval loss,
and a common eval loss: every trained adapter scored on the same 100 held-back dialogs with DoctorKit's masks.
Writes bench/results/vs-llamafactory-<N>thread.json (+ .png) per thread count. Not part of the test suite.

LLaMA-Factory's venv (kept apart from DoctorKit's): `python3.11 -m venv /work/lf/venv`, then `pip install
torch==2.13.0` (the CPU wheel, the same torch as ours) and `pip install llamafactory==0.9.5`. Its requirements pull
torchvision/torchaudio built for torch 2.14 (CUDA); no torchaudio exists for torch 2.13 in our registry, and
LLaMA-Factory imports it at module level for audio inputs only, so that venv gets torch 2.13.0 back, no
torchvision, and an empty `torchaudio` stub package (version '0.0.0+stub'). Text SFT never calls either.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.vs_llamafactory_job import (JOB, N_EVAL, N_TRAIN, SPLIT_SEED, CommonEval, count_supervised, dataset_info,
                                      lf_config, our_recipe, save_tiny, split_data)
from doctorkit.errors import DoctorKitError, cli_main

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = "/work/shared/data/medical_sft_1k.sharegpt.jsonl"
ARMS = ["ours-packed", "lf-neat-packing", "ours-grouped", "lf-default"]
PAIRS = {"packed": ("ours-packed", "lf-neat-packing"), "unpacked": ("ours-grouped", "lf-default")}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.vs_llamafactory", description=__doc__.splitlines()[0])
    p.add_argument("--lf-python", required=True, help="python of a venv with llamafactory installed")
    p.add_argument("--data", default=DEFAULT_DATA, help="ShareGPT JSONL with at least 500 dialogs")
    p.add_argument("--threads", type=int, action="append", help="threads per run, repeatable (default 1)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--arm", action="append", choices=ARMS, help=f"repeatable (default: all, in order {ARMS})")
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--keep", help="keep the work folder (model, data, configs, run outputs) here")
    p.add_argument("--profile", action="store_true", help="instead: one run per arm under torch.profiler "
                   "(bench/train_profile.py) -> vs-llamafactory-profile-<N>thread.json")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ inputs ---

def check_inputs(args) -> None:
    lf = Path(args.lf_python)
    if not (lf.is_file() and os.access(lf, os.X_OK)):
        raise DoctorKitError(f"--lf-python {lf}: no such interpreter (a venv with llamafactory: see this file's docstring)")
    if not Path(args.data).is_file():
        raise DoctorKitError(f"--data {args.data}: not found; this benchmark needs real ShareGPT dialogs, skipped")


def lf_versions(lf_python: str) -> dict:
    code = ("import json, platform, torch, transformers, peft, trl, accelerate, datasets, llamafactory; "
            "print(json.dumps({'llamafactory': llamafactory.__version__, 'python': platform.python_version(), "
            "'torch': torch.__version__, 'transformers': transformers.__version__, 'peft': peft.__version__, "
            "'trl': trl.__version__, 'accelerate': accelerate.__version__, 'datasets': datasets.__version__, "
            "'torchaudio': __import__('torchaudio').__version__}))")  # '0.0.0+stub' in the venv the README describes
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([lf_python, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise DoctorKitError(f"--lf-python {lf_python}: cannot import llamafactory ({last})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def our_versions() -> dict:
    import platform
    import accelerate, datasets, peft, torch, transformers, trl  # noqa: E401
    import doctorkit
    return {"doctorkit": getattr(doctorkit, "__version__", "?"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "trl": trl.__version__, "accelerate": accelerate.__version__, "datasets": datasets.__version__}


# -------------------------------------------------------------------------------------------- runs ---

def run_once(arm: str, threads: int, work: Path, lf_python: str, paths: dict, tag: str, profile: bool = False) -> dict:
    import yaml

    out = work / "runs" / tag
    cfg = work / "configs" / f"{tag}.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    if arm.startswith("ours"):
        python, module = sys.executable, "doctorkit.train"
        cfg.write_text(yaml.safe_dump(our_recipe(arm, paths["model"], paths["train"], paths["eval"], out)), encoding="utf-8")
    else:
        python, module = lf_python, "llamafactory.launcher"
        cfg.write_text(yaml.safe_dump(lf_config(arm, paths["model"], work, out)), encoding="utf-8")
    timer_out = work / "configs" / f"{tag}.timer.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1",
           "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true", "CUDA_VISIBLE_DEVICES": ""}
    load_before, rusage = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    profile_out = work / "configs" / f"{tag}.profile.json"
    wrapper = ["train_profile.py", str(profile_out)] if profile else ["train_timer.py"]
    proc = subprocess.run([python, str(ROOT / "bench" / wrapper[0]), *wrapper[1:], str(timer_out), module, str(cfg)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (work / "configs" / f"{tag}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 or not timer_out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DoctorKitError(f"{arm} run {tag} failed (exit {proc.returncode}): {' | '.join(tail)}")
    timer = json.loads(timer_out.read_text(encoding="utf-8"))
    if arm.startswith("ours"):
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        history = metrics["log_history"]
        runtime = next(h["train_runtime"] for h in history if "train_runtime" in h)
        eval_loss, adapter = metrics["eval_loss"], out / "adapter"
    else:
        results = json.loads((out / "all_results.json").read_text(encoding="utf-8"))
        runtime, eval_loss, adapter = results["train_runtime"], results.get("eval_loss"), out
    return {"arm": arm, "threads": threads, "tag": tag, "train_runtime": runtime, "eval_loss_own": eval_loss,
            "train_wall_s": timer["train_wall_s"], "train_cpu_s": timer["train_cpu_s"], "steps": timer["steps"],
            "positions": timer["positions"], "supervised_tokens_fed": timer["supervised_tokens"],
            "process_wall_s": round(wall, 2),
            "process_cpu_s": round((after.ru_utime - rusage.ru_utime) + (after.ru_stime - rusage.ru_stime), 2),
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "adapter": str(adapter),
            **({"profile": json.loads(profile_out.read_text(encoding="utf-8"))} if profile else {})}


# ----------------------------------------------------------------------------------------- summary ---

def summarize(runs: list[dict], supervised: int) -> dict:
    arms = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        med = lambda key: statistics.median(r[key] for r in mine)  # noqa: E731
        arms[arm] = {
            "supervised_tokens_per_s": round(statistics.median(supervised / r["train_runtime"] for r in mine), 1),
            "supervised_tokens_per_cpu_s": round(statistics.median(supervised / r["train_cpu_s"] for r in mine), 1),
            "train_runtime_s": round(med("train_runtime"), 2), "train_cpu_s": round(med("train_cpu_s"), 2),
            "process_wall_s": round(med("process_wall_s"), 2), "process_cpu_s": round(med("process_cpu_s"), 2),
            "steps": mine[0]["steps"], "positions_per_epoch": mine[0]["positions"],
            "supervised_tokens_fed": mine[0]["supervised_tokens_fed"],
            "eval_loss_own": round(med("eval_loss_own"), 4) if all(r["eval_loss_own"] is not None for r in mine) else None,
            "eval_loss_common": round(med("eval_loss_common"), 4),
            "repeats": len(mine),
        }
    ratios = {}
    for name, (ours, theirs) in PAIRS.items():
        if ours in arms and theirs in arms:
            # paired: the two runs of one repeat ran back to back, so they saw about the same load
            paired = [theirs_run["train_runtime"] / ours_run["train_runtime"]
                      for ours_run in runs if ours_run["arm"] == ours
                      for theirs_run in runs if theirs_run["arm"] == theirs and theirs_run["repeat"] == ours_run["repeat"]]
            ratios[f"{ours}/{theirs}"] = {
                "wall": round(arms[ours]["supervised_tokens_per_s"] / arms[theirs]["supervised_tokens_per_s"], 3),
                "cpu_s": round(arms[ours]["supervised_tokens_per_cpu_s"] / arms[theirs]["supervised_tokens_per_cpu_s"], 3),
                "process_wall": round(arms[theirs]["process_wall_s"] / arms[ours]["process_wall_s"], 3),
                "paired_wall_median": round(statistics.median(paired), 3),
                "paired_wall_range": [round(min(paired), 3), round(max(paired), 3)],
            }
    return {"arms": arms, "ratios": ratios}


def plot(summary: dict, runs: list[dict], supervised: int, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["arms"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "train_runtime", "supervised tokens / s (train_runtime)"),
                           (axes[1], "train_cpu_s", "supervised tokens / CPU-second")):
        for i, arm in enumerate(arms):
            values = [supervised / r[key] for r in runs if r["arm"] == arm]
            ax.bar(i, statistics.median(values), color="tab:blue" if arm.startswith("ours") else "tab:orange")
            ax.plot([i] * len(values), values, "k.", ms=5)
        ax.set_xticks(range(len(arms)), arms, rotation=20)
        ax.set_ylabel(label)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------- main ---

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_inputs(args)
    threads_list, arms = args.threads or [1], args.arm or ARMS
    versions = {"doctorkit": our_versions(), "llamafactory": lf_versions(args.lf_python)}
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="doctorkit-vs-lf-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        train, held = split_data(Path(args.data), work)
        dataset_info(work, train, held)
        paths = {"model": save_tiny(work / "tiny-model"), "train": train, "eval": held}
        supervised, tokens = count_supervised(paths["model"], train)
        print(f"train set: {N_TRAIN} dialogs, {tokens} tokens, {supervised} supervised (DoctorKit masks)", flush=True)
        scorer = CommonEval(paths["model"], held, threads=min(threads_list))
        base_loss = round(scorer.loss(None), 5)
        runs = []
        for repeat in range(args.repeats):
            for threads in threads_list:
                for arm in arms:   # interleaved: load from other jobs falls on every arm alike
                    record = run_once(arm, threads, work, args.lf_python, paths, f"{arm}-t{threads}-r{repeat}",
                                      profile=args.profile)
                    record["eval_loss_common"] = round(scorer.loss(Path(record["adapter"])), 5)
                    record["repeat"] = repeat
                    runs.append(record)
                    print(f"[{repeat}] {threads}t {arm:16s} train_runtime {record['train_runtime']:7.2f} s  "
                          f"cpu {record['train_cpu_s']:7.2f} s  {supervised / record['train_runtime']:8.1f} sup tok/s  "
                          f"eval {record['eval_loss_own']} / common {record['eval_loss_common']:.4f}  "
                          f"load {record['load_avg_before'][0]:.1f}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    command = "python -m bench.vs_llamafactory " + " ".join(argv if argv is not None else sys.argv[1:])
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for threads in threads_list:
        mine = [r for r in runs if r["threads"] == threads]
        summary = summarize(mine, supervised)
        name = f"vs-llamafactory-{'profile-' if args.profile else ''}{threads}thread"
        result = {
            "schema": "doctorkit-bench-vs-llamafactory/1",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "versions": versions, "threads": threads, "cores": os.cpu_count(),
            "job": {**JOB, "train_dialogs": N_TRAIN, "eval_dialogs": N_EVAL, "split_seed": SPLIT_SEED,
                    "data": Path(args.data).name, "fp32": True, "device": "cpu", "gradient_checkpointing": False,
                    "template": "chatml (LLaMA-Factory) = the tiny model's own chat template (DoctorKit)"},
            "supervised_tokens": supervised, "train_tokens": tokens, "eval_loss_common_untrained": base_loss,
            "rate": "supervised_tokens / train_runtime (HF Trainer, read from each tool's output); per CPU-second: "
                    "supervised_tokens / process CPU seconds of Trainer.train (bench/train_timer.py)",
            "load_avg": {"min": min(r["load_avg_before"][0] for r in mine),
                         "max": max(r["load_avg_after"][0] for r in mine)},
            "total_s": round(time.perf_counter() - started, 1),
            **summary,
            "runs": [{k: v for k, v in r.items() if k != "adapter"} for r in mine],
        }
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        plot(summary, mine, supervised, out_dir / f"{name}.png",
             f"builtin:tiny folder, {N_TRAIN} dialogs, seq 512, batch 8, LoRA r32, fp32 CPU, {threads} thread(s); "
             f"median of {args.repeats}, dots = runs")
        print(f"{threads} thread(s): " + "; ".join(f"{k} {v['wall']:.2f}x wall, {v['cpu_s']:.2f}x CPU-s"
                                                  for k, v in summary["ratios"].items()) + f"  -> {out_dir / name}.json")
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
