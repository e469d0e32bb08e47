"""No surprise downloads: the kit's commands run with the Hugging Face hub offline unless the user asks.

A hospital server has no internet, and one that has some should not pull 15 GB because a recipe named a hub
id. `doctorkit/__init__.py` calls `apply()` before any command imports transformers, datasets or
huggingface_hub (they read these variables once, at import). DOCTORKIT_ALLOW_DOWNLOAD=1 leaves them alone,
so `model: org/name` downloads as it would with plain transformers; so does setting HF_HUB_OFFLINE yourself.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ALLOW_ENV = "DOCTORKIT_ALLOW_DOWNLOAD"
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() not in ("", "0", "false", "no")


def apply() -> None:
    if downloads_allowed():
        return
    for name in OFFLINE_ENV:
        os.environ.setdefault(name, "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def missing_hub_model(name: str) -> bool:
    """`org/name` that is no folder here: a hub id the machine does not have (a missing path is something else)."""
    return re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", name) is not None and not Path(name).exists()


def missing_model_hint(name: str, key: str = "model") -> str:
    """The one line a user reads when a hub id is not on this machine: where to put the folder, or how to fetch."""
    if is_offline():
        return (f"downloads are off: copy the model folder to ./{name} (or anywhere, then --set {key}=/path/to/folder), "
                f"or run with {ALLOW_ENV}=1 to download it")
    return f"pass a local model folder with --set {key}=/path/to/model"
