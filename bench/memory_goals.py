"""Issue 16's memory goals, by the cost estimator: each job's breakdown, its command, and the peak as three figures.

    python -m bench.memory_goals [--out bench/results/memory-goals.json]

Every job is estimated for an RTX 4090 as the recipe ships (activation offloading on with checkpointing, bf16
adapters without dropout: the lean defaults), then without offloading (train.activation_offloading: false, which
changes no training numbers), then also with PEFT's fp32 adapters (lora.adapter_dtype: fp32). The peak is given as
the tensor peak (comparable to torch.cuda.max_memory_allocated, which torchtune logs), the allocator's reserved
peak, and the device total (CUDA context and paged optimizer states included: what must fit the card).
No GPU is needed: these are estimates (checked against traced steps by bench.simulate; offloading is not traced).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from doctorkit.cost import parse_args
from doctorkit.cost.estimate import estimate
from doctorkit.methods import get_method
from doctorkit.recipe import load_recipe, recipe_from_args

GiB = 1024 ** 3
RESULTS = Path(__file__).parent / "results"
LLAMA_JOB = ["--set", "model=meta-llama/Llama-3.1-8B-Instruct", "--set", "train.max_seq_len=2048",
             "--set", "data.packing=true", "--set", "train.batch_size=2", "--set", "gradient_checkpointing=true"]
COMMON = ["--gpu", "rtx4090", "--tokens-per-sample", "500"]
# torchtune's llama3_1/8B_qlora_single_device: rank 8 on q, k, v, output_proj and the MLP, no dropout
TORCHTUNE_LORA = ["--set", "lora.r=8", "--set", "lora.dropout=0",
                  "--set", "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]
# torchtune's llama3_1/8B_lora_single_device: rank 8 on q, v, output_proj and the MLP, no dropout
TORCHTUNE_LORA_16BIT = ["--set", "lora.r=8", "--set", "lora.dropout=0",
                        "--set", "lora.target_modules=[q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]
# (name, goal GiB, where the goal comes from, recipe + overrides)
JOBS = [
    ("a: recipes/qlora.yaml, Llama-3.1-8B, batch 2 x packed 2048", 7.4,
     "torchtune README 'Memory and training speed': QLoRA, 1x RTX 4090, 7.4 GiB peak (allocator figure)",
     ["recipes/qlora.yaml", *LLAMA_JOB]),
    ("a': as a, with torchtune's LoRA rank, targets and dropout", 7.4, "same job as torchtune's config",
     ["recipes/qlora.yaml", *LLAMA_JOB, *TORCHTUNE_LORA]),
    ("b: recipes/lora.yaml, Llama-3.1-8B, batch 2 x packed 2048", 16.2,
     "torchtune README: LoRA, 1x RTX 4090, 16.2 GiB peak (allocator figure)",
     ["recipes/lora.yaml", *LLAMA_JOB]),
    ("b': as b, with torchtune's LoRA rank, targets and dropout", 16.2, "same job as torchtune's config",
     ["recipes/lora.yaml", *LLAMA_JOB, *TORCHTUNE_LORA_16BIT]),
    ("c: recipes/qlora.yaml, Qwen2.5-7B, seq 1024, batch 1", 6.0, "issue 16 goal",
     ["recipes/qlora.yaml", "--set", "train.max_seq_len=1024", "--set", "train.batch_size=1"]),
    ("c': as c, with torchtune's LoRA rank, targets and dropout", 6.0, "issue 16 goal",
     ["recipes/qlora.yaml", "--set", "train.max_seq_len=1024", "--set", "train.batch_size=1", *TORCHTUNE_LORA]),
    ("d: recipes/ptuning.yaml, 4-bit Qwen2.5-7B (batch 4 x 1024)", 7.0,
     "issue 16 goal; ChatGLM-6B's P-tuning v2 README: INT4, 'about 7 GB' (nvidia-smi)",
     ["recipes/ptuning.yaml"]),
]
# activation offloading moves tensors, the loss is the same; fp32 adapters change the optimizer's rounding
# (the loss of the lean settings: bench/results/lora-defaults-*.json)
VARIANTS = {"as shipped": [], "train.activation_offloading=false": ["--set", "train.activation_offloading=false"],
            "+ lora.adapter_dtype=fp32": ["--set", "train.activation_offloading=false",
                                          "--set", "lora.adapter_dtype=fp32"]}


def one(argv: list[str]) -> dict:
    args = parse_args([*argv, *COMMON])
    from doctorkit.cost.catalog import find_gpu
    args.gpu = find_gpu(args.gpu)
    r = estimate(recipe_from_args(args), args)
    gib = lambda n: round(n / GiB, 3)  # noqa: E731
    return {
        "command": "python -m doctorkit.cost " + " ".join(a if " " not in a and "[" not in a else f'"{a}"'
                                                          for a in [*argv, *COMMON]),
        "breakdown_gib": {k: gib(v) for k, v in r["memory"].items()},
        "transients_gib": {k: gib(v) for k, v in r["transients"].items()},
        "tensor_peak_gib": gib(r["tensor_peak_bytes"]), "reserved_peak_gib": gib(r["reserved_peak_bytes"]),
        "device_total_gib": gib(r["device_peak_bytes"]), "paged_optimizer_gib": gib(r["paged_optimizer_bytes"]),
        "cpu_offloaded_gib": gib(r["cpu_offloaded_bytes"]), "trainable_params": r["trainable_params"],
    }


def reads_lora(argv_job: list[str]) -> bool:
    """Whether the job's method has LoRA adapters (a P-tuning recipe refuses a lora section)."""
    sets = [argv_job[i + 1] for i, arg in enumerate(argv_job) if arg == "--set"]
    return "lora" in get_method(load_recipe(argv_job[0], sets).method).reads()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "memory-goals.json")
    args = parser.parse_args(argv)
    jobs = []
    for name, goal, source, argv_job in JOBS:
        variants = {label: one([*argv_job, *extra]) for label, extra in VARIANTS.items()
                    if "lora." not in " ".join(extra) or reads_lora(argv_job)}
        for v in variants.values():   # > 0: over the goal by that much
            v["tensor_minus_goal_gib"] = round(v["tensor_peak_gib"] - goal, 3)
            v["device_minus_goal_gib"] = round(v["device_total_gib"] - goal, 3)
        shipped = variants["as shipped"]["tensor_peak_gib"]
        jobs.append({"job": name, "goal_gib": goal, "goal_source": source, "variants": variants,
                     "met_as_shipped": shipped <= goal, "short_by_gib": round(max(0.0, shipped - goal), 3)})
        print(f"{name}: goal {goal} GiB; " + "; ".join(
            f"{label}: tensor {v['tensor_peak_gib']:.2f} / reserved {v['reserved_peak_gib']:.2f} / "
            f"device {v['device_total_gib']:.2f}" for label, v in variants.items()))
    args.out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "gpu": "rtx4090", "jobs": jobs},
                                   indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
