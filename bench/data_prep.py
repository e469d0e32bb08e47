"""Data preparation speed: conversations/s of doctorkit.data.prepare with 1 and 2 tokenizing processes, and a cache hit.

    python -m bench.data_prep [--dialogs 100000] [--repeats 1] [--out bench/results/data-prep.json]

Generated long-tailed dialogs (bench/data.py), the embedded tiny model's tokenizer, the cache off for the timed
arms (DOCTORKIT_DATA_CACHE=off), arms alternating 1, 2, 1, 2 ... so a busy machine slows both alike; then one
cold + one warm run with the cache on to time a resume. The machine may be shared: every arm also records the
1-minute load average when it started and the CPU-seconds it used (this process and its tokenizing processes), so
wall time can be read against contention.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.data import make_conversations, write_jsonl

RESULTS = Path(__file__).parent / "results"


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (datasets.map's pool is joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_prepare(data: Path, num_proc: int) -> tuple[float, int]:
    from doctorkit.data import prepare
    from doctorkit.recipe import load_recipe
    from doctorkit.builtin.tiny import build_tokenizer

    recipe = load_recipe("recipes/quickstart.yaml", [f"data.path={data}", "data.val_ratio=0", f"data.num_proc={num_proc}",
                                                     "train.max_seq_len=512"])
    tokenizer = build_tokenizer()
    started = time.perf_counter()
    prepared = prepare(recipe, tokenizer)
    return time.perf_counter() - started, prepared.report.samples_used


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.data_prep", description=__doc__.splitlines()[0])
    p.add_argument("--dialogs", type=int, default=100000)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "data-prep.json")
    p.add_argument("--note", default="", help="a sentence stored with the figures (e.g. what else ran meanwhile)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="doctorkit-prep-") as tmp:
        data = write_jsonl(make_conversations(args.dialogs, seed=3), Path(tmp) / "dialogs.jsonl")
        os.environ["DOCTORKIT_DATA_CACHE"] = "off"
        times, cpu, load = {1: [], 2: []}, {1: [], 2: []}, {1: [], 2: []}
        for _ in range(args.repeats):
            for procs in (1, 2):
                load[procs].append(round(os.getloadavg()[0], 2))
                before = cpu_seconds()
                seconds, used = timed_prepare(data, procs)
                times[procs].append(round(seconds, 2))
                cpu[procs].append(round(cpu_seconds() - before, 2))
                print(f"{procs} process(es): {seconds:.1f} s, {used / seconds:.0f} conversations/s, "
                      f"{cpu[procs][-1]:.1f} CPU-s, load {load[procs][-1]}", flush=True)
        os.environ["DOCTORKIT_DATA_CACHE"] = str(Path(tmp) / "cache")
        cache_load = round(os.getloadavg()[0], 2)
        cold, _ = timed_prepare(data, 2)
        warm, _ = timed_prepare(data, 2)
    rate = {n: used / statistics.median(t) for n, t in times.items()}
    result = {
        "command": shlex.join(["python", "-m", "bench.data_prep", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, shared with other jobs while measured (load average {os.getloadavg()[0]:.1f})",
        "dialogs": args.dialogs, "samples_used": used, "seconds": times, "cpu_seconds": cpu,
        "load_average_1min_at_start": load,
        "conversations_per_s": {"1 process": round(rate[1]), "2 processes": round(rate[2])},
        "speedup_2_vs_1": round(rate[2] / rate[1], 2),
        "cpu_seconds_per_1000_conversations": {f"{n} process(es)": round(1000 * statistics.median(c) / used, 2)
                                               for n, c in cpu.items()},
        # CPU-seconds over wall seconds: how many cores the arm actually got on a shared machine
        "cores_used": {f"{n} process(es)": round(statistics.median(cpu[n]) / statistics.median(times[n]), 2)
                       for n in times},
        "note": args.note,
        "cache": {"cold_s": round(cold, 1), "warm_s": round(warm, 2), "load_average_1min_at_start": cache_load},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result["conversations_per_s"]), f"x{result['speedup_2_vs_1']}", result["cache"], "->", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
