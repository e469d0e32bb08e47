"""Runs trained by doctorkit.train, one per method, evaluate through the same load_run path."""
import importlib.util
import json
from pathlib import Path

import pytest

from doctorkit.evaluate import main
from doctorkit.methods import METHODS
from evaluate_helpers import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora", "ptuning"])
def test_trained_run_evaluates_with_base(method, tmp_path, capsys):
    if importlib.util.find_spec("doctorkit.data") is None:
        pytest.skip("doctorkit.data (training data pipeline) not merged yet")
    if method not in METHODS:
        pytest.skip(f"method {method} not merged yet")
    from doctorkit.train import main as train_main

    run_dir = tmp_path / method
    overrides = [f"method={method}", f"output_dir={run_dir}", f"data.path={ROOT / 'data/sample_zh.jsonl'}",
                 "train.max_steps=3", "train.save_steps=100", "data.val_ratio=0",
                 *(["lora=null", "ptuning.pre_seq_len=4"] if method == "ptuning" else []),
                 f"eval.data={ROOT / 'data/mcq_sample_zh.jsonl'}", "eval.task=mcq", "eval.max_samples=4", "eval.base=true"]
    assert train_main([str(ROOT / "recipes/quickstart.yaml"), *[a for o in overrides for a in ("--set", o)]]) == 0
    assert "accuracy" in capsys.readouterr().out  # eval.* keys: the table printed at the end of training
    after_training = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["eval"]
    assert after_training["samples"] == 4 and set(after_training["results"]) == {"model", "base"}
    for task, data in (("dialog", "data/eval_dialog_zh.jsonl"), ("mcq", "data/mcq_sample_zh.jsonl")):
        out = tmp_path / f"{method}-{task}"
        assert main([str(run_dir), "--data", str(ROOT / data), "--task", task, "--base", "--max-samples", "3",
                     "--max-new-tokens", "4", "--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["samples"] == 3 and "difference" in summary
        assert len(read_jsonl(out / "predictions.jsonl")) == len(read_jsonl(out / "base_predictions.jsonl")) == 3


def test_wrong_eval_file_fails_before_training(tmp_path):
    from doctorkit.errors import DoctorKitError
    from doctorkit.recipe import load_recipe
    from doctorkit.train import train

    recipe = load_recipe(ROOT / "recipes/quickstart.yaml", [f"output_dir={tmp_path / 'run'}", "eval.task=mcq",
                                                             f"eval.data={ROOT / 'data/eval_dialog_zh.jsonl'}"])
    with pytest.raises(DoctorKitError, match="not multiple-choice records"):
        train(recipe)
    assert not (tmp_path / "run" / "checkpoints").exists()
