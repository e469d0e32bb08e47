"""`python -m translate score RECIPE --set score.hypotheses=F --set score.references=G`: BLEU and chrF.

sacrebleu's own metric objects do the work (BLEU with the "zh" tokenizer, which splits Chinese into
characters; chrF), so the numbers and signatures are exactly those `sacrebleu -tok zh` prints.
"""
from __future__ import annotations

import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from doctorkit.errors import DoctorKitError
from translate.recipe import TranslateRecipe


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict:
    bleu, chrf = BLEU(tokenize="zh"), CHRF()
    b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {"bleu": b.score, "chrf": c.score, "bleu_text": str(b), "chrf_text": str(c),
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
            "segments": len(hypotheses)}


def _dig(row: object, dotted: str):
    for part in dotted.split("."):
        row = row[int(part)] if isinstance(row, list) and part.isdigit() else row[part]
    return row


def read_texts(path: str | Path, key: str) -> list[str]:
    """A .txt file gives a line each; a .jsonl file gives the text at `key` (dotted) of each line."""
    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text = _dig(json.loads(line), key)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise DoctorKitError(f"{path}:{number}: no text at '{key}' (set score.key / score.ref_key)") from None
        texts.append(str(text))
    return texts


def score(recipe: TranslateRecipe) -> dict:
    cfg = recipe.score
    if not cfg.hypotheses or not cfg.references:
        raise DoctorKitError("score: set score.hypotheses and score.references (e.g. --set score.hypotheses=out.txt)")
    hyps = read_texts(cfg.hypotheses, cfg.key)
    refs = read_texts(cfg.references, cfg.ref_key or cfg.key)
    if len(hyps) != len(refs):
        raise DoctorKitError(f"{cfg.hypotheses}: {len(hyps)} translations but {cfg.references} has {len(refs)} references")
    result = corpus_scores(hyps, refs)
    print(f"{result['bleu_text']}\n  {result['bleu_signature']}\n{result['chrf_text']}\n  {result['chrf_signature']}")
    return result
