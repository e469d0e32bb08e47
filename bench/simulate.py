"""Trace one real training step of a model's true shape, with no weights and no GPU, and check the cost estimator.

    python -m bench.simulate MODEL_SHAPE RECIPE [--set KEY=VALUE ...] [--out bench/results/simulated-NAME.json]
    python -m bench.simulate llama-3.1-8b recipes/lora.yaml --set train.batch_size=2 --set train.max_seq_len=2048 \\
        --set gradient_checkpointing=true --set data.packing=true

The model is built from the shape (doctorkit.cost.shapes) under PyTorch's FakeTensorMode: every tensor has its
real shape and dtype but no storage, so an 8B step runs on a laptop. The recipe's method wraps it (PEFT LoRA),
then two steps of forward, backward (the recipe's loss: train.loss) and AdamW run: the first under
torch.utils.flop_counter.FlopCounterMode (FLOPs of every matmul and attention call; it also creates the optimizer
states), the second under torch.distributed._tools.mem_tracker.MemTracker (memory by category at the peak). Apart,
because the FLOP counter's backward hooks would keep checkpointing's recomputed layers alive. The result is compared
with doctorkit.cost's estimate of the same job, component by component. An 8B trace takes about 20 s of CPU.

What tracing cannot cover is listed in the output ("not_traced"): bitsandbytes 4/8-bit kernels (they are not fake-
tensor aware, so QLoRA is traced as its 16-bit LoRA equivalent and only the 16-bit parts are compared), the
workspace of fused attention kernels on GPUs (the CPU's SDPA kernel is traced), the CUDA context and allocator
fragmentation (the estimate's terms for them are left out of the comparison).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path

import torch

from doctorkit.errors import DoctorKitError, cli_main
from doctorkit.recipe import recipe_arguments, recipe_from_args

RESULTS = Path(__file__).parent / "results"
GiB = 1024 ** 3
NOT_TRACED = [
    "bitsandbytes 4/8-bit matmuls (not fake-tensor aware): a quantized base is traced as 16-bit LoRA; its weight "
    "bytes come from the estimator's NF4 formula, not from tracing",
    "fused attention workspace on GPUs (flash / memory-efficient SDPA kernels): the CPU SDPA kernel is traced",
    "CUDA context and caching-allocator fragmentation (estimate terms cuda_context, allocator_slack): left out",
    "TRL's Triton fused LM head (GPU, train.loss: lean): traced as the chunked cross-entropy that replaces it on CPU",
    "FLOPs: FlopCounterMode counts SDPA over the full seq x seq (the estimator counts the causal half) with the "
    "scores recomputed in backward, and the chunked loss recomputes the LM head in backward (+2 x vocab x hidden per "
    "token); expect traced >= estimated, and the estimate counted the tracer's way (ratio_as_traced) to match",
    "gradients: the traced peak falls at the start of backward (loss head), before gradients exist; the estimator "
    "counts all of them at the peak (an upper bound)",
    "LoRA dropout: traced with the kernel GPUs run (torch.native_dropout, 1-byte mask), not the CPU's composite "
    "dropout (a mask in the input's dtype)",
    "train.activation_offloading (on with checkpointing by default, GPU only): the trace and the estimate it is "
    "compared with keep the saved activations in place",
    "attention mask: fake tensors make transformers build an explicit causal mask, as padding or packed rows do on a "
    "GPU, so SDPA gets K/V repeated to all heads and a float mask per layer (a mask-free batch would use neither)",
]


class GpuDropout(torch.nn.Module):
    """Dropout as CUDA runs it: torch's CPU dropout is a composite that keeps a mask in the input's dtype (fp32 for
    PEFT's fp32 adapters, 4 bytes), the fused kernel GPUs use (native_dropout) keeps a bool mask (1 byte). The trace
    is of a GPU step, so LoRA's dropout modules are swapped for this one-liner (no library offers the swap)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        return torch.native_dropout(x, self.p, self.training)[0]


def gpu_dropout(model) -> int:
    """Replace every nn.Dropout inside PEFT's lora_dropout dicts by GpuDropout; returns how many."""
    swapped = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if isinstance(drops, torch.nn.ModuleDict):
            for name, drop in list(drops.items()):
                if isinstance(drop, torch.nn.Dropout):
                    drops[name] = GpuDropout(drop.p)
                    swapped += 1
    return swapped


def hf_config(shape):
    """A transformers config with exactly this shape (Qwen2 for Qwen, GLM for GLM-4, Llama otherwise)."""
    from transformers import GlmConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                  num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                  num_key_value_heads=shape.kv_heads, tie_word_embeddings=shape.tied, max_position_embeddings=32768)
    name = shape.name.lower()
    if "qwen" in name:
        return Qwen2Config(**common)
    if "glm" in name:
        return GlmConfig(**common, head_dim=shape.dim_per_head)
    return LlamaConfig(**common, head_dim=shape.dim_per_head)


