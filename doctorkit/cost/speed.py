"""Training FLOPs and the efficiency factor (MFU) that turns them into hours.

FLOPs per trained token (matmuls only; N = decoder linears + LM head, A = causal attention scores + mixing):
  forward 2N + A;  backward 2N + 2A for activation gradients through the frozen base (LoRA and P-tuning put
  trainable parameters in every layer, so gradients flow through all of them) but no weight gradients for it;
  adapters cost 6 x their parameters; gradient checkpointing recomputes the decoder forward (2N_layers + A);
  DPO also runs the frozen reference forward (2N + A).

The efficiency factor (achieved / peak FLOP/s) comes from our measured runs in bench/results/*.json when
they exist. One JSON object per file (or a list of them):
  {"gpu": "h100-80gb", "model": "qwen2.5-7b", "method": "qlora", "seq_len": 1024, "batch": 4,
   "gradient_checkpointing": true, "tokens_per_s": 5100.0, "peak_memory_bytes": 9876543210,
   "mfu": 0.21, "estimated_peak_memory_bytes": 9500000000, "command": "...", "date": "2025-11-02"}
`mfu` must use this module's FLOP count (`flops_per_token`); `tokens_per_s` and memory are informative.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from doctorkit.cost.catalog import Gpu
from doctorkit.cost.job import Job
from doctorkit.cost.memory import trainable_params

# Stated defaults when no measurement matches: transformers + PEFT on one GPU, bf16, sdpa. 4-bit bases are
# slower (every matmul dequantizes its weight first); P-tuning skips the adapters' small matmuls.
DEFAULT_MFU = {"lora": 0.35, "qlora": 0.25, "ptuning": 0.35, "dpo": 0.30}
RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"


def flops_per_token(job: Job, row_len: float | None = None) -> float:
    s = job.shape
    row_len = job.seq if row_len is None else row_len
    n_layers = s.layers * s.layer_linear_params
    n_all = n_layers + s.vocab * s.hidden
    # causal attention: QK^T and AV over on average half the row, plus the P-tuning prefix
    attention = 2 * 2 * s.layers * s.q_dim * (row_len / 2 + job.pre_seq_len)
    adapters = 6 * trainable_params(job) if job.uses_lora else 0
    total = (2 * n_all + attention) + (2 * n_all + 2 * attention) + adapters
    if job.checkpointing:
        total += 2 * n_layers + attention
    if job.reference_forward:
        total += 2 * n_all + attention
    return total


def _read_results(results_dir: Path) -> list[dict]:
    records = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        # bench/train_speed.py writes {"machine": ..., "results": [one record per arm]}
        items = data.get("results", [data]) if isinstance(data, dict) else data
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or str(item.get("gpu", "")).lower() == "cpu":
                continue  # CPU runs say nothing about a GPU's efficiency
            if isinstance(item.get("mfu"), (int, float)) and item["mfu"] > 0:
                records.append(item)
    return records


def efficiency(method: str, gpu: Gpu, results_dir: Path | None = None) -> tuple[float, str]:
    """(MFU, sentence saying where it came from): same method on this GPU, else same method anywhere, else default."""
    records = [r for r in _read_results(results_dir or RESULTS_DIR) if r.get("method") == method]
    same_gpu = [r for r in records if str(r.get("gpu", "")).lower() == gpu.name]
    for chosen, where in ((same_gpu, f"on {gpu.name}"), (records, "on any GPU")):
        if chosen:
            mfu = statistics.median(r["mfu"] for r in chosen)
            return mfu, (f"efficiency {mfu:.2f} = median MFU of {len(chosen)} measured {method} run(s) {where} "
                         f"in bench/results")
    mfu = DEFAULT_MFU.get(method, 0.3)
    return mfu, f"efficiency {mfu:.2f}: stated default for {method} (no measured {method} run in bench/results)"
