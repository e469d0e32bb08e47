"""`python -m doctorkit.data preview|stats` on the quickstart recipe."""
import json
import re
import statistics
from pathlib import Path

import pytest

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.data import prepare
from doctorkit.data.__main__ import main
from doctorkit.recipe import load_recipe

RECIPE = "recipes/quickstart.yaml"


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the recipe names data/ relative to the root


def test_preview_marks_exactly_the_assistant_replies(capsys):
    assert main(["preview", RECIPE, "--n", "2", "--plain"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- train sample") == 2
    marked = re.findall(r"【(.*?)】", out, flags=re.S)
    assert marked and all(span.endswith("<|im_end|>") for span in marked)
    # nothing of a user turn or a role header is ever inside the marks
    assert not any("<|im_start|>" in span for span in marked)
    prepared = prepare(load_recipe(RECIPE), build_tokenizer("chatml"))
    first = prepared.train[0]
    tokenizer = build_tokenizer("chatml")
    supervised = tokenizer.decode([t for t, label in zip(first["input_ids"], first["labels"]) if label != -100])
    assert "".join(marked).startswith(supervised)


def test_stats_json_equals_the_report_of_prepare(capsys):
    assert main(["stats", RECIPE, "--json", "--set", "train.max_seq_len=64"]) == 0
    stats = json.loads(capsys.readouterr().out)
    report = prepare(load_recipe(RECIPE, ["train.max_seq_len=64"]), build_tokenizer("chatml")).report
    for key in ("samples_used", "samples_skipped", "train_tokens", "supervised_tokens", "eval_samples", "truncated"):
        assert stats[key] == getattr(report, key), key
    assert stats["truncated"] > 0 and stats["train_length"]["max"] == 64 == max(report.lengths)
    assert stats["train_length"]["p50"] == round(statistics.median(report.lengths))


def test_stats_text_and_bad_input_exit_2_with_one_line(capsys):
    assert main(["stats", RECIPE]) == 0
    out = capsys.readouterr().out
    assert re.search(r"train samples\s+270", out) and re.search(r"eval samples\s+30", out)
    from doctorkit.data.__main__ import run
    with pytest.raises(SystemExit) as exit_info:
        run(["stats", RECIPE, "--set", "data.path=missing.jsonl"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: missing.jsonl: data file not found (data.path / data.val_path)"
