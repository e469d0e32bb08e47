"""Cut a field into segments a translator can take, and put the translations back together.

A field becomes lines (its own newlines are kept exactly); each line becomes segments of at most
`max_chars`: whole sentences packed greedily, a too-long sentence cut at clause marks, then at spaces.
Packing matters for cost: every teacher request repeats the system prompt, so one request per short
sentence would pay for the prompt several times over. Hand-written because the sentence splitters
that exist (nltk punkt, spaCy) are heavy downloads for a rule this small.
"""
from __future__ import annotations

import re

# a sentence ends at . ! ? followed by space, unless the word before is a common abbreviation
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ABBREVIATIONS = ("dr.", "mr.", "mrs.", "ms.", "e.g.", "i.e.", "vs.", "etc.", "approx.", "no.", "st.")
_CLAUSE_END = re.compile(r"(?<=[;:,])\s+")


class Unsplittable(ValueError):
    """A piece of text longer than max_chars with no place to cut it (e.g. a huge URL)."""


def _sentences(line: str) -> list[str]:
    parts, current = [], ""
    for piece in _SENTENCE_END.split(line):
        current = f"{current} {piece}" if current else piece
        if not current.lower().endswith(_ABBREVIATIONS):
            parts.append(current)
            current = ""
    if current:
        parts.append(current)
    return parts


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Join neighbouring pieces with a space while they fit in max_chars."""
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
            packed[-1] = f"{packed[-1]} {piece}"
        else:
            packed.append(piece)
    return packed


def _fit(piece: str, max_chars: int) -> list[str]:
    if len(piece) <= max_chars:
        return [piece]
    for splitter in (_CLAUSE_END, re.compile(r"\s+")):
        parts = [p for p in splitter.split(piece) if p]
        if len(parts) > 1:
            return _pack([small for part in parts for small in _fit(part, max_chars)], max_chars)
    raise Unsplittable(f"{len(piece)} characters with no sentence, clause or space break (max {max_chars})")


def split_field(text: str, max_chars: int) -> list[list[str]]:
    """Lines of segments; an empty line is an empty list, so joining restores the line breaks."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        pieces = [small for sentence in _sentences(line) for small in _fit(sentence, max_chars)] if line else []
        lines.append(_pack(pieces, max_chars))
    return lines


def join_field(lines: list[list[str]]) -> str:
    """Chinese needs no space between sentences; line breaks come back where they were."""
    return "\n".join("".join(segments) for segments in lines)
