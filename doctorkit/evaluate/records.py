"""Reading evaluation files (JSONL, or a JSON list) and per-sample records back (written by doctorkit.rundir.write_eval)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from doctorkit.errors import DoctorKitError


@dataclass
class Loaded:
    """Items a task can score, and the records it skipped (`file:line: reason`), counted in metrics.json."""
    items: list[dict]
    skipped: list[str] = field(default_factory=list)


def iter_records(path: str | Path) -> Iterator[tuple[str, object]]:
    """(`file:line`, parsed record) from JSONL or a JSON list in any encoding doctorkit.data reads; a line that
    is not JSON yields (where, None) so the task counts it."""
    from doctorkit.data.readers import BadRecord, iter_json_records, read_text

    path = Path(path)
    if not path.is_file():
        raise DoctorKitError(f"{path}: evaluation data file not found")
    for where, record in iter_json_records(path, read_text(path)):
        yield where, None if isinstance(record, BadRecord) else record


def load_items(path, max_samples, to_item, looks_right, expected: str) -> Loaded:
    """Shared loop of every task's reader.

    `to_item(record)` returns an item or raises ValueError (bad record: skipped and counted);
    `looks_right(record)` tells whether the first record is in this task's format at all, so a dialog file
    given to --task mcq is one clear error instead of a file of skips.
    """
    loaded = Loaded(items=[])
    checked_format = False
    for where, record in iter_records(path):
        if record is None:
            loaded.skipped.append(f"{where}: not valid JSON")
            continue
        if not checked_format:
            if not looks_right(record):
                keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
                raise DoctorKitError(f"{where}: not {expected} (found: {keys}); wrong file or wrong --task?")
            checked_format = True
        try:
            item = to_item(record)
        except ValueError as err:
            loaded.skipped.append(f"{where}: {err}")
            continue
        item.setdefault("id", record.get("id") or where.rsplit("/", 1)[-1])
        loaded.items.append(item)
        if max_samples and len(loaded.items) >= max_samples:
            break
    if not loaded.items:
        reasons = f" (first: {loaded.skipped[0]})" if loaded.skipped else ""
        raise DoctorKitError(f"{path}: no usable {expected} records{reasons}")
    return loaded
