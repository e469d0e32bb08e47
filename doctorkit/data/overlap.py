"""Contamination check: for every exam item, the longest run of characters it shares with the training data.

`python -m doctorkit.data overlap TRAIN_FILE EXAM_FILE [--min-chars 13] [--json]`; evaluation drops the
flagged items with `evaluate --exclude-contaminated TRAIN_FILE`.

Hand-written because no installed library finds longest common substrings between two large corpora. The
exam side (small: 10k items) is indexed by the hash of every SEED-character gram; the training side (large)
is streamed once, and each seed hit is grown forward and backward into the full shared run, once per
alignment (a long copied passage is not re-grown from each of its characters). Text is compared after NFKC
and with whitespace removed, so full-width / half-width and line breaks do not hide a copy.
Cost: one dict lookup per training character, plus work proportional to the shared text found.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterable

from doctorkit.errors import DoctorKitError

SEED = 8             # shared runs shorter than this are reported as 0 (too common to mean copying)
MIN_CHARS = 13       # default flag: a 13-character run is rarely shared by chance in Chinese exam text
COMMON_GRAM = 64     # a seed found in more exam places than this is stock phrasing ("下列哪项是正确的"): not a seed
SEPARATOR = "\x00"   # joins an item's fields so a run never spans two of them


def normalize(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class Overlap:
    longest: int    # characters in the longest run shared with the training data (0: under SEED)
    shared: str     # that run


def _index(exams: list[str]) -> dict[int, list[int]]:
    index: dict[int, list[int]] = {}
    for item, text in enumerate(exams):
        for pos in range(len(text) - SEED + 1):
            gram = text[pos:pos + SEED]
            if SEPARATOR not in gram:
                index.setdefault(hash(gram), []).append(item << 20 | pos)  # items and positions packed in one int
    return {gram: places for gram, places in index.items() if len(places) <= COMMON_GRAM}


def longest_overlaps(train_texts: Iterable[str], exam_texts: list[str]) -> list[Overlap]:
    """One Overlap per exam text: its longest character run that also occurs in some training text."""
    exams = [normalize(t) for t in exam_texts]
    index = _index(exams)
    best = [Overlap(0, "") for _ in exams]
    for raw in train_texts:
        text = normalize(raw)
        grown: dict[tuple[int, int], int] = {}  # (item, alignment) -> training position its run reaches
        for i in range(len(text) - SEED + 1):
            places = index.get(hash(text[i:i + SEED]))
            if places is None:
                continue
            for packed in places:
                item, pos = packed >> 20, packed & 0xFFFFF
                if grown.get((item, i - pos), -1) > i:
                    continue
                exam = exams[item]
                start = 0
                while i - start > 0 and pos - start > 0 and text[i - start - 1] == exam[pos - start - 1]:
                    start += 1
                end = 0
                while i + end < len(text) and pos + end < len(exam) and text[i + end] == exam[pos + end]:
                    end += 1
                grown[(item, i - pos)] = i + end
                if start + end > best[item].longest:
                    best[item] = Overlap(start + end, exam[pos - start:pos + end])
    return best


def exam_item_text(item: dict) -> str:
    return SEPARATOR.join([item["question"], *item["options"].values()])


def training_texts(path, counts: dict) -> Iterable[str]:
    """Each training conversation's turns, read the way training reads them (doctorkit.data.formats);
    conversations read and records skipped are counted in `counts`."""
    from doctorkit.data.formats import iter_file
    from doctorkit.data.readers import BadRecord
    from doctorkit.recipe import DataConfig

    for _, record in iter_file(path, DataConfig(path=str(path))):
        key = "skipped" if isinstance(record, BadRecord) else "read"
        counts[key] = counts.get(key, 0) + 1
        if key == "read":
            yield SEPARATOR.join(turn["content"] for turn in record)


def check(train_path, exam_items: list[dict], min_chars: int = MIN_CHARS) -> dict:
    """{"items": [{id, longest, shared}], "flagged": [...those with longest >= min_chars], ...}."""
    if min_chars < SEED:
        raise DoctorKitError(f"--min-chars {min_chars}: runs shorter than {SEED} characters are not tracked")
    counts: dict = {}
    overlaps = longest_overlaps(training_texts(train_path, counts), [exam_item_text(i) for i in exam_items])
    if not counts.get("read"):
        raise DoctorKitError(f"{train_path}: no training conversation read ({counts.get('skipped', 0)} records "
                             f"skipped); give a file in a format training reads")
    rows = [{"id": item["id"], "longest": o.longest, "shared": o.shared} for item, o in zip(exam_items, overlaps)]
    return {"train": str(train_path), "train_conversations": counts["read"], "train_skipped": counts.get("skipped", 0),
            "items_checked": len(rows), "min_chars": min_chars, "seed_chars": SEED,
            "flagged": [row for row in rows if row["longest"] >= min_chars], "items": rows}