def cpu_sdpa_flops() -> dict:
    """FlopCounterMode formulas for the CPU's SDPA kernel, which torch's table lacks (it has only the GPU kernels):
    without them the traced FLOPs left attention out. torch's own SDPA formulas, over the full seq x seq."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, query, key, value)

    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def peak_tracker():
    """MemTracker keeping only the step's peak by category, which is all this bench reads.

    MemTracker also updates every module's own peak after every operator: a loop over all modules per op, quadratic
    in depth (35% of the time on 6 layers of Qwen2.5-7B, most of it on 28-40 layers). Skipping it leaves the
    global peak unchanged: the override is the global half of MemTracker._update_peak_stats.
    """
    from copy import deepcopy

    from torch.distributed._tools.mem_tracker import MemTracker

    class PeakOnly(MemTracker):
        def _update_peak_stats(self, peak_state) -> None:
            for dev, dev_snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < dev_snap["Total"]:
                    self._peak_mem[dev] = dev_snap["Total"]
                    self._peak_mem_snap[dev] = deepcopy(dev_snap)

    return PeakOnly()


def to_fake(model) -> None:
    """Give every meta parameter and buffer a fake CPU tensor of the same shape and dtype (inside FakeTensorMode).
    A parameter shared by two modules (tied embeddings and lm_head) stays one parameter."""
    done = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                if id(param) not in done:
                    done[id(param)] = torch.nn.Parameter(torch.empty_like(param, device="cpu"),
                                                         requires_grad=param.requires_grad)
                module._parameters[name] = done[id(param)]
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = torch.zeros_like(buf, device="cpu")


def simulate(recipe, shape_name: str) -> dict:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    from doctorkit.cost.estimate import flops_per_token
    from doctorkit.cost.job import job_from_recipe
    from doctorkit.cost.memory import breakdown
    from doctorkit.cost.shapes import resolve_shape
    from doctorkit.loss import chunk_tokens_for, lean_causal_lm_loss
    from doctorkit.methods import get_method, resolve_gradient_checkpointing

    shape, _ = resolve_shape(shape_name)
    resolve_gradient_checkpointing(recipe)
    # the trace keeps every saved activation where it was made (a CPU cannot offload to itself): compared without
    job = dataclasses.replace(job_from_recipe(recipe, shape, recipe.train.max_seq_len), activation_offloading=False)
    if recipe.train.loss == "lean":   # what is traced: the chunked cross-entropy, not TRL's GPU kernel
        job.stack.loss_head = "chunked"
    batch, seq = job.sequences, job.seq
    traced_method = "lora" if job.weight_bits < 16 else recipe.method   # see NOT_TRACED
    if traced_method not in ("lora", "qlora", "dpo"):
        raise DoctorKitError(f"method {recipe.method}: bench.simulate traces LoRA-style methods only")
    dtype = torch.float32 if job.act_bytes == 4 else torch.bfloat16

    config = hf_config(shape)
    config.use_cache = False
    with torch.device("meta"):   # shapes only; PEFT's wrapping runs here too (its .to() cannot swap fake params)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        model = get_method("lora").wrap(model, recipe)
        if job.stack.adapter_bytes == job.act_bytes:   # lora.adapter_dtype as on the GPU the estimate is for (on
            for param in model.parameters():          # this CPU, auto resolves to fp32)
                if param.requires_grad:
                    param.data = param.data.to(dtype)
        gpu_dropout(model)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    with fake_mode:
        to_fake(model)
        if recipe.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=False)  # per-tensor steps: no fused-copy transients
        ids = torch.randint(0, shape.vocab, (batch, seq))
        inputs = {"input_ids": ids, "labels": ids.clone()}

        def step():
            if recipe.train.loss == "lean":  # every position of a packed row is scored
                loss = lean_causal_lm_loss(model, inputs, drop_ignored=False)
            else:
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        # FLOPs are counted on the first step, memory on the second. FlopCounterMode's module tracker registers
        # backward hooks (register_multi_grad_hook) on every module's outputs, also on those of the layers that
        # checkpointing recomputes in backward, and those hooks keep each recomputed layer's tensors alive until the
        # counter exits (with the hooks stubbed out the live peak equals the one without the counter). Traced
        # together, MemTracker saw every layer's recompute at once: 11.2 GiB of activations on Qwen2.5-7B at seq
        # 1024 with checkpointing on, instead of one layer's.
        with FlopCounterMode(display=False, custom_mapping=cpu_sdpa_flops()) as flops:
            step()   # also creates the optimizer states, which every later step carries (the steady state)
        tracker = peak_tracker()
        # MemTracker hooks every parameter's gradient, which a frozen one refuses: mark those as already hooked
        noop = types.SimpleNamespace(remove=lambda: None)
        for param in model.parameters():
            if not param.requires_grad:
                tracker._param_to_grad_hook_handles[param] = (noop, noop)
        tracker.track_external(model, optimizer)
        with tracker:
            step()
        peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    traced = {k: int(v) for k, v in peak.items()}
    parts, transients = breakdown(job)
    trainable = parts["trainable_params"]
    estimated = {
        "parameters (frozen + trainable)": parts["weights"] + trainable if job.weight_bits >= 16 else None,
        "gradients": parts["gradients"],
        "optimizer_states": parts["optimizer_states"],
        "activations + temporaries": parts["activations"] + parts["backward_transient"],
    }
    measured = {
        "parameters (frozen + trainable)": traced.get("Parameter", 0) + traced.get("Buffer", 0),
        "gradients": traced.get("Gradient", 0),
        "optimizer_states": traced.get("Optstate", 0),
        "activations + temporaries": traced.get("Activation", 0) + traced.get("Temp", 0) + traced.get("Other", 0),
    }
    total_est = sum(v for v in estimated.values() if v is not None)
    total_traced = sum(v for k, v in measured.items() if estimated[k] is not None)
    est_fpt = flops_per_token(job)
    # what the tracer counts differently, added to the estimate for a like-for-like ratio: SDPA over the full
    # seq x seq (twice the estimator's causal half) with the backward's recompute of the scores (torch's formula:
    # 5 matmuls against the forward's 2; the estimator: 2 x forward), in the forward, backward and checkpointing's
    # recompute; and the chunked loss's LM-head recompute in backward (2 x vocab x hidden per recomputed token: every
    # chunk but the last, doctorkit/loss.py)
    causal_pass = 2 * 2 * shape.layers * shape.q_dim * (seq / 2)
    passes = 1 if job.checkpointing else 0
    traced_attention = 2 * causal_pass * (1 + 2.5 + passes)
    chunk = chunk_tokens_for(shape.vocab)
    recomputed = (batch * seq - ((batch * seq - 1) % chunk + 1)) / (batch * seq) if recipe.train.loss == "lean" else 0.0
    as_traced = est_fpt - causal_pass * (3 + passes) + traced_attention + 2 * shape.vocab * shape.hidden * recomputed
    traced_fpt = flops.get_total_flops() / (batch * seq)
    return {
        "shape": shape_name, "recipe_method": recipe.method, "traced_method": traced_method,
        "batch": batch, "seq_len": seq, "gradient_checkpointing": bool(recipe.gradient_checkpointing),
        "loss": recipe.train.loss, "dtype": str(dtype).replace("torch.", ""),
        "traced_peak_by_category_bytes": traced,
        "compare_bytes": {k: {"estimated": None if estimated[k] is None else int(estimated[k]), "traced": measured[k],
                              "ratio": None if estimated[k] is None or not measured[k] else estimated[k] / measured[k]}
                          for k in estimated},
        "tensor_peak_bytes": {"estimated": int(total_est), "traced": int(total_traced),
                              "ratio": total_est / total_traced if total_traced else None},
        "flops_per_token": {"estimated": est_fpt, "traced": traced_fpt, "ratio": est_fpt / traced_fpt,
                            "estimated_as_traced": as_traced, "ratio_as_traced": as_traced / traced_fpt},
        "estimate_terms_left_out": {"cuda_context": int(parts["cuda_context"]),
                                    "allocator_slack": int(parts["allocator_slack"])},
        "not_traced": NOT_TRACED,
    }


def render(r: dict) -> str:
    lines = [f"{r['shape']} {r['recipe_method']} (traced as {r['traced_method']}, {r['dtype']}), batch {r['batch']} x "
             f"{r['seq_len']}, checkpointing {'on' if r['gradient_checkpointing'] else 'off'}, loss {r['loss']}",
             f"  {'peak tensors by category':<34}{'estimated':>11}{'traced':>10}{'est/traced':>12}"]
    for key, row in r["compare_bytes"].items():
        est = "-" if row["estimated"] is None else f"{row['estimated'] / GiB:.2f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(f"  {key:<34}{est:>11}{row['traced'] / GiB:>10.2f}{ratio:>12}")
    t, f = r["tensor_peak_bytes"], r["flops_per_token"]
    lines += [f"  {'tensor peak':<34}{t['estimated'] / GiB:>11.2f}{t['traced'] / GiB:>10.2f}{t['ratio']:>12.3f}",
              f"  {'FLOPs per token':<34}{f['estimated']:>11.3g}{f['traced']:>10.3g}{f['ratio']:>12.3f}",
              f"  {'  counted as the tracer does':<34}{f['estimated_as_traced']:>11.3g}{f['traced']:>10.3g}"
              f"{f['ratio_as_traced']:>12.3f}",
              "  not traced (compared without them):"] + [f"    - {n}" for n in r["not_traced"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("shape", help="model shape: a name from doctorkit.cost.shapes (qwen2.5-7b, llama-3.1-8b, glm-4-9b, ...)")
    recipe_arguments(parser)
    parser.add_argument("--out", type=Path, help="JSON result (default: bench/results/simulated-SHAPE-METHOD.json)")
    args = parser.parse_args(argv)
    recipe = recipe_from_args(args)
    result = simulate(recipe, args.shape)
    result["command"] = "python -m bench.simulate " + " ".join(argv if argv is not None else sys.argv[1:])
    out = args.out or RESULTS / f"simulated-{args.shape}-{recipe.method}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(render(result) + f"\n  -> {out}")
    return 0


if __name__ == "__main__":
    cli_main(main)
