"""The audit log: one JSON line per API request, appended (never rewritten), flushed at once.

Fields: time (UTC, ISO 8601), key_id (a short hash of the API key, never the key), path, model, status,
prompt_tokens, completion_tokens, latency_s, finish_reason, error. Message content is left out unless the
server runs with --log-content; then it goes through `loggable_content`, the one place that decides what of a
patient's text may reach the disk.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from pathlib import Path


def key_id(key: str | None) -> str | None:
    """Names a key in the log without revealing it (first 12 hex digits of its SHA-256)."""
    return None if key is None else "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def loggable_content(text: str) -> str:
    """Every piece of message content written to the log passes here: de-identified (typed placeholders), so
    --log-content keeps what was asked and answered without names, ID or phone numbers reaching the disk."""
    from doctorkit.deid import scrub

    return scrub(text, style="tag")


class AuditLog:
    def __init__(self, path: str | Path | None, log_content: bool = False):
        self.path = Path(path) if path else None
        self.log_content = log_content
        self.lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, *, key: str | None, path: str, model: str | None, status: int, prompt_tokens: int = 0,
              completion_tokens: int = 0, latency_s: float = 0.0, finish_reason: str | None = None,
              error: str | None = None, messages: list[dict] | None = None, reply: str | None = None) -> None:
        if self.path is None:
            return
        line = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), "key_id": key_id(key),
                "path": path, "model": model, "status": status, "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens, "latency_s": round(latency_s, 4),
                "finish_reason": finish_reason, "error": error}
        if self.log_content:
            line["messages"] = [{"role": m.get("role"), "content": loggable_content(str(m.get("content", "")))}
                                for m in messages or []]
            line["reply"] = None if reply is None else loggable_content(reply)
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self.lock, self.path.open("a", encoding="utf-8") as out:
            out.write(text)
