"""End-to-end LoRA training on the embedded model: run directory contract, resume, chat, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from doctorkit.errors import DoctorKitError
from doctorkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def recipe_for(tmp_path, *overrides):
    return load_recipe(QUICKSTART, [f"output_dir={tmp_path / 'run'}", f"data.path={ROOT / 'data/sample_zh.jsonl'}",
                                    *overrides])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from doctorkit.train import train

    tmp = tmp_path_factory.mktemp("train")
    return train(recipe_for(tmp, "train.max_steps=30", "train.batch_size=4", "train.save_steps=15", "train.logging_steps=5"))


@pytest.mark.slow
def test_run_directory_contract(trained_run):
    from peft import PeftModel

    from doctorkit.builtin.tiny import build_tiny

    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "tokenizer", "recipe.yaml",
                 "metrics.json", "loss.png", "tb"):
        assert (trained_run / name).exists(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["eval_loss"] is not None and metrics["global_step"] == 30
    assert metrics["samples_used"] + metrics["eval_samples"] == 300
    assert 0 < metrics["supervised_tokens"] < metrics["train_tokens"]  # user/system tokens carry no loss
    assert metrics["trainable_params"] < metrics["total_params"] and metrics["peak_memory_bytes"] > 0
    assert metrics["tokens_per_s"] > 0
    # The adapter loads with plain PEFT onto the embedded base and changes its outputs.
    base, _ = build_tiny()
    ids = torch.tensor([[5, 6, 7, 8]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, trained_run / "adapter")
    assert not torch.allclose(before, tuned(ids).logits)


@pytest.mark.slow
def test_load_run_matches_trained_weights_and_chat_replies(trained_run, capsys):
    from doctorkit.chat import main as chat_main
    from doctorkit.rundir import load_run

    run = load_run(trained_run)
    saved = load_file(trained_run / "adapter" / "adapter_model.safetensors")
    loaded = {k: v for k, v in run.model.state_dict().items() if "lora_" in k}
    assert len(saved) == len(loaded) > 0
    for key, value in saved.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "").endswith(key.split("base_model.model.", 1)[-1])]
        assert match and torch.equal(match[0], value), key
    assert chat_main([str(trained_run), "--prompt", "医生您好，我头痛怎么办？", "--temperature", "0",
                      "--max-new-tokens", "20"]) == 0
    assert capsys.readouterr().out.strip() != ""


def _train_cli(tmp_path, *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "doctorkit.train", str(QUICKSTART), "--set", f"output_dir={tmp_path}",
            "--set", f"data.path={ROOT / 'data/sample_zh.jsonl'}", "--set", "train.max_steps=20", "--set", "train.batch_size=4",
            "--set", "train.save_steps=4", "--set", "train.logging_steps=2", "--set", "data.val_ratio=0", *extra]
    return args, env


@pytest.mark.slow
def test_resume_after_kill_reaches_same_final_step_and_weights(tmp_path):
    """Kill a run after its first checkpoint, --resume it, and compare with an uninterrupted run."""
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    args, env = _train_cli(full_dir)
    subprocess.run(args, env=env, check=True, capture_output=True)

    args, env = _train_cli(killed_dir)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").exists():
        assert time.time() < deadline and proc.poll() is None, "no checkpoint before the run ended"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "metrics.json").exists()
    subprocess.run([*args, "--resume"], env=env, check=True, capture_output=True)

    full, resumed = (json.loads((d / "metrics.json").read_text()) for d in (full_dir, killed_dir))
    assert resumed["global_step"] == full["global_step"] == 20
    a = load_file(full_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(killed_dir / "adapter" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def _cli_error(argv):
    """Run a command the way a user does and return (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=ROOT)
    return proc.returncode, proc.stderr.strip()


def test_unknown_model_is_one_line_error(tmp_path):
    code, err = _cli_error(["doctorkit.train", str(QUICKSTART), "--set", "model=no-such-org/no-such-model",
                            "--set", f"output_dir={tmp_path}"])
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "no-such-org/no-such-model" in err and "copy the model folder" in err   # doctorkit/offline.py


def test_bad_recipe_key_is_one_line_error(tmp_path):
    code, err = _cli_error(["doctorkit.train", str(QUICKSTART), "--set", "train.max_step=3"])
    assert code == 2 and err.count("\n") == 0 and "train.max_steps" in err


def test_existing_run_dir_needs_resume_or_overwrite(tmp_path):
    from doctorkit.train import prepare_run_dir, release_run_dir

    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(DoctorKitError, match="--resume"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)
    # --resume with no checkpoint starts from step 0 (issue 19: no circle of advice)
    assert prepare_run_dir(tmp_path, resume=True, overwrite=False) is None
    release_run_dir(tmp_path)


@pytest.mark.parametrize("make", ["missing", "half"])
def test_chat_on_missing_or_half_written_run(tmp_path, make):
    run_dir = tmp_path / "run"
    if make == "half":
        (run_dir / "checkpoints").mkdir(parents=True)
    code, err = _cli_error(["doctorkit.chat", str(run_dir), "--prompt", "你好"])
    assert code == 2 and "Traceback" not in err and str(run_dir) in err
