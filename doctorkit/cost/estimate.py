"""Recipe -> one estimate: memory breakdown, fitting GPUs, tokens, FLOPs, hours and money, with its assumptions."""
from __future__ import annotations

import dataclasses
import math

from doctorkit.cost.catalog import GPUS, PRICE_SOURCE, Gpu
from doctorkit.cost.job import Job, job_from_recipe, trains_in_bf16
from doctorkit.cost.memory import (OFFLOAD_STASH, breakdown, offloaded_bytes, paged_optimizer_bytes, peak_bytes,
                                   peak_figures, trainable_params)
from doctorkit.cost.shapes import resolve_shape
from doctorkit.cost.speed import efficiency, flops_per_token
from doctorkit.cost.tokens import data_tokens, epoch_tokens
from doctorkit.errors import DoctorKitError
from doctorkit.methods import get_method
from doctorkit.packing import attention_keys_per_token, resolve

GiB = 1024 ** 3
MAX_BATCH = 4096


def largest_batch_that_fits(job: Job, memory_bytes: int) -> int:
    """Largest per-device batch whose estimated peak fits in `memory_bytes` (0: not even batch 1).

    The one place this is computed: the cost table, `doctorkit doctor` and batch auto-sizing ask it.
    """
    fits = lambda b: peak_bytes(dataclasses.replace(job, batch=b)) <= memory_bytes  # noqa: E731
    if not fits(1):
        return 0
    low, high = 1, MAX_BATCH
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def auto_batch(job: Job, gpu: Gpu, effective_batch: int) -> tuple[int, int]:
    """(micro-batch, grad_accum) for `--auto-batch`: the largest micro-batch that fits `gpu` and divides the
    recipe's effective batch (batch_size x grad_accum), so the optimizer sees the same batch; (0, 0): not even 1 fits.
    Packed rows make every micro-batch the same size, so one memory check per size is exact for the estimator."""
    largest = largest_batch_that_fits(job, gpu.memory_bytes)
    if largest == 0:
        return 0, 0
    micro = max(b for b in range(1, min(largest, effective_batch) + 1) if effective_batch % b == 0)
    return micro, effective_batch // micro


