"""Contamination check at scale: `data overlap` on synthetic corpora the size the issue names.

    python -m bench.overlap_speed [--train 100000] [--exam 10000] [--out bench/results/overlap-cpu.json]

The issue asks for "minutes, not hours" for 100k training dialogs against a 10k-item exam, an absolute
target, so this reports seconds (and training characters per second) rather than a ratio. Texts are drawn
from the character frequencies of data/sample_zh.jsonl (so common characters collide as in real Chinese),
dialogs ~300 characters, items ~120; 1% of the items are planted into training text, and the run checks
they are all found at their planted length or longer.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import time
from collections import Counter
from pathlib import Path

from doctorkit.data.overlap import MIN_CHARS, longest_overlaps


def char_sampler(seed: int):
    text = Path("data/sample_zh.jsonl").read_text(encoding="utf-8")
    counts = Counter(c for c in text if "\u4e00" <= c <= "\u9fff")
    chars, weights = list(counts), list(counts.values())
    rng = random.Random(seed)
    return lambda n: "".join(rng.choices(chars, weights, k=n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--exam", type=int, default=10_000)
    parser.add_argument("--out")
    args = parser.parse_args()
    draw = char_sampler(0)
    exam = [draw(120) for _ in range(args.exam)]
    train = [draw(300) for _ in range(args.train)]
    planted = list(range(0, args.exam, 100))
    for n, item in enumerate(planted):  # a 20-char slice of every 100th item inside some training dialog
        row = (n * 7919) % args.train
        train[row] = train[row][:100] + exam[item][30:50] + train[row][100:]
    started = time.perf_counter()
    found = longest_overlaps(train, exam)
    seconds = time.perf_counter() - started
    chars = sum(map(len, train))
    result = {
        "command": f"python -m bench.overlap_speed --train {args.train} --exam {args.exam}",
        "train_dialogs": args.train, "exam_items": args.exam, "train_chars": chars, "seconds": round(seconds, 1),
        "train_chars_per_s": round(chars / seconds), "planted": len(planted),
        "planted_found": sum(found[i].longest >= 20 for i in planted),
        "flagged_total": sum(o.longest >= MIN_CHARS for o in found),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs "
                   f"(1-minute load average {os.getloadavg()[0]:.1f} at the end)",
        "date": dt.date.today().isoformat(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
