"""Cache of prepared training data, so `--resume` or a second run on the same data starts in seconds.

The key is a hash of everything the tokenized rows depend on: the recipe's data settings (data.*, train.max_seq_len,
seed), the tokenizer (its full serialized vocabulary and merges, chat template and special tokens), the content of
every data file (data.path, data.val_path, data.knowledge) and the source of doctorkit/data (a change in masking
invalidates old entries). An entry holds the train/eval datasets (datasets' Arrow format) and the DataReport.
Location: $DOCTORKIT_DATA_CACHE, else ~/.cache/doctorkit/prepared; DOCTORKIT_DATA_CACHE=off disables it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

ENV = "DOCTORKIT_DATA_CACHE"
REPORT = "report.json"


def cache_root() -> Path | None:
    setting = os.environ.get(ENV, "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "doctorkit" / "prepared"


def _file_digest(path: str, h) -> None:
    h.update(str(path).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def _tokenizer_digest(tokenizer, h) -> None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else repr(tokenizer.get_vocab())).encode())
    h.update(str(getattr(tokenizer, "chat_template", "")).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())


def cache_key(recipe, tokenizer) -> str:
    h = hashlib.sha256()
    data = recipe.data
    h.update(json.dumps({"data": data.model_dump(mode="json"), "max_seq_len": recipe.train.max_seq_len,
                         "seed": recipe.seed}, sort_keys=True).encode())
    _tokenizer_digest(tokenizer, h)
    paths = [data.path] if isinstance(data.path, str) else list(data.path or [])
    paths += [source.path for source in data.mix or []]   # data.mix files
    for path in paths + [p for p in (data.val_path, data.knowledge) if p]:
        _file_digest(path, h)
    package = Path(__file__).parent.parent
    for source in sorted([*Path(__file__).parent.glob("*.py"), *(package / "deid").glob("*.py")]):  # how rows are made
        h.update(source.read_bytes())
    return h.hexdigest()[:32]


def load(key: str):
    """(train, eval, report) from the cache, or None."""
    import datasets

    from doctorkit.data.report import DataReport

    root = cache_root()
    folder = root / key if root else None
    if folder is None or not (folder / REPORT).is_file():
        return None
    try:
        report = DataReport(**json.loads((folder / REPORT).read_text(encoding="utf-8")))
        train = datasets.load_from_disk(str(folder / "train"))
        evaluation = datasets.load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
    except (OSError, ValueError, TypeError):   # a damaged entry is rebuilt, never trusted
        return None
    return train, evaluation, report


def save(key: str, train, evaluation, report) -> Path | None:
    """Write an entry atomically (a half-written folder never looks valid); returns it, or None when disabled."""
    root = cache_root()
    if root is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        train.save_to_disk(str(work / "train"))
        if evaluation is not None:
            evaluation.save_to_disk(str(work / "eval"))
        (work / REPORT).write_text(json.dumps(dataclasses.asdict(report)), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
        return None
    return final