def what_would_fit(job: Job, memory_bytes: int, bf16: bool = True) -> list[str]:
    """Recipe changes, one at a time and then all together, with the peak each gives (bf16: the job trains in
    bf16, so 16-bit adapters are possible; fp16 refuses them)."""
    changes = []
    if not job.checkpointing:
        changes.append(("gradient_checkpointing: true", {"checkpointing": True}))
    changes += get_method(job.method).fit_advice(job)  # the method's own: a quantized base
    if job.batch > 1:
        changes.append(("train.batch_size: 1 (raise train.grad_accum)", {"batch": 1}))
    if job.seq > 256:
        changes.append((f"train.max_seq_len: {job.seq // 2}", {"seq": job.seq // 2}))
    if job.attention == "eager":
        changes.append(("attn_implementation: sdpa", {"attention": "sdpa"}))
    if not job.activation_offloading:
        changes.append(("train.activation_offloading: true", {"activation_offloading": True}))
    if job.uses_lora and job.stack.adapter_bytes > job.act_bytes and bf16:
        lean_adapters = dataclasses.replace(job.stack, adapter_bytes=job.act_bytes)
        changes.append(("lora.adapter_dtype: compute", {"stack": lean_adapters}))
    advice, combined = [], {}
    for text, change in changes:
        combined.update(change)
        peak = peak_bytes(dataclasses.replace(job, **change))
        advice.append(f"{text} -> {peak / GiB:.1f} GiB" + (" (fits)" if peak <= memory_bytes else ""))
    if len(changes) > 1:
        peak = peak_bytes(dataclasses.replace(job, **combined))
        advice.append(f"all of these -> {peak / GiB:.1f} GiB" + (" (fits)" if peak <= memory_bytes else
                      ": still too big; shard across GPUs (DeepSpeed ZeRO-3 / FSDP) or pick a smaller model"))
    return advice


def packed_layout(recipe, job: Job) -> str | None:
    """The layout a packed recipe gets on a GPU (None: not packing); its errors are train's to report."""
    if not recipe.data.packing:
        return None
    try:
        return resolve(recipe.data.packing_layout, job.attention, on_cuda=True)[0]
    except DoctorKitError:  # e.g. varlen asked with eager: training refuses it; estimate the rows it could run
        return "rows"


def _data_tokens(recipe, args):
    """(lengths, how they were counted, samples in the data, whether lengths were measured)."""
    if args.tokens_per_sample:
        count = args.samples or 1
        return [args.tokens_per_sample] * min(count, 10000), f"{args.tokens_per_sample} tokens per sample (given)", False
    counted = data_tokens(recipe)
    return counted.lengths, counted.how, True


def estimate(recipe, args) -> dict:
    shape, shape_source = resolve_shape(recipe.model)
    t = recipe.train
    lengths, how, measured = _data_tokens(recipe, args)
    # memory is set by the longest row: a packed row is full; otherwise the longest (truncated) sample
    seq = t.max_seq_len if (recipe.data.packing or not measured or not lengths) else min(t.max_seq_len, max(lengths))
    bf16_gpu = args.gpu.bf16 if args.gpu else True
    job = job_from_recipe(recipe, shape, seq, bf16_gpu=bf16_gpu)
    parts, transients = breakdown(job)
    peak = sum(parts.values())

    per_epoch, rows = epoch_tokens(lengths, t.max_seq_len, job.sequences, recipe.data.packing,
                                   recipe.data.group_by_length, recipe.data.overlong, recipe.seed)
    samples = args.samples or len(lengths)
    scale = samples / len(lengths) if lengths else 0.0
    per_epoch, rows = per_epoch * scale, rows * scale
    row_len = per_epoch / rows if rows else seq
    if t.max_steps > 0:
        tokens = t.max_steps * t.batch_size * t.grad_accum * row_len
        schedule = f"{t.max_steps} steps x batch {t.batch_size} x grad_accum {t.grad_accum}"
    else:
        tokens = per_epoch * t.epochs
        schedule = f"{t.epochs:g} epoch(s) of {samples:,} samples"
    tokens = round(tokens)
    layout = packed_layout(recipe, job)
    if layout:  # what attention costs depends on how packed rows reach it (doctorkit/packing.py)
        row_len = 2 * attention_keys_per_token(layout, [min(n, t.max_seq_len) for n in lengths], t.max_seq_len)
    fpt = flops_per_token(job, row_len)
    flops = fpt * tokens

    rows_out, notes = [], set()
    for gpu in GPUS:
        mfu, mfu_note = efficiency(job.method, gpu, args.results)
        price = args.price_per_hour if (args.gpu and args.price_per_hour is not None) else gpu.usd_per_hour
        hours = flops / (gpu.peak_tflops * 1e12 * mfu) / 3600
        micro, accum = auto_batch(job, gpu, t.batch_size * t.grad_accum)
        rows_out.append({"gpu": gpu.name, "label": gpu.label, "memory_bytes": gpu.memory_bytes,
                         "fits": peak <= gpu.memory_bytes, "max_batch_size": largest_batch_that_fits(job, gpu.memory_bytes),
                         "auto_batch_size": micro, "auto_grad_accum": accum,
                         "peak_tflops": gpu.peak_tflops, "efficiency": mfu, "hours": hours,
                         "usd_per_hour": price, "usd": hours * price, "efficiency_source": mfu_note})
        notes.add(mfu_note)
    if args.gpu:
        chosen = next(r for r in rows_out if r["gpu"] == args.gpu.name)
    else:
        fitting = [r for r in rows_out if r["fits"]]
        chosen = min(fitting, key=lambda r: (r["usd"], r["hours"])) if fitting else None
    memory_limit = chosen["memory_bytes"] if (args.gpu and chosen) else max(g.memory_bytes for g in GPUS)
    advice = what_would_fit(job, memory_limit, trains_in_bf16(recipe, bf16_gpu)) if peak > memory_limit or (args.gpu and not chosen["fits"]) else []

    assumptions = [
        f"model shape from {shape_source}",
        f"method {job.method}: base stored in {job.weight_bits}-bit"
        + (" NF4" + (" with double quantization" if job.double_quant else "") if job.weight_bits == 4 else "")
        + ("; embeddings, lm_head and norms upcast to fp32 by prepare_model_for_kbit_training"
           if job.weight_bits <= 8 and job.stack.kbit_upcast else ""),
        ("trainable parameters in fp32 (PEFT keeps adapters in fp32)" if job.stack.adapter_bytes == 4 else
         f"trainable parameters, gradients and AdamW states in {8 * job.stack.adapter_bytes}-bit "
         f"(lora.adapter_dtype: {recipe.lora.adapter_dtype})")
        + f"; optimizer {job.optimizer}"
        + (" (paged: its states can spill to CPU RAM under pressure, counted here in full)" if "paged" in job.optimizer else ""),
        f"rows of {seq} tokens for memory ("
        + ("packed rows are full" if recipe.data.packing else
           "longest sample, truncated at train.max_seq_len" if measured else "train.max_seq_len") + ")"
        + (", chosen + rejected per pair (DPO)" if job.pairs else ""),
        f"gradient checkpointing {'on' if job.checkpointing else 'off'}"
        + f"; {job.attention} attention" + (" stores seq x seq scores" if job.attention == "eager" else " stores no scores"),
        *([f"packing on a GPU: data.packing_layout {layout} with {job.attention}: "
           + ("attention per document (varlen), the packed batch flattened" if layout == "varlen" else
              f"separate rows, every token attends over its whole {t.max_seq_len}-token row (block mask)")]
          if layout else []),
        "loss: " + {"fused": "TRL's fused LM head (no full logits)",
                    "full": "full logits + fp32 copies for the loss"}.get(job.stack.loss_head, job.stack.loss_head),
        f"CUDA context {job.stack.cuda_context_bytes / GiB:.1f} GiB; allocator slack "
        f"{job.stack.allocator_slack:.0%} of the tensors; tensor peak ~ torch.cuda.max_memory_allocated (torchtune "
        "logs it as peak_memory_alloc), + slack ~ max_memory_reserved, device total ~ nvidia-smi: what must fit",
        *([f"activation offloading: saved activations wait in pinned CPU RAM "
           f"({offloaded_bytes(job) / GiB:.2f} GiB), at most {min(job.shape.layers, OFFLOAD_STASH)} layers' on the "
           "GPU; its copies overlap compute, time not modelled (torchtune: <1% slower on Llama3-8B)"]
          if job.activation_offloading else []),
        f"tokens: {how}" + (f"; scaled to {samples:,} samples" if args.samples and measured else ""),
        f"FLOPs/token {fpt:.3g}: forward 2N, backward 2N activation gradients through the frozen base (no weight "
        "gradients), 6x adapter params" + (", +2N recompute" if job.checkpointing else "")
        + (", +2N reference forward" if job.reference_forward else "") + ", causal attention term",
        *sorted(notes),
        f"prices: {PRICE_SOURCE}" + (f"; {args.gpu.name} at ${args.price_per_hour}/h (given)"
                                      if args.gpu and args.price_per_hour is not None else ""),
    ]
    return {
        "recipe": args.recipe, "model": recipe.model, "method": job.method,
        "shape": dataclasses.asdict(shape), "total_params": shape.total_params,
        "trainable_params": trainable_params(job),
        "batch_size": job.batch, "seq_len": seq, "gradient_checkpointing": job.checkpointing,
        "memory": {k: int(round(v)) for k, v in parts.items()},
        "transients": {k: int(round(v)) for k, v in transients.items()},
        "peak_memory_bytes": int(round(peak)),
        **{k: int(round(v)) for k, v in peak_figures(job, parts).items()},
        "paged_optimizer_bytes": int(round(paged_optimizer_bytes(job))),
        "cpu_offloaded_bytes": int(round(offloaded_bytes(job))),
        "samples": samples, "tokens_per_epoch": round(per_epoch), "tokens": tokens, "schedule": schedule,
        "flops_per_token": fpt, "flops": flops,
        "gpu": chosen["gpu"] if chosen else None, "fits": bool(chosen and chosen["fits"]),
        "max_batch_size": chosen["max_batch_size"] if chosen else 0,
        "hours": chosen["hours"] if chosen else None, "usd": chosen["usd"] if chosen else None,
        "usd_per_hour": chosen["usd_per_hour"] if chosen else None,
        "efficiency": chosen["efficiency"] if chosen else None,
        "gpus": rows_out, "advice": advice, "assumptions": assumptions,
    }
