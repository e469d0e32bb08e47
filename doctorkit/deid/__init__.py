"""De-identification: find names, ID / phone / record / insurance / bank numbers, e-mails, addresses, plates,
URLs, IPs, person dates and ages over 89 in Chinese and English dialogs, and replace them.

    from doctorkit.deid import scrub, Deidentifier
    scrub("王女士，电话13800138000")                 -> "【姓名1】女士，电话【电话1】"
    Deidentifier("surrogate").record(messages, key)  -> messages with fakes, counts by type

Used where text leaves the machine or enters a model: `translate seed` (teacher.deid), training data
preparation (data.deid), the serving audit log, and `python -m doctorkit.deid` (command.py).

Why our own rules (evaluated 2026-12-01 against bench/deid_quality.py's test set, on this machine):
- presidio-analyzer (Microsoft Presidio) needs a spaCy language model for every language, and no model can
  be downloaded here; its built-in recognizers are for US / EU identifiers (no 身份证 check digit, no
  住院号, no Chinese phone spacings), so every Chinese recognizer would be ours anyway, behind a larger
  dependency.
- cn-pii-anonymization (the one Chinese PII package on the index with recognizers for these types)
  requires Python >= 3.12 and does not install on our supported 3.11.
- the other 脱敏 packages on the index mask fields of tables (Excel, logs) or fixed regex lists, with no
  names in running text.
So: checksummed patterns and labels (patterns.py), and names from jieba's part-of-speech tags plus surname
/ honorific rules (names.py), measured in bench/deid_quality.py.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter

from doctorkit.deid.names import find_names
from doctorkit.deid.patterns import Span, find_patterns
from doctorkit.deid.replace import LABELS, STYLES, RecordScope
from doctorkit.errors import DoctorKitError

__all__ = ["Deidentifier", "scrub", "warm_up", "LABELS", "STYLES", "Span", "find_spans"]
PROPAGATED = 15   # priority of a name found elsewhere in the record and matched again by its text


def resolve(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans: the higher priority wins an overlap, then the longer span, then the one found first
    (detectors and labels are listed most specific first: 医保卡号 is INSURANCE, not the BANK label 卡号 inside it);
    sorted by start. Deduplicated in order, not through a set, so ties never depend on string hashing."""
    kept: list[Span] = []
    for span in sorted(dict.fromkeys(spans), key=lambda s: (-s.priority, -(s.end - s.start), s.start)):
        if span.end > span.start and all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept)


def find_spans(text: str) -> list[Span]:
    """Every identifier of one text, overlaps resolved."""
    return resolve(find_patterns(text) + find_names(text))


class Deidentifier:
    """Scrubs records (lists of chat messages) or single texts; counts what it replaced by type.

    `seed` fixes the surrogates and date offsets: the same input and seed give the same output.
    `keep_map` records (type, original, replacement) triples: that mapping re-identifies, handle it so.
    """

    def __init__(self, style: str = "tag", seed: int = 0, keep_map: bool = False):
        if style not in STYLES:
            raise DoctorKitError(f"de-identification style '{style}' is not one of: {', '.join(STYLES)}")
        self.style, self.seed, self.keep_map = style, seed, keep_map
        self.counts: Counter = Counter()
        self.records_touched = 0
        self.mapping: list[dict] = []

    def record(self, messages: list[dict], key: str = "") -> list[dict]:
        """The messages with identifiers replaced (same roles and order); a name found in one turn is
        replaced in every turn of the record."""
        found = [find_patterns(m["content"]) + find_names(m["content"]) for m in messages]
        names = {m["content"][s.start:s.end] for m, spans in zip(messages, found) for s in spans
                 if s.type == "NAME" and s.end - s.start >= 2}
        if names:
            again = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)))
            for m, spans in zip(messages, found):
                spans += [Span(x.start(), x.end(), "NAME", PROPAGATED) for x in again.finditer(m["content"])]
        scope = RecordScope(self.style, self.seed, key or _digest(messages))
        out, replaced = [], 0
        for message, spans in zip(messages, found):
            text, replaced_here = self._apply(message["content"], resolve(spans), scope)
            replaced += replaced_here
            out.append({**message, "content": text})
        self.records_touched += replaced > 0
        return out

    def text(self, text: str, key: str = "") -> str:
        return self.record([{"role": "user", "content": text}], key)[0]["content"]

    def _apply(self, text: str, spans: list[Span], scope: RecordScope) -> tuple[str, int]:
        pieces, last = [], 0
        for span in spans:
            original = text[span.start:span.end]
            new = scope.replace(span.type, original)
            pieces += [text[last:span.start], new]
            last = span.end
            self.counts[span.type] += 1
            if self.keep_map:
                self.mapping.append({"type": span.type, "original": original, "replacement": new})
        pieces.append(text[last:])
        return "".join(pieces), len(spans)


def _digest(messages: list[dict]) -> str:
    return hashlib.sha256("\x00".join(m["content"] for m in messages).encode("utf-8")).hexdigest()[:16]


def warm_up() -> None:
    """Build the name segmenter now (jieba's dictionary: 1-2 s once per process) instead of on the first
    text that holds a name candidate; a server calls this at start."""
    from doctorkit.deid.names import segmenter
    segmenter()


def scrub(text: str, style: str = "tag") -> str:
    """One text with every identifier replaced (numbering and surrogates scoped to this text)."""
    return Deidentifier(style).text(text)


def run(argv: list[str] | None = None) -> None:
    """`doctorkit deid ...` (doctorkit/cli.py) lands here; the command lives in command.py."""
    from doctorkit.deid.command import run as run_command
    run_command(argv)
