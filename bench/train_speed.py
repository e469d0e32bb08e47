"""Training throughput: our trainer against a plain-Trainer baseline on a long-tailed length mix.

    python -m bench.train_speed [--model builtin:tiny --model small-llama] [--repeats 3] [--steps 12]
                                [--variant packing --variant group_by_length ...] [--out bench/results/x.json]

Every run is a fresh subprocess (bench/arm.py), so each arm's peak memory is its own; arms alternate
within a repeat so a busy machine slows both alike, and we report medians. Both arms train one epoch over
the same tokenized samples (same supervised tokens) with the same TrainingArguments. See README
"Performance" for the figures and the GPU commands.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from bench.data import make_conversations, write_jsonl
from bench.models import MODEL_NAMES, model_path
from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import apply_overrides

RESULTS = Path(__file__).parent / "results"

# Our switches worth measuring; each is a set of recipe overrides (+ optional TrainingArguments extras).
# "rows" means train.batch_size becomes the number of packed rows holding about as many tokens as the
# baseline's batch, so both arms take optimizer steps of the same size.
VARIANTS = {
    "packing": {"set": {"data.packing": True}, "rows": True},  # data.packing_layout auto (doctorkit/packing.py)
    "packing-varlen": {"set": {"data.packing": True, "data.packing_layout": "varlen"}, "rows": True},
    "packing-rows": {"set": {"data.packing": True, "data.packing_layout": "rows"}, "rows": True},
    # packing with the recipe's own batch_size (that many packed rows of max_seq_len): what flipping
    # data.packing in a recipe does, and what the LLaMA-Factory side-by-side of issue 20 compared. Steps are
    # bigger (more tokens each) and fewer than the other arms', so it is not a same-step-size comparison.
    "packing-batch": {"set": {"data.packing": True}},
    "packing-rows-eager": {"set": {"data.packing": True, "data.packing_layout": "rows", "attn_implementation": "eager"},
                           "rows": True},
    "packing-flex": {"set": {"data.packing": True, "attn_implementation": "flex_attention"}, "rows": True},  # GPU
    "packing-flash": {"set": {"data.packing": True, "attn_implementation": "flash_attention_2"}, "rows": True},  # GPU
    "group_by_length": {"set": {"data.packing": False, "data.group_by_length": True}},
    "padding": {"set": {"data.packing": False, "data.group_by_length": False}},  # ours with baseline's batching
    "packing-eager": {"set": {"data.packing": True, "attn_implementation": "eager"}, "rows": True},
    "packing-sdpa": {"set": {"data.packing": True, "attn_implementation": "sdpa"}, "rows": True},
    "packing-8bit-adam": {"set": {"data.packing": True, "train.optimizer": "adamw_8bit"}, "rows": True},
    "packing-checkpointing": {"set": {"data.packing": True, "gradient_checkpointing": True}, "rows": True},
    "packing-compile": {"set": {"data.packing": True}, "rows": True, "trainer_extra": {"torch_compile": True}},
    # the model's own loss (full logits) instead of the chunked cross-entropy (train.loss: lean, doctorkit/loss.py)
    "packing-full-loss": {"set": {"data.packing": True, "train.loss": "full"}, "rows": True},
}


DEFAULT_STEPS = {"builtin:tiny": 48, "small-llama": 4, "qwen2.5-1.5b-shape": 20, "qwen2.5-7b-shape": 10}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", choices=MODEL_NAMES, help="repeatable; default: builtin:tiny and small-llama")
    p.add_argument("--method", default="lora", help="lora | qlora (recipe method; both arms)")
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                   help="our configuration(s); default: group_by_length (the recipe default) and packing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, help="baseline optimizer steps; the data holds steps x batch samples "
                   f"(default per model: {DEFAULT_STEPS}, about 15-60 s of training per arm on 2 CPU cores)")
    p.add_argument("--batch-size", type=int, default=8, help="baseline samples per step")
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--data", help="conversations file (default: a generated long-tailed mix, bench/data.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override for both arms, e.g. --set gradient_checkpointing=true")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per arm (OMP_NUM_THREADS); 1 is far faster on a shared, busy machine")
    p.add_argument("--out", help="result JSON (default: bench/results/<machine>-<time>.json)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------- machine ---

def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch_threads": torch.get_num_threads(),
            "load_avg_start": os.getloadavg(), "platform": platform.platform()}


def versions() -> dict:
    import accelerate, peft, transformers, trl  # noqa: E401
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__,
            "cuda": torch.version.cuda}


def matmul_peak_flops() -> float:
    """Measured dense matmul peak: the ceiling MFU is quoted against (bf16 on a GPU, fp32 on a CPU)."""
    on_gpu = torch.cuda.is_available()
    n, dtype, device = (8192, torch.bfloat16, "cuda") if on_gpu else (1024, torch.float32, "cpu")
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(5 if on_gpu else 3):
        reps = 20 if on_gpu else 4
        if on_gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        if on_gpu:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / reps)
    return 2 * n ** 3 / best


# -------------------------------------------------------------------------------------- model flops ---

def model_flops(recipe: dict, path: str, lengths: list[int]) -> float:
    """FLOPs of one epoch over these samples by the estimator's own formula (doctorkit.cost.speed.flops_for_lengths,
    the calibration contract): our `mfu` is then exactly what the estimate's hours divide by. Padding is not
    counted: it is not useful work."""
    from doctorkit.cost.job import job_from_recipe
    from doctorkit.cost.shapes import resolve_shape
    from doctorkit.cost.speed import flops_for_lengths
    from doctorkit.recipe import Recipe

    job = job_from_recipe(Recipe.model_validate(recipe), resolve_shape(path)[0], max(lengths))
    return flops_for_lengths(job, lengths)


def mfu_peak(gpu_name: str) -> tuple[float | None, str]:
    """(peak FLOP/s MFU is quoted against, what it is): the catalog's vendor peak for a catalog GPU (the one MFU
    definition, doctorkit.cost.speed.mfu); none elsewhere (CPU, unknown GPU: see matmul_efficiency)."""
    from doctorkit.cost.catalog import catalog_name, find_gpu

    name = catalog_name(gpu_name)
    if name is None:
        return None, f"no catalog peak for {gpu_name}: mfu is null, matmul_efficiency uses the measured matmul peak"
    return find_gpu(name).peak_tflops * 1e12, f"vendor dense 16-bit peak of {name} (doctorkit/cost/catalog.py)"


def sample_lengths(path: str, data_path: Path, max_seq_len: int) -> list[int]:
    from doctorkit.model import load_tokenizer
    tokenizer = load_tokenizer(path)
    lengths = []
    for line in data_path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        lengths.append(min(len(ids), max_seq_len))
    return lengths


# ------------------------------------------------------------------------------------------- runs ---

def base_recipe(args, path: str, data_path: Path) -> dict:
    recipe = {
        "model": path, "method": args.method, "seed": 42,
        "data": {"path": str(data_path), "packing": False, "group_by_length": False},
        "train": {"max_steps": -1, "epochs": 1, "max_seq_len": args.max_seq_len, "batch_size": args.batch_size,
                  "learning_rate": 2e-4, "warmup_ratio": 0.0, "lr_scheduler": "constant",
                  "logging_steps": 5, "save_steps": 10 ** 6},  # no checkpoint inside the timed region
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
    }
    return apply_overrides(recipe, args.overrides)


def arm_spec(args, recipe: dict, arm: str, variant: str | None, rows: int) -> dict:
    recipe = json.loads(json.dumps(recipe))
    extra, flags = {}, {}
    if variant:
        spec = VARIANTS[variant]
        recipe = apply_overrides(recipe, [f"{k}={json.dumps(v)}" for k, v in spec["set"].items()])
        if spec.get("rows"):
            recipe["train"]["batch_size"] = rows
        extra, flags = spec.get("trainer_extra", {}), spec.get("train_flags", {})
    return {"arm": arm, "recipe": recipe, "trainer_extra": extra, "train_flags": flags, "threads": args.threads}


def run_arm(spec: dict, workdir: Path) -> dict:
    """Runs one arm in a fresh interpreter and returns its counters (bench/arm.py)."""
    spec_path, out_path = workdir / "spec.json", workdir / "out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    out_path.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1",
           "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    proc = subprocess.run([sys.executable, "-m", "bench.arm", str(spec_path), str(out_path)], env=env,
                          cwd=Path(__file__).parent.parent, capture_output=True, text=True)
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DoctorKitError(f"bench arm {spec['arm']} failed: {' | '.join(tail)}")
    return json.loads(out_path.read_text(encoding="utf-8"))


def summarize(runs: list[dict], flops: float, peak: float, vendor_peak: float | None) -> dict:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    wall, steady, cpu = med("train_s"), med("steady_s"), med("train_cpu_s")
    first = runs[0]
    return {  # rates over steady time (first step to the end), see bench/arm.py
        "tokens_per_s": round(statistics.median(r["tokens"] / r["steady_s"] for r in runs), 2),
        "supervised_tokens_per_s": round(statistics.median(r["supervised_tokens"] / r["steady_s"] for r in runs), 2),
        "supervised_tokens_per_cpu_s": round(statistics.median(r["supervised_tokens"] / r["train_cpu_s"] for r in runs), 2),
        # CPU seconds of the same steady part as supervised_tokens_per_s (train_cpu_s above includes the setup)
        "supervised_tokens_per_steady_cpu_s": round(statistics.median(r["supervised_tokens"] / r["steady_cpu_s"]
                                                                      for r in runs), 2),
        "padding_share": round(1 - first["tokens"] / first["positions"], 4),
        "tokens": first["tokens"], "supervised_tokens": first["supervised_tokens"], "positions": first["positions"],
        "optimizer_steps": first["steps"],
        "wall_s": round(wall, 3), "steady_s": round(steady, 3), "cpu_s": round(cpu, 3),
        "peak_memory_bytes": int(med("peak_memory_bytes")), "memory_kind": first["memory_kind"],
        "train_memory_bytes": int(med("train_memory_bytes")) if "train_memory_bytes" in first else None,
        "mfu": round(flops / steady / vendor_peak, 5) if vendor_peak else None,
        "matmul_efficiency": round(flops / steady / peak, 5),   # against the matmul peak this bench timed
        "repeats": [{k: r[k] for k in ("train_s", "steady_s", "train_cpu_s", "steady_cpu_s", "peak_memory_bytes")}
                    for r in runs],
    }


def bench_model(args, name: str, data_path: Path | None, peak: float, gpu: str, bar, tmp: Path) -> list[dict]:
    path = model_path(name)
    steps = args.steps or DEFAULT_STEPS[name]
    if data_path is None:
        data_path = write_jsonl(make_conversations(steps * args.batch_size, seed=0), tmp / f"mix-{steps}.jsonl")
    lengths = sample_lengths(path, data_path, args.max_seq_len)
    rows = max(1, round(args.batch_size * statistics.mean(lengths) / args.max_seq_len))
    recipe = base_recipe(args, path, data_path)
    flops = model_flops(recipe, path, lengths)
    vendor_peak, _ = mfu_peak(gpu)
    arms = [("baseline", None)] + [("ours", v) for v in args.variant]
    runs = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="doctorkit-bench-") as tmp:
        for _ in range(args.repeats):
            for arm in arms:  # alternate, so load on a shared machine hits every arm alike
                runs[arm].append(run_arm(arm_spec(args, recipe, arm[0], arm[1], rows), Path(tmp)))
                bar.update(1)
    baseline = summarize(runs[arms[0]], flops, peak, vendor_peak)
    records = []
    for arm, variant in arms:
        figures = baseline if arm == "baseline" else summarize(runs[(arm, variant)], flops, peak, vendor_peak)
        record = {"gpu": gpu, "model": name, "method": args.method, "arm": arm, "variant": variant or "padding-random",
                  "seq_len": args.max_seq_len, "gradient_checkpointing": bool(recipe.get("gradient_checkpointing")),
                  "batch": rows if variant and VARIANTS[variant].get("rows") else args.batch_size,
                  "samples": len(lengths), "model_flops": flops, **figures}
        if arm == "ours":
            record["ratio_supervised_tokens_per_s"] = round(
                figures["supervised_tokens_per_s"] / baseline["supervised_tokens_per_s"], 3)
            record["ratio_supervised_tokens_per_cpu_s"] = round(
                figures["supervised_tokens_per_cpu_s"] / baseline["supervised_tokens_per_cpu_s"], 3)
        records.append(record)
    add_grouped_ratios(records)
    return records


def add_grouped_ratios(records: list[dict]) -> None:
    """Each packing arm against the length-grouped arm of the same run, and what removing padding can buy.

    At the same tokens per step, packing saves only the positions grouping still pads: about 1 / (1 - grouped
    padding share) of the per-token work (a little more where attention, quadratic in the padded length, weighs).
    On a model whose steps cost mostly fixed overhead (builtin:tiny on a CPU), the step size decides instead.
    """
    grouped = next((r for r in records if r["variant"] == "group_by_length"), None)
    if grouped is None:
        return
    grouped["padding_removal_gain"] = round(1 / (1 - grouped["padding_share"]), 3)
    for r in records:
        if r["variant"].startswith("packing"):
            for key in ("supervised_tokens_per_s", "supervised_tokens_per_cpu_s", "supervised_tokens_per_steady_cpu_s"):
                if key in r and key in grouped:   # files written before steady CPU seconds were counted lack it
                    r[f"vs_group_by_length_{key}"] = round(r[key] / grouped[key], 3)


def print_table(records: list[dict]) -> None:
    print(f"{'model':<20}{'arm':<9}{'variant':<24}{'tok/s':>9}{'sup tok/s':>11}{'pad':>7}{'peak MiB':>10}"
          f"{'wall s':>9}{'MFU':>8}{'ratio':>7}{'vs grouped':>11}{'(CPU s)':>9}")
    for r in records:
        ratio = r.get("ratio_supervised_tokens_per_s")
        mfu = f"{r['mfu']:.2%}" if r["mfu"] is not None else "-"   # null on a CPU (no vendor peak)
        print(f"{r['model']:<20}{r['arm']:<9}{r['variant']:<24}{r['tokens_per_s']:>9.0f}{r['supervised_tokens_per_s']:>11.0f}"
              f"{r['padding_share']:>7.0%}{r['peak_memory_bytes'] / 2**20:>10.0f}{r['wall_s']:>9.1f}{mfu:>8}"
              f"{(f'{ratio:.2f}x' if ratio else ''):>7}"
              f"{(f'{vs:.2f}x' if (vs := r.get('vs_group_by_length_supervised_tokens_per_s')) else ''):>11}"
              f"{(f'{vs:.2f}x' if (vs := r.get('vs_group_by_length_supervised_tokens_per_steady_cpu_s')) else ''):>9}")
        if "padding_removal_gain" in r:
            print(f"{'':<29}(removing this arm's padding saves ~{r['padding_removal_gain']:.2f}x of its "
                  f"per-token work at the same tokens per step)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.model = args.model or ["builtin:tiny", "small-llama"]
    args.variant = args.variant or ["group_by_length", "packing"]  # the recipe default, and packing
    started = time.perf_counter()
    torch.set_num_threads(args.threads)  # the matmul peak is measured with the threads the arms get
    info = machine()
    gpu = info["gpu"] or "cpu"
    peak = matmul_peak_flops()
    data_path = Path(args.data) if args.data else None
    if data_path is not None and not data_path.is_file():
        raise DoctorKitError(f"{data_path}: data file not found")
    with tempfile.TemporaryDirectory(prefix="doctorkit-bench-data-") as tmp:
        records = []
        with tqdm(total=len(args.model) * args.repeats * (1 + len(args.variant)), desc="bench runs") as bar:
            for name in args.model:
                records += bench_model(args, name, data_path, peak, gpu, bar, Path(tmp))
    info["load_avg_end"] = os.getloadavg()
    result = {
        "schema": "doctorkit-bench/1",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.train_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info, "versions": versions(), "matmul_peak_flops": peak, "mfu_basis": mfu_peak(gpu)[1],
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "data": args.data or "generated: bench/data.py make_conversations(seed=0)",
        "total_s": round(time.perf_counter() - started, 1),
        "results": records,
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else RESULTS / f"{'gpu' if info['gpu'] else 'cpu'}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(records)
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s; total {result['total_s']:.0f} s; results: {out}")
    return 0


def run(argv: list[str] | None = None) -> None:
    cli_main(main, argv)


if __name__ == "__main__":
    run()
