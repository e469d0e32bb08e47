"""A long-tailed length mix like real online consultations, written from our own sample phrases.

Real doctor–patient exchanges are short questions with replies whose lengths spread over an order of
magnitude (a one-line answer next to a page of advice): lognormal lengths model that tail. The words come
from doctorkit.builtin.sampledata, so the embedded tokenizer covers them and no outside text is committed.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from doctorkit.builtin.sampledata import corpus_text

# characters per turn ~ lognormal(median, sigma), shaped after a public Chinese medical SFT set
# (replies: median ~120 characters, p95 ~700, i.e. sigma ~1); questions are short.
USER_MEDIAN, USER_SIGMA = 30, 0.9
REPLY_MEDIAN, REPLY_SIGMA = 150, 1.0
SECOND_TURN_SHARE = 0.2          # some consultations have a follow-up question
MAX_CHARS = 1400                 # keep the tail inside a 512-token row for the tokenizers we use


def _text(rng: random.Random, phrases: list[str], n_chars: int) -> str:
    out, size = [], 0
    while size < n_chars:
        phrase = rng.choice(phrases)
        out.append(phrase)
        size += len(phrase)
    return "".join(out)[:n_chars]


def _chars(rng: random.Random, median: float, sigma: float) -> int:
    return max(4, min(MAX_CHARS, int(rng.lognormvariate(0.0, sigma) * median)))


def make_conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    phrases = [line for line in corpus_text().splitlines() if line.strip()]
    rows = []
    for _ in range(n):
        messages = []
        for _turn in range(2 if rng.random() < SECOND_TURN_SHARE else 1):
            messages.append({"role": "user", "content": _text(rng, phrases, _chars(rng, USER_MEDIAN, USER_SIGMA))})
            messages.append({"role": "assistant",
                             "content": _text(rng, phrases, _chars(rng, REPLY_MEDIAN, REPLY_SIGMA))})
        rows.append({"messages": messages})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
