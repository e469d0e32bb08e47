"""GPU figures for LoRA / QLoRA / P-tuning v2 on a Qwen2.5-7B-shaped model: peak memory and tokens/s.

    python bench/methods_gpu.py                       # all 12 cells: 3 methods x batch 1, 4 x checkpointing on/off
    python bench/methods_gpu.py --methods qlora --batch 1 --ckpt on   # one cell

Needs a CUDA GPU and bitsandbytes with CUDA; no download: the model is built from Qwen2.5-7B's published shape
with random weights (speed and memory do not depend on the values) and saved once under --work. Every cell is
a real `python -m doctorkit.train` run (own process, so peak memory is per cell) on synthetic conversations
truncated to exactly --seq tokens; figures come from each run's metrics.json (peak_memory_bytes =
torch.cuda.max_memory_allocated, tokens_per_s over the timed steps). Writes bench/results/methods_gpu.{json,md}.
Goals from issue 3: QLoRA <= 6 GiB at seq 1024 batch 1; P-tuning v2 on a 4-bit base <= 7 GiB.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHOD_SETTINGS = {
    "lora": ["lora.r=16", "lora.alpha=32"],
    "qlora": ["lora.r=16", "lora.alpha=32", "quantization.bits=4", "train.optimizer=paged_adamw_8bit"],
    "ptuning": ["lora=null", "ptuning.pre_seq_len=128", "ptuning.quantization_bits=4", "train.learning_rate=2e-2"],
}


def build_model(folder: Path) -> None:
    """Random-weight Qwen2.5-7B shape (doctorkit/cost/shapes.py) in bf16, with our tiny tokenizer (token ids only
    need to be < vocab): bench/models.py builds it, as for bench.train_speed."""
    if (folder / "config.json").is_file():
        return
    import torch

    from bench.models import build_folder

    build_folder("qwen2.5-7b-shape", folder)
    torch.cuda.empty_cache()


def write_data(path: Path, samples: int, seq: int) -> None:
    """Conversations long enough to be truncated to exactly `seq` tokens (the tokenizer is byte-level)."""
    from doctorkit.builtin.sampledata import corpus_text

    text = corpus_text()
    chunk = (text * (seq * 4 // max(len(text), 1) + 2))[: seq * 3]
    with path.open("w", encoding="utf-8") as out:
        for i in range(samples):
            body = chunk[i % 97:] + chunk[: i % 97]
            messages = [{"role": "user", "content": body[:64]}, {"role": "assistant", "content": body[64:]}]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def run_cell(model: Path, data: Path, work: Path, method: str, batch: int, ckpt: bool, seq: int, steps: int) -> dict:
    out = work / f"run-{method}-b{batch}-ckpt{int(ckpt)}"
    sets = [f"model={model}", f"method={method}", f"output_dir={out}", f"data.path={data}", "data.val_ratio=0",
            "data.packing=false", "data.group_by_length=false", f"gradient_checkpointing={str(ckpt).lower()}",
            f"train.max_seq_len={seq}", f"train.batch_size={batch}", "train.grad_accum=1",
            f"train.max_steps={steps}", "train.save_steps=100000", "train.logging_steps=1", "dtype=bf16",
            *METHOD_SETTINGS[method]]
    cmd = [sys.executable, "-m", "doctorkit.train", str(ROOT / "recipes/quickstart.yaml"), "--overwrite"]
    for item in sets:
        cmd += ["--set", item]
    done = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    cell = {"method": method, "batch": batch, "seq": seq, "gradient_checkpointing": ckpt, "steps": steps,
            "command": "python -m doctorkit.train recipes/quickstart.yaml --overwrite " + " ".join(f"--set {s}" for s in sets)}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {**cell, "error": tail[0][:300]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {**cell, "peak_gib": round(metrics["peak_memory_bytes"] / 2**30, 2),
            "tokens_per_s": metrics["tokens_per_s"], "trainable_params": metrics["trainable_params"],
            "device": metrics["device"]}


def write_results(cells: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "methods_gpu.json").write_text(json.dumps(cells, indent=2) + "\n")
    lines = [f"# LoRA / QLoRA / P-tuning v2 on a Qwen2.5-7B-shaped model ({cells[0].get('device', '?')})", "",
             "Command: `python bench/methods_gpu.py` (each row's exact train command is in methods_gpu.json).", "",
             "| method | batch | seq | grad ckpt | peak GiB | tokens/s | trainable params |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        figures = f"{c['peak_gib']} | {c['tokens_per_s']} | {c['trainable_params']:,}" if "error" not in c \
            else f"failed: {c['error']} | | "
        lines.append(f"| {c['method']} | {c['batch']} | {c['seq']} | {'on' if c['gradient_checkpointing'] else 'off'} | {figures} |")
    (folder / "methods_gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_SETTINGS), choices=list(METHOD_SETTINGS))
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--ckpt", nargs="+", choices=["on", "off"], default=["on", "off"])
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--work", default="/tmp/doctorkit-bench", help="scratch folder (the 7B model is ~15 GB)")
    parser.add_argument("--results", default=str(ROOT / "bench/results"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/methods_gpu.py needs a CUDA GPU")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    build_model(work / "qwen2.5-7b-random")
    write_data(work / "long.jsonl", samples=max(args.batch) * (args.steps + 2), seq=args.seq)
    cells = []
    for method, batch, ckpt in itertools.product(args.methods, args.batch, args.ckpt):
        cells.append(run_cell(work / "qwen2.5-7b-random", work / "long.jsonl", work, method, batch, ckpt == "on",
                              args.seq, args.steps))
        print(json.dumps({k: v for k, v in cells[-1].items() if k != "command"}), flush=True)
    write_results(cells, Path(args.results))


if __name__ == "__main__":
    main()
