"""Everything about one multiple-choice answer: the prompt (with few-shot examples and chain-of-thought),
reading letters out of a reply, choosing several letters from option scores, the vote over sampled chains,
and the credit an answer earns. Plain functions over plain data, so predictions.jsonl can be rescored.
"""
from __future__ import annotations

import math
import re
from collections import Counter

INSTRUCTION = {False: "以下是一道单项选择题，请只回答正确选项的字母。",
               True: "以下是一道多项选择题（有两个或以上正确选项），请只回答所有正确选项的字母。"}
COT_INSTRUCTION = {False: "以下是一道单项选择题。请先逐步分析，最后单独一行写“答案：”和正确选项的字母。",
                   True: "以下是一道多项选择题（有两个或以上正确选项）。请先逐步分析，最后单独一行写“答案：”和所有正确选项的字母。"}
# A reply's answer: letters after the last "答案"/"answer" marker; without a marker, its last line that has any.
_MARKER = re.compile(r"(?:答案|answer)(?:是|为|is)?\s*[:：]?", re.IGNORECASE)
_LETTER_RUN = re.compile(r"(?<![A-Za-z])([A-Z](?:[\s,，、和及与/]*[A-Z])*)(?![A-Za-z])")


# ------------------------------------------------------------------ prompt ---

def question_text(item: dict, cot: bool = False) -> str:
    listed = "\n".join(f"{letter}. {text}" for letter, text in item["options"].items())
    instruction = (COT_INSTRUCTION if cot else INSTRUCTION)[bool(item.get("multi"))]
    return f"{instruction}\n\n{item['question']}\n{listed}\n" + ("" if cot else "答案：")


def shot_reply(item: dict, cot: bool) -> str:
    if cot and item.get("explanation"):
        return f"{item['explanation']}\n答案：{item['answer']}"
    return item["answer"] if not cot else f"答案：{item['answer']}"


def question_messages(item: dict, system_prompt: str | None = None, shots: list[dict] = (), cot: bool = False) -> list[dict]:
    """The chat a model answers: system prompt, then each few-shot example as a solved user/assistant turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for shot in shots:
        messages += [{"role": "user", "content": question_text(shot, cot)},
                     {"role": "assistant", "content": shot_reply(shot, cot)}]
    return messages + [{"role": "user", "content": question_text(item, cot)}]


def pick_shots(dev_items: list[dict], test_items: list[dict], k: int) -> dict:
    """subject -> K dev examples (same subject first, then others, in file order). Dev items whose question
    also appears among the test items are dropped: a shot is never a test item."""
    test_questions = {item["question"] for item in test_items}
    pool = [item for item in dev_items if item["question"] not in test_questions]
    chosen = {}
    for subject in {item.get("subject") for item in test_items}:
        same = [item for item in pool if item.get("subject") == subject]
        chosen[subject] = (same + [item for item in pool if item.get("subject") != subject])[:k]
    return chosen


# ----------------------------------------------------------------- answers ---

def parse_letters(reply: str, letters) -> str | None:
    """The option letters a reply answers with, sorted ("ACD"), or None when it names none.

    Letters count only standing alone ("B", "A、C", "ACD"), not inside words ("Because").
    """
    text = reply  # option letters are capitals; upper-casing would turn English words into letter runs
    markers = list(_MARKER.finditer(text))
    regions = [text[markers[-1].end():]] if markers else list(reversed(text.splitlines())) or [text]
    for region in regions:
        for run in _LETTER_RUN.findall(region):
            found = sorted({c for c in run if c in letters})
            if found and all(c in letters for c in run if c.isalpha()):
                return "".join(found)
    return None


def choose_several(scores: dict, threshold: float | None = None) -> str:
    """Several letters from option log-likelihoods (loglik mode on a multi-answer question).

    The scores become probabilities over the options (softmax); every option at or above `threshold`
    is chosen, by default 1/n (an option the model prefers to a uniform guess). A multi-answer question has
    at least two correct letters, so at least the two most likely options are chosen.
    """
    top = max(scores.values())
    weights = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(weights.values())
    probs = {k: w / total for k, w in weights.items()}
    cut = 1.0 / len(probs) if threshold is None else threshold
    ranked = sorted(probs, key=lambda k: -probs[k])
    chosen = [k for k in ranked if probs[k] >= cut]
    return "".join(sorted(chosen if len(chosen) >= 2 else ranked[:2]))


def vote(answers: list[str | None]) -> str | None:
    """Self-consistency's majority vote over the answers of sampled chains (None: a chain named no letter).
    Ties go to the answer reached first, so the vote is a function of the chains as written."""
    counts = Counter(a for a in answers if a)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a and counts[a] == best)


def credit(pred: str | None, gold: str) -> float:
    """Partial credit, as Chinese multi-answer (X-type) exam papers mark: choosing only correct letters earns
    their share of the correct set (|P|/|G|), any wrong letter earns 0. A single-answer item earns 1 or 0."""
    if not pred or not set(pred) <= set(gold):
        return 0.0
    return len(set(pred)) / len(set(gold))


CALIBRATION_GRID = [round(0.02 * i, 2) for i in range(1, 31)]  # option probabilities 0.02 .. 0.60


def best_threshold(scores: list[dict], golds: list[str]) -> float:
    """The threshold for choose_several that gets the most dev multi-answer sets exactly right (ties: the
    lowest), i.e. `--multi-threshold calibrate`, fitted on dev questions and never on the test items."""
    hits = [sum(choose_several(s, t) == g for s, g in zip(scores, golds)) for t in CALIBRATION_GRID]
    return CALIBRATION_GRID[hits.index(max(hits))]
