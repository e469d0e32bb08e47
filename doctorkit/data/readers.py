"""Read data files as text (one encoding detector) and as records (JSON Lines, JSON lists, CSV rows).

Every record comes back with where it was found (`file:line`), so a bad one is reported where the user
can open it. Which conversation format a record is in, and how it becomes chat messages, is
doctorkit/data/formats.py (the registry every command reads through).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Iterator

from charset_normalizer import from_bytes

from doctorkit.errors import DoctorKitError

CHINESE_ENCODINGS = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
DETECT_BYTES = 256 * 1024  # enough text to recognise an encoding; detection on the whole file is slow


class BadRecord(ValueError):
    """A record that cannot be read as a conversation; the message says why."""


# ------------------------------------------------------------------ text ---

# Undecodable bytes are kept as lone surrogates (errors="surrogateescape") so that only the lines holding
# them are skipped (file:line, counted, or an error under data.on_error: fail), never the whole file.
UNDECODABLE = re.compile("[\udc80-\udcff]")
MOSTLY_UTF8 = 0.01  # at most this share of lines with bad bytes: a UTF-8 file with damage, not another encoding


def undecodable(text: str) -> BadRecord | None:
    match = UNDECODABLE.search(text)
    if match is None:
        return None
    return BadRecord(f"undecodable byte 0x{ord(match.group()) - 0xDC00:02x} (not text in the file's encoding, "
                     f"data.encoding)")


def _damaged(raw: bytes, encoding: str) -> str | None:
    """The text with its few bad bytes kept for per-line skipping, or None when the file is in another
    encoding (one error for the whole file, or the next guess). A damaged file has few bad lines AND some
    non-ASCII lines that decode well: in a file of another encoding (a GB18030 CSV read as UTF-8) nearly every
    non-ASCII line is bad, even when that is a single line of a tiny file."""
    text = raw.decode(encoding, errors="surrogateescape")
    lines = text.splitlines()
    bad = sum(1 for line in lines if UNDECODABLE.search(line))
    good_non_ascii = sum(1 for line in lines if not line.isascii() and not UNDECODABLE.search(line))
    return text if good_non_ascii and bad <= max(1, MOSTLY_UTF8 * len(lines)) else None


def read_text(path: Path, encoding: str = "auto") -> str:
    raw = path.read_bytes()
    if encoding != "auto":
        try:
            return raw.decode(encoding)
        except LookupError:
            raise DoctorKitError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
        except UnicodeDecodeError as err:
            damaged = _damaged(raw, encoding)
            if damaged is not None:
                return damaged
            raise DoctorKitError(f"{path}: not valid {encoding} at byte {err.start}; "
                                 f"set data.encoding to the file's encoding or auto") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    damaged = _damaged(raw, "utf-8-sig")
    if damaged is not None:
        return damaged
    sample = raw[:DETECT_BYTES]
    best = from_bytes(sample).best()
    guess = best.encoding if best else None
    # GB2312 and GBK are subsets of GB18030: decoding with the superset never loses a character.
    guess = "gb18030" if guess in CHINESE_ENCODINGS else guess
    for name in filter(None, [guess, "gb18030"]):
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
    raise DoctorKitError(f"{path}: cannot tell the text encoding; set data.encoding (e.g. gb18030, utf-8)")


# --------------------------------------------------------------- records ---

def iter_json_records(path: Path, text: str) -> Iterator[tuple[str, object]]:
    """(file:line, parsed record) for a JSON list or JSON Lines; a bad JSONL line yields a BadRecord."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_list(path, text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if (bad := undecodable(line)) is not None:
            yield f"{path}:{number}", bad
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as err:
            yield f"{path}:{number}", BadRecord(f"malformed JSON ({err.msg} at column {err.colno})")


def _iter_json_list(path: Path, text: str) -> Iterator[tuple[str, object]]:
    # raw_decode element by element (not json.loads on the whole list) to know each record's line.
    decoder = json.JSONDecoder()
    pos, line, counted = text.index("[") + 1, 1, 0

    def skip_space(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    while True:
        pos = skip_space(pos)
        if pos < len(text) and text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        start = pos
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:  # the rest of the list cannot be resynchronised
            raise DoctorKitError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        yield f"{path}:{line}", undecodable(text[start:pos]) or record
        pos = skip_space(pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise DoctorKitError(f"{path}:{text.count(chr(10), 0, pos) + 1}: not valid JSON (expected ',' or ']')")


# Header names people give the two sides of a question/answer export (CMD's ask/answer, Alpaca-style columns,
# Chinese exports), compared lower-case without spaces, '_' or '-'. Used only when data.columns leaves a side unset.
USER_COLUMNS = {"question", "questions", "ask", "query", "input", "instruction", "prompt", "user", "human",
                "patient", "q", "问题", "问", "提问", "询问", "咨询", "患者", "病人", "患者问题", "患者提问", "用户"}
ASSISTANT_COLUMNS = {"answer", "answers", "response", "output", "completion", "reply", "assistant", "gpt",
                     "doctor", "a", "回答", "答", "回复", "答案", "医生", "医生回复", "医生回答", "应答"}
SIDES = {"user": ("patient's message", USER_COLUMNS), "assistant": ("doctor's reply", ASSISTANT_COLUMNS)}


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def csv_columns(path: Path, header: list[str], columns) -> tuple[dict[str, str], str]:
    """({"user": column, "assistant": column}, how they were chosen) for a CSV header and data.columns."""
    chosen, recognized = {}, []
    for side, (what, names) in SIDES.items():
        given = getattr(columns, side)
        if given:
            chosen[side] = given
            continue
        found = [h for h in header if _squash(h) in names]
        if len(found) != 1:
            problem = (f"{len(found)} columns could hold the {what}: {', '.join(found)}" if found
                       else f"no column looks like the {what}")
            raise DoctorKitError(f"{path}:1: {problem} (columns: {', '.join(header)}); name it with "
                                 f"--set data.columns.{side}={(found or ['COLUMN'])[0]}")
        chosen[side] = found[0]
        recognized.append(side)
    how = ("recognized from the header" if len(recognized) == 2 else "data.columns" if not recognized
           else f"data.columns, {recognized[0]} recognized from the header")
    return chosen, how


def iter_csv_records(path: Path, text: str, columns, on_columns=None) -> Iterator[tuple[str, object]]:
    """(file:line, messages or BadRecord) per row; `on_columns(note)` hears which columns were used."""
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames or []
    sides, how = csv_columns(path, header, columns)
    wanted = {**sides, "system": columns.system, "id": columns.id}
    missing = [f"{key}='{name}'" for key, name in wanted.items() if name and name not in header]
    if missing:
        raise DoctorKitError(f"{path}:1: CSV has no column {', '.join(missing)} (data.columns); "
                             f"its columns are: {', '.join(header)}")
    if on_columns:
        on_columns(f"{path}: user={sides['user']}, assistant={sides['assistant']} ({how})")
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row:  # more cells than header names
            yield where, BadRecord(f"malformed CSV row ({len(header) + len(row[None])} cells, header has {len(header)})")
            continue
        if (bad := undecodable("".join(v for v in row.values() if isinstance(v, str)))) is not None:
            yield where, bad
            continue
        messages = []
        if columns.system and (row.get(columns.system) or "").strip():
            messages.append({"role": "system", "content": row[columns.system]})
        messages.append({"role": "user", "content": row.get(sides["user"]) or ""})
        messages.append({"role": "assistant", "content": row.get(sides["assistant"]) or ""})
        yield where, {"messages": messages}
