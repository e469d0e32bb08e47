"""Scores computed from written prediction files, so every printed number can be recomputed by anyone.

BLEU-4 and chrF come from sacrebleu (BLEU with its Chinese tokenizer), ROUGE-L from Google's rouge_score
with a character tokenizer: its default tokenizer keeps only [a-z0-9] and scores Chinese as all zeros.
"""
from __future__ import annotations

import math
import re

from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics import BLEU, CHRF

# One token per CJK character (ideographs, extension A, compatibility), one per run of Latin letters/digits;
# punctuation and spaces are dropped, as rouge_score's own tokenizer drops them for English.
_CHAR_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")
REPETITION_N = 4   # character 4-grams: long enough that normal Chinese prose rarely repeats one


class CharTokenizer(tokenizers.Tokenizer):
    """rouge_score tokenizer for Chinese (and mixed) text: characters, not whitespace-separated words."""

    def tokenize(self, text):
        return _CHAR_TOKEN.findall(text.lower())


def bleu_metric() -> BLEU:
    return BLEU(tokenize="zh")


def chrf_metric() -> CHRF:
    return CHRF()


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean sentence-level ROUGE-L F1 (x100, like sacrebleu's scale), character level."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return 100.0 * sum(scores) / len(scores) if scores else 0.0


def repetition_rate(text: str, n: int = REPETITION_N) -> float | None:
    """Share of the text's character n-grams that repeat an earlier one (1 - distinct-n); None if too short.

    The failure we watch for is a tuned model looping ("多喝水，多喝水，多喝水…"): that drives this toward 1.
    """
    chars = [c for c in text if not c.isspace()]
    grams = [tuple(chars[i:i + n]) for i in range(len(chars) - n + 1)]
    if not grams:
        return None
    return 1.0 - len(set(grams)) / len(grams)


def dialog_scores(predictions: list[str], references: list[str]) -> dict:
    bleu, chrf = bleu_metric(), chrf_metric()
    refs = [references]
    repetition = [r for r in (repetition_rate(p) for p in predictions) if r is not None]
    return {
        "bleu4": round(bleu.corpus_score(predictions, refs).score, 4),
        "chrf": round(chrf.corpus_score(predictions, refs).score, 4),
        "rougeL": round(rouge_l(predictions, references), 4),
        "avg_pred_chars": round(sum(map(len, predictions)) / max(len(predictions), 1), 2),
        "avg_ref_chars": round(sum(map(len, references)) / max(len(references), 1), 2),
        f"repetition_{REPETITION_N}gram": round(sum(repetition) / len(repetition), 4) if repetition else 0.0,
        "empty_predictions": sum(1 for p in predictions if not p.strip()),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "rouge_signature": "rouge_score rougeL F1 x100, char tokens, mean over samples",
    }


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion.

    Hand-written: it is three lines, and no installed library (scipy/statsmodels are absent) provides it.
    Unlike the normal approximation it stays inside [0, 1] and is honest for the small exams we ship.
    """
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_with_ci(correct: list[bool]) -> dict:
    hits, total = sum(correct), len(correct)
    low, high = wilson_interval(hits, total)
    return {"accuracy": round(hits / total, 4) if total else 0.0, "correct": hits, "total": total,
            "ci95": [round(low, 4), round(high, 4)]}


def mcnemar_exact(tuned: list[bool], base: list[bool]) -> dict:
    """Exact (binomial) McNemar test on paired right/wrong answers to the same questions.

    Only discordant pairs carry information: b = tuned right where base is wrong, c = the reverse. Under "no
    difference" b ~ Binomial(b + c, 1/2); the two-sided p-value doubles the smaller tail. Hand-written with
    math.comb because scipy is not a dependency (scipy.stats.binomtest gives the same value).
    """
    b = sum(1 for t, s in zip(tuned, base) if t and not s)
    c = sum(1 for t, s in zip(tuned, base) if s and not t)
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n if n else 1.0
    return {"tuned_only": b, "base_only": c, "p_value": round(min(1.0, 2 * tail), 6)}
