"""Read an English dataset into records with translatable fields, and write them back as messages.

Every supported format becomes the same thing: an id plus a list of chat turns (role, English text),
the shape `doctorkit.train` reads. Alpaca's instruction and input become one user turn (joined by a
blank line, which the segmenter keeps as a line break, so each part is still translated on its own).
A record that cannot be read is kept with a `problem`, so later steps can list it as a reject.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from doctorkit.errors import DoctorKitError
from translate.recipe import SourceData

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "chatgpt": "assistant", "bing": "assistant"}
NO_FIELDS = ("no translatable fields (expected Alpaca instruction/input/output, ShareGPT conversations, "
             "messages with role/content, or the CSV columns named in data.columns)")


@dataclass
class Record:
    id: str
    messages: list[dict] = field(default_factory=list)   # [{"role", "content"}] in English
    extra: dict = field(default_factory=dict)            # other keys, copied to the output untouched
    problem: str | None = None                           # why it cannot be translated, if it cannot


def _raw_rows(cfg: SourceData, path: Path) -> list[tuple[int, object]]:
    """(line number, parsed row or an error string) for .json / .jsonl / .csv."""
    text = path.read_text(encoding=cfg.encoding)
    if path.suffix.lower() == ".csv":
        return [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines()))]
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DoctorKitError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(data, list):
            raise DoctorKitError(f"{path}: a .json dataset is a list of records, got {type(data).__name__}")
        return list(enumerate(data, start=1))
    rows: list[tuple[int, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                rows.append((number, f"not valid JSON ({err.msg})"))
    return rows


def detect_format(cfg: SourceData, path: Path, row: object) -> str:
    if cfg.format != "auto":
        return cfg.format
    if path.suffix.lower() == ".csv":
        return "csv"
    if isinstance(row, dict):
        if isinstance(row.get("messages"), list):
            return "messages"
        if isinstance(row.get("conversations"), list):
            return "sharegpt"
        if "instruction" in row or "output" in row:
            return "alpaca"
    return "unknown"


def _turns(fmt: str, row: dict, cfg: SourceData) -> tuple[list[tuple[str, object]], set[str]]:
    """(role, text) turns and the keys they consumed."""
    if fmt == "messages":
        return [(m.get("role"), m.get("content")) for m in row["messages"] if isinstance(m, dict)], {"messages"}
    if fmt == "sharegpt":
        turns = [(SHAREGPT_ROLES.get(str(t.get("from", "")).lower()), t.get("value"))
                 for t in row["conversations"] if isinstance(t, dict)]
        return turns, {"conversations"}
    if fmt == "alpaca":
        prompt = "\n\n".join(str(row[k]).strip() for k in ("instruction", "input") if str(row.get(k) or "").strip())
        turns = [("system", row["system"])] if row.get("system") else []
        return turns + [("user", prompt), ("assistant", row.get("output"))], {"instruction", "input", "output", "system"}
    cols = cfg.columns
    turns = [("system", row[cols.system])] if cols.system and row.get(cols.system) else []
    used = {c for c in (cols.user, cols.assistant, cols.system, cols.id) if c}
    return turns + [("user", row.get(cols.user)), ("assistant", row.get(cols.assistant))], used


def to_record(cfg: SourceData, path: Path, index: int, row: object, fmt: str) -> Record:
    default_id = f"{path.stem}-{index}"
    if not isinstance(row, dict):
        return Record(default_id, problem=row if isinstance(row, str) else "record is not an object")
    id_key = cfg.columns.id if fmt == "csv" and cfg.columns.id else cfg.id_key
    record_id = str(row[id_key]) if row.get(id_key) not in (None, "") else default_id
    try:
        turns, used = _turns(fmt, row, cfg)
    except (KeyError, TypeError, AttributeError):
        return Record(record_id, problem=NO_FIELDS)
    extra = {k: v for k, v in row.items() if k not in used and k != id_key}
    record = Record(record_id, extra=extra)
    if not turns:
        record.problem = NO_FIELDS
    for i, (role, text) in enumerate(turns):
        if role not in ("system", "user", "assistant"):
            record.problem = record.problem or f"turn {i}: unknown role {role!r}"
        elif not isinstance(text, str) or not text.strip():
            record.problem = record.problem or f"empty field messages.{i}.content ({role})"
        record.messages.append({"role": role, "content": text if isinstance(text, str) else ""})
    return record


def read_records(cfg: SourceData, path: str | Path, limit: int | None = None) -> list[Record]:
    """All records of the file, readable or not; errors if none has a translatable field."""
    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: data file not found")
    rows = _raw_rows(cfg, path)[:limit]
    first = next((row for _, row in rows if isinstance(row, dict)), None)
    fmt = detect_format(cfg, path, first)
    records = [to_record(cfg, path, index, row, fmt) for index, (_, row) in enumerate(rows)]
    if fmt == "unknown" or not any(r.problem is None for r in records):
        raise DoctorKitError(f"{path}: {NO_FIELDS}")
    return records


def translated_record(record: Record, contents: list[str]) -> dict:
    """The output line: id, messages with the same roles in the same order, other keys untouched."""
    messages = [{"role": m["role"], "content": text} for m, text in zip(record.messages, contents)]
    return {"id": record.id, "messages": messages, **record.extra}
