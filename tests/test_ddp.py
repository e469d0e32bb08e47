"""The train command under torchrun: two CPU processes over gloo end with identical weights, only rank 0 writes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_gives_identical_adapters_and_one_writer(tmp_path):
    run_dir, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", DOCTORKIT_DDP_DUMP=str(dump), DOCTORKIT_DDP_RUN_DIR=str(run_dir),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(ROOT / "tests/helpers/ddp_train_dump.py"), str(ROOT / "recipes/quickstart.yaml"),
           "--set", f"output_dir={run_dir}", "--set", f"data.path={ROOT / 'data/sample_zh.jsonl'}",
           "--set", "train.max_steps=3", "--set", "train.batch_size=4", "--set", "train.max_seq_len=128",
           "--set", "data.max_samples=32", "--set", "data.val_ratio=0", "--set", "train.logging_steps=1"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = load_file(dump / "rank0.safetensors"), load_file(dump / "rank1.safetensors")
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert any("lora_B" in n and rank0[n].abs().sum() > 0 for n in rank0)  # trained, not just the same init

    writes0 = json.loads((dump / "rank0_writes.json").read_text())
    writes1 = json.loads((dump / "rank1_writes.json").read_text())
    # Trainer keeps one RNG state per rank inside each checkpoint (checkpoint-N/rng_state_<rank>.pth) so that
    # --resume replays every rank's data order; everything else in the run directory is rank 0's.
    assert [w for w in writes1 if "/checkpoints/" not in w] == []
    assert any("adapter" in w for w in writes0) and any("metrics.json" in w for w in writes0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 3
    saved = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert len(saved) == len(rank0)
