"""Serving throughput: N concurrent clients against the same requests sent one at a time, same server.

    python -m bench.serve [--model builtin:tiny --model small-llama] [--clients 1 4 8 16] [--rounds 2]
                          [--repeats 2] [--max-tokens 48] [--out bench/results/serve-cpu.json]

Per model: a LoRA run on it (random adapter, as in tests) is served by `python -m doctorkit.serve` in its own
process on 127.0.0.1, and driven with the official openai client. For each client count N, N * rounds
requests (distinct prompts, greedy) are sent (a) one at a time and (b) by N client threads, each sending its
share back to back; the two arms alternate within each repeat so a busy machine slows both alike, and we
report medians: aggregate completion tokens/s, p50/p95 latency and the ratio (b)/(a).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.models import model_path

RESULTS = Path(__file__).parent / "results"
# One torch thread in the server: on a CPU shared with other jobs, two OpenMP threads spin-wait for each other
# (measured on the tiny model at load 12: 7.7 tokens/s with 2 threads, 51 with 1).
THREADS = 1
QUESTIONS = ["头痛三天了，怎么办？", "孩子发烧38度半要去医院吗？", "咳嗽有痰，需要吃抗生素吗？", "胃疼是什么原因？",
             "高血压患者饮食要注意什么？", "失眠多梦怎么调理？", "腰疼久坐后加重怎么办？", "皮肤起红疹很痒怎么办？"]


def make_run(model: str, run_dir: Path) -> Path:
    import torch

    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer
    from doctorkit.recipe import Recipe, save_recipe

    recipe = Recipe(model=model_path(model), output_dir=str(run_dir))
    base, tokenizer = load_model_and_tokenizer(recipe, for_training=False)
    peft_model = get_method("lora").wrap(base, recipe)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    save_recipe(recipe, run_dir / "recipe.yaml")
    return run_dir


def start_server(run_dir: Path, port: int, max_tokens: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "doctorkit.serve", str(run_dir), "--port", str(port),
                             "--audit-log", "", "--max-batch", "16", "--max-tokens", str(max_tokens),
                             "--threads", str(THREADS)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    for line in proc.stdout:   # "serving on ..." once the models are loaded
        if line.startswith("serving on"):
            return proc
        said.append(line.strip())
    raise RuntimeError(f"server did not start (exit {proc.wait()}): {said[-1:] }")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests_for(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]}（第{i}位）"}] for i in range(n)]


def one(client, model: str, messages, max_tokens: int) -> tuple[int, float]:
    start = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens)
    return reply.usage.completion_tokens, time.perf_counter() - start


def arm(client, model: str, batch: list, clients: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    if clients == 0:   # sequential
        results = [one(client, model, m, max_tokens) for m in batch]
    else:
        shares = [batch[i::clients] for i in range(clients)]
        with ThreadPoolExecutor(max_workers=clients) as pool:
            parts = pool.map(lambda share: [one(client, model, m, max_tokens) for m in share], shares)
            results = [r for part in parts for r in part]
    wall = time.perf_counter() - start
    tokens = sum(t for t, _ in results)
    latencies = sorted(lat for _, lat in results)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_s": statistics.median(latencies), "p95_s": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]}


def bench_model(model: str, clients_list: list[int], rounds: int, repeats: int, max_tokens: int, port: int) -> list:
    import openai

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(model, Path(tmp) / "run")
        server = start_server(run_dir, port, max_tokens)
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
            one(client, "run", requests_for(1)[0], 4)   # warm-up
            rows = []
            for n in clients_list:
                batch = requests_for(n * rounds)
                seq, conc = [], []
                for _ in range(repeats):   # interleaved: sequential, concurrent, sequential, concurrent ...
                    seq.append(arm(client, "run", batch, 0, max_tokens))
                    conc.append(arm(client, "run", batch, n, max_tokens))
                med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
                row = {"model": model, "clients": n, "requests": len(batch),
                       "sequential_tokens_per_s": med(seq, "tokens_per_s"), "concurrent_tokens_per_s": med(conc, "tokens_per_s"),
                       "sequential_p50_s": med(seq, "p50_s"), "concurrent_p50_s": med(conc, "p50_s"),
                       "concurrent_p95_s": med(conc, "p95_s"), "tokens": [r["tokens"] for r in seq + conc],
                       "repeats": {"sequential": seq, "concurrent": conc}}
                row["ratio"] = row["concurrent_tokens_per_s"] / row["sequential_tokens_per_s"]
                print(f"{model:>14} {n:>2} clients: {row['sequential_tokens_per_s']:7.1f} -> "
                      f"{row['concurrent_tokens_per_s']:7.1f} tok/s (x{row['ratio']:.2f}), "
                      f"p50 {row['concurrent_p50_s']:.2f}s p95 {row['concurrent_p95_s']:.2f}s", flush=True)
                rows.append(row)
            return rows
        finally:
            server.terminate()
            server.wait(timeout=30)


def plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        xs = range(len(mine))
        ax.bar([x - 0.2 for x in xs], [r["sequential_tokens_per_s"] for r in mine], 0.4, label="one at a time")
        ax.bar([x + 0.2 for x in xs], [r["concurrent_tokens_per_s"] for r in mine], 0.4, label="concurrent clients")
        for x, r in zip(xs, mine):
            ax.text(x + 0.2, r["concurrent_tokens_per_s"], f"x{r['ratio']:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [str(r["clients"]) for r in mine])
        ax.set(title=f"doctorkit.serve, {model} (CPU)", xlabel="clients", ylabel="completion tokens/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="builtin:tiny, small-llama (default both)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", default=str(RESULTS / "serve-cpu.json"))
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    rows = [row for model in args.model or ["builtin:tiny", "small-llama"]
            for row in bench_model(model, args.clients, args.rounds, args.repeats, args.max_tokens, free_port())]
    out = Path(args.out)
    result = {"schema": "doctorkit-bench/1", "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m bench.serve " + " ".join(argv if argv is not None else sys.argv[1:]),
              "note": "shared 2-core machine: 7 other jobs ran at the same time; arms interleaved, medians reported",
              "machine": {"cores": os.cpu_count(), "server_torch_threads": THREADS,
                          "platform": platform.platform(), "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
              "results": rows}
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
