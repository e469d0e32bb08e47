"""Training FLOPs and the efficiency factor (MFU) that turns them into hours.

FLOPs per trained token (matmuls only; N = decoder linears + LM head, A = causal attention scores + mixing):
  forward 2N + A;  backward 2N + 2A for activation gradients through the frozen base (LoRA and P-tuning put
  trainable parameters in every layer, so gradients flow through all of them) but no weight gradients for it;
  adapters cost 6 x their parameters; gradient checkpointing recomputes the decoder forward (2N_layers + A,
  + 2 x adapter parameters);
  DPO also runs the frozen reference forward (2N + A).

The calibration contract (bench/train_speed.py writes it, this module reads it):
- FLOPs: `flops_per_token` here is the only formula; the bench counts an epoch with `flops_for_lengths`.
- MFU (`mfu`): those model FLOPs per second over the catalog's vendor dense 16-bit peak of that GPU (`mfu`
  below), the same peak the estimate divides by, so hours = FLOPs / (peak x measured MFU) reproduce the run.
- GPU: a record's "gpu" may be torch.cuda.get_device_name() ("NVIDIA H100 80GB HBM3") or a catalog name;
  doctorkit.cost.catalog.catalog_name maps both. CPU records and GPUs outside the catalog are skipped.
- Only our own arm counts: records with "arm": "baseline" (the plain-Trainer comparison) are skipped.
Records come from `--results DIR` (e.g. bench/results of a source checkout) or, by default, the measured GPU runs
shipped inside the package (doctorkit/cost/measured/*.json), so an installed kit finds them too. One JSON object
per file, a list of them, or bench/train_speed.py's {"results": [...]}:
  {"gpu": "NVIDIA H100 80GB HBM3", "model": "qwen2.5-7b", "method": "qlora", "arm": "ours", "seq_len": 1024,
   "tokens_per_s": 5100.0, "mfu": 0.21, "command": "...", "date": "2025-11-02"}
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from doctorkit.cost.catalog import Gpu, catalog_name
from doctorkit.cost.job import Job
from doctorkit.cost.memory import trainable_params

# Stated defaults when no measurement matches: transformers + PEFT on one GPU, bf16, sdpa. 4-bit bases are
# slower (every matmul dequantizes its weight first); P-tuning skips the adapters' small matmuls.
DEFAULT_MFU = {"lora": 0.35, "qlora": 0.25, "ptuning": 0.35, "dpo": 0.30}
MEASURED_DIR = Path(__file__).resolve().parent / "measured"   # package data: ships with the installed kit


def flops_per_token(job: Job, row_len: float | None = None) -> float:
    s = job.shape
    row_len = job.seq if row_len is None else row_len
    n_layers = s.layers * s.layer_linear_params
    n_all = n_layers + s.vocab * s.hidden
    # causal attention: QK^T and AV over on average half the row, plus the P-tuning prefix
    attention = 2 * 2 * s.layers * s.q_dim * (row_len / 2 + job.pre_seq_len)
    adapters = 6 * trainable_params(job) if job.uses_lora else 0
    total = (2 * n_all + attention) + (2 * n_all + 2 * attention) + adapters
    if job.checkpointing:                        # the layers' forward again, adapters included
        total += 2 * n_layers + attention + (2 * trainable_params(job) if job.uses_lora else 0)
    if job.reference_forward:
        total += 2 * n_all + attention
    return total


def flops_for_lengths(job: Job, lengths) -> float:
    """FLOPs of training once on samples of these token lengths (each row's attention over its own length)."""
    return sum(flops_per_token(job, n) * n for n in lengths)


def mfu(model_flops_per_s: float, gpu: Gpu) -> float:
    """Model FLOP utilization: `flops_per_token` FLOPs per second over the GPU's catalog (vendor) peak."""
    return model_flops_per_s / (gpu.peak_tflops * 1e12)


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
            if not isinstance(item, dict) or item.get("arm") == "baseline":
                continue  # the plain-Trainer baseline is a comparison, not how our recipes run
            gpu = catalog_name(item.get("gpu", ""))
            if gpu is None:
                continue  # CPU runs, or a GPU without a catalog peak, say nothing about a catalog GPU's MFU
            if isinstance(item.get("mfu"), (int, float)) and item["mfu"] > 0:
                records.append({**item, "gpu": gpu})
    return records


def efficiency(method: str, gpu: Gpu, results_dir: Path | None = None) -> tuple[float, str]:
    """(MFU, sentence saying where it came from): same method on this GPU, else same method anywhere, else default."""
    where_from = str(results_dir) if results_dir else "the measured runs shipped in doctorkit/cost/measured"
    records = [r for r in _read_results(results_dir or MEASURED_DIR) if r.get("method") == method]
    same_gpu = [r for r in records if r["gpu"] == gpu.name]
    for chosen, where in ((same_gpu, f"on {gpu.name}"), (records, "on any GPU")):
        if chosen:
            value = statistics.median(r["mfu"] for r in chosen)
            return value, (f"efficiency {value:.2f} = median MFU of {len(chosen)} measured {method} run(s) {where} "
                           f"in {where_from}")
    value = DEFAULT_MFU.get(method, 0.3)
    return value, f"efficiency {value:.2f}: stated default for {method} (no measured {method} run in {where_from})"
