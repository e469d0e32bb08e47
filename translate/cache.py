"""A persistent teacher cache: every paid translation is stored the moment it arrives.

The key hashes model + prompt + source text, so a rerun, a crash or a second seed set with overlapping
text never pays twice, while changing the model or the prompt does translate again. SQLite (stdlib)
gives atomic commits: a kill loses at most the request in flight. Only the main thread touches it.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Cached:
    translation: str
    prompt_tokens: int
    completion_tokens: int


def cache_key(model: str, prompt: str, text: str) -> str:
    return hashlib.sha256("\x00".join((model, prompt, text)).encode("utf-8")).hexdigest()


class TeacherCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; commits survive kills
        self.db.execute("CREATE TABLE IF NOT EXISTS translations (key TEXT PRIMARY KEY, model TEXT, source TEXT, "
                        "translation TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")

    def get(self, key: str) -> Cached | None:
        row = self.db.execute("SELECT translation, prompt_tokens, completion_tokens FROM translations WHERE key=?",
                              (key,)).fetchone()
        return Cached(*row) if row else None

    def put(self, key: str, model: str, source: str, reply: Cached) -> None:
        with self.db:  # one transaction per reply: committed before we move on
            self.db.execute("INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (key, model, source, reply.translation, reply.prompt_tokens, reply.completion_tokens,
                             time.time()))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]

    def close(self) -> None:
        self.db.close()
