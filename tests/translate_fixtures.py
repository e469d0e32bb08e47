"""Shared by tests/test_translate_*.py: short English dialogs written for these tests, a recipe writer,
and the stand-in teacher server on 127.0.0.1."""
from __future__ import annotations

import itertools
import json

import pytest
import yaml

from translate.stand_in import StandInServer

WHO = ["I", "My mother", "My son", "My husband"]
SYMPTOMS = ["a headache", "a mild fever", "chest pain", "a dry cough", "stomach pain", "a skin rash",
            "dizziness", "joint pain"]
DURATIONS = ["for three days", "for two weeks", "since yesterday", "for a month"]
ADVICE = ["Take 500 mg of paracetamol every 6 hours and rest.", "Please see a doctor for a blood test.",
          "Drink more water, and if the fever is severe, go to the hospital.",
          "This is likely a mild infection; it should get better in a week."]


def english_records(n: int) -> list[dict]:
    combos = itertools.cycle(itertools.product(WHO, SYMPTOMS, DURATIONS))
    rows = []
    for i, (who, symptom, duration) in zip(range(n), combos):
        verb = "have" if who == "I" else "has"
        rows.append({"id": f"rec-{i:04d}", "instruction": "If you are a doctor, please answer the question.",
                     "input": f"Doctor, {who if who == 'I' else who.lower()} {verb} {symptom} {duration}. "
                              f"What should we do?",
                     "output": ADVICE[i % len(ADVICE)], "topic": symptom})
    return rows


def write_jsonl(path, rows) -> None:
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows), encoding="utf-8")


def write_recipe(tmp_path, server_url: str, data_path, **sections) -> str:
    """A recipe for the tiny, fast pipeline; keyword sections are merged over the defaults."""
    recipe = {
        "work_dir": str(tmp_path / "work"),
        "data": {"path": str(data_path)},
        "segment": {"max_chars": 120},
        "teacher": {"base_url": server_url, "model": "stand-in", "api_key_env": "DOCTORKIT_TEST_KEY",
                    "concurrency": 4, "timeout_s": 0.5, "max_retries": 4, "backoff_s": 0.001, "backoff_max_s": 0.01},
        "seed_set": {"n": 60, "sample": "stratified"},
        "student": {"model": "builtin:tiny-mt", "max_steps": 12, "batch_size": 16, "learning_rate": 1.0e-3,
                    "num_beams": 1, "max_target_len": 24, "logging_steps": 5},
        "run": {"batch_size": 64, "shard_size": 40, "device": "cpu"},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            recipe.setdefault(name, {}).update(values)
        else:
            recipe[name] = values
    path = tmp_path / "translate.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


@pytest.fixture
def teacher_server(monkeypatch):
    monkeypatch.setenv("DOCTORKIT_TEST_KEY", "sk-test")
    server = StandInServer(port=0, hang_s=1.0).start()
    yield server
    server.stop()
