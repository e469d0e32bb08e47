"""Evaluation tasks: one module per task, found by name, so adding a task is adding one file here.

Each task module provides:

    SUMMARY                                   one line for --help
    load(path, max_samples, options) -> Loaded  items to score + skipped records (`file:line: reason`)
    predict(model, tokenizer, items, options, scorer=None) -> list[dict]
                                              one JSON-able record per item (written to predictions.jsonl)
    score(records) -> dict                    metrics computed ONLY from the records, so they can be recounted
    HEADLINE                                  metric keys printed in the table and compared with --base

`scorer` is the injection point for tests (fake scorers) and for other scoring backends.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass
from typing import Optional, Union

from doctorkit import sampling
from doctorkit.errors import DoctorKitError


@dataclass
class EvalOptions:
    max_new_tokens: int = 256        # dialog replies / generated MCQ letters are cut here
    batch_size: int = 8
    repetition_penalty: float = 1.0  # 1.0: measure the model's own repetition, do not hide it
    system_prompt: Optional[str] = None   # added to conversations without one (the run's data.system_prompt)
    mcq_mode: str = "loglik"         # loglik: argmax option log-likelihood; generate: parse the generated letter
    mcq_score: str = "letter"        # loglik target: "letter" (log P(letter)) or "text" (mean log P of option text)
    exam_format: str = "auto"        # mcq: exam layout (doctorkit/evaluate/exams), detected from the file
    shots: int = 0                   # mcq: solved dev questions put before each question
    shots_from: Optional[str] = None  # mcq: dev/validation file or folder the shots come from
    cot: bool = False                # mcq: chain-of-thought prompt, answer read after "答案："
    samples: int = 1                 # mcq: sampled chains per question, majority vote (self-consistency)
    temperature: float = sampling.TEMPERATURE  # mcq --samples: sampling temperature (chat's default)
    seed: int = 0                    # mcq --samples: sampling seed (reruns sample the same chains)
    multi_threshold: Optional[Union[float, str]] = None  # mcq loglik, multi-answer: option probability to choose
                                     # (default 1/n), or "calibrate" on the --shots-from dev file

    def as_dict(self) -> dict:
        return asdict(self)


def available_tasks() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_task(name: str):
    if name not in available_tasks():
        raise DoctorKitError(f"unknown evaluation task '{name}' (available: {', '.join(available_tasks())})")
    return importlib.import_module(f"{__name__}.{name}")
