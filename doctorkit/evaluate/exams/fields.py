"""Field helpers every layout shares: answer letters, options, question text."""
from __future__ import annotations

import re


def answer_letters(answer, options: dict) -> str:
    """"ACD", "A,C,D", "A、C", ["A", "C"] -> "ACD"; ValueError if empty or a letter is not an option."""
    text = "".join(answer) if isinstance(answer, (list, tuple)) else str(answer or "")
    letters = sorted(set(re.sub(r"[\s,，、;；/]+", "", text).upper()))
    if not letters:
        raise ValueError("no answer (unpublished answers, e.g. a test split, cannot be scored)")
    wrong = [letter for letter in letters if letter not in options]
    if wrong:
        raise ValueError(f"answer '{text}' is not one of the options {', '.join(options)}")
    return "".join(letters)


def clean_options(options: dict) -> dict:
    """{letter: text} with upper-case letters and empty options dropped (CMB leaves E empty on 4-option items)."""
    cleaned = {str(k).strip().upper(): str(v).strip() for k, v in options.items() if v is not None and str(v).strip()}
    if len(cleaned) < 2:
        raise ValueError("fewer than two options")
    return cleaned


def question_text(record: dict, key: str) -> str:
    text = str(record.get(key) or "").strip()
    if not text:
        raise ValueError("empty question")
    return text
