"""Peak GPU memory of one training step, as a sum of named components (bytes).

peak = persistent tensors (weights, trainable parameters, their gradients, optimizer states, P-tuning prefix K/V)
     + activations saved for backward (all of them, or only each layer's input with gradient checkpointing)
     + the largest transient of the backward pass (loss head, one recomputed layer, 4-bit dequantized weight)
     + allocator slack + CUDA context.
With train.activation_offloading the saved activations wait in CPU RAM instead: with checkpointing the peak is then
the larger of two moments, the loss head (TRL's forward stash still on the GPU) and one recomputed layer (its input
brought back alone).
peak_figures gives the same peak as torch.cuda.max_memory_allocated / max_memory_reserved / nvidia-smi would show it.
Transient candidates are reported next to the breakdown but only their maximum is summed.
"""
from __future__ import annotations

import dataclasses

from doctorkit.cost.job import EIGHT_BIT_OPTIMIZERS, Job

NF4_BLOCK = 64          # bitsandbytes 4-bit: one absmax per 64 weights
DQ_BLOCK = 256          # double quantization: absmax themselves 8-bit, one fp32 scale per 256 of them
FUSED_TILE = 4096 * 4096  # TRL's fused LM head works on [4096 tokens x vocab chunk] fp32 tiles
OFFLOAD_STASH = 5       # TRL's OffloadActivations keeps the last 5 saved tensors of the forward on the GPU
# ... until the first backward node, then brings each one back when its node unpacks it and frees it after the node
# (trl/models/activation_offloading.py): a recomputed layer has its own input back, the others wait in CPU RAM
OFFLOAD_BROUGHT_BACK = 1
PAGE_MIN_NUMEL = 100_000  # bitsandbytes' paged optimizers page the states of parameters of >= 1e5 elements only


def weight_bytes(job: Job) -> float:
    s = job.shape
    linear = s.layers * s.layer_linear_params
    rest = s.embedding_params + s.head_params + s.other_params
    if job.weight_bits >= 16:
        return (linear + rest) * job.weight_bits / 8
    if job.weight_bits == 4:
        constants = (1 / NF4_BLOCK + 4 / (NF4_BLOCK * DQ_BLOCK)) if job.double_quant else 4 / NF4_BLOCK
        per_weight = 0.5 + constants
    else:  # LLM.int8: one byte per weight plus an fp32 scale per output row
        per_weight = 1.0 + 4 / s.hidden
    # bitsandbytes quantizes only the decoder layers' linears: embeddings, lm_head and norms stay 16-bit,
    # or become fp32 when prepare_model_for_kbit_training upcasts them.
    rest_bytes = 4 if job.stack.kbit_upcast else job.act_bytes
    return linear * per_weight + rest * rest_bytes


def trainable_params(job: Job) -> int:
    s = job.shape
    if job.own_trainable is not None:           # a method that counts its own (doctorkit.methods cost_terms)
        return job.own_trainable
    if job.uses_lora:
        linears = s.linears()
        per_layer = sum(job.lora_r * (linears[t][0] + linears[t][1]) + (linears[t][1] if job.use_dora else 0)
                        for t in job.lora_targets)
        return s.layers * per_layer
    if job.adapter == "prefix":
        prefix_width = s.layers * 2 * s.kv_dim    # a key and a value per layer, GQA width (kv heads x head dim)
        if job.prefix_projection:                 # embedding -> MLP (hidden -> prefix_hidden -> all layers' K/V)
            return (job.pre_seq_len * s.hidden + s.hidden * job.prefix_hidden + job.prefix_hidden
                    + job.prefix_hidden * prefix_width + prefix_width)
        return job.pre_seq_len * prefix_width
    return 0


def optimizer_bytes_per_param(job: Job) -> float:
    if job.optimizer in EIGHT_BIT_OPTIMIZERS:
        return 2.0                              # two 8-bit moments (block scales are noise)
    if job.optimizer in ("sgd", "adafactor"):
        return 0.0 if job.optimizer == "sgd" else 1.0
    return 2.0 * job.stack.adapter_bytes        # Adam: exp_avg + exp_avg_sq in the parameters' dtype


def paged_optimizer_bytes(job: Job) -> float:
    """Optimizer states a paged bitsandbytes optimizer keeps in CUDA managed memory: on the GPU until memory runs
    short, but outside PyTorch's allocator, so torch.cuda.max_memory_allocated/reserved do not count them."""
    if "paged" not in job.optimizer:
        return 0.0
    per_param = optimizer_bytes_per_param(job)
    if job.uses_lora and job.own_trainable is None:   # each LoRA A (r x in) and B (out x r) is its own parameter
        linears = job.shape.linears()
        sizes = [job.lora_r * n for t in job.lora_targets for n in linears[t]]
        return job.shape.layers * sum(n for n in sizes if n >= PAGE_MIN_NUMEL) * per_param
    return trainable_params(job) * per_param          # other adapters: counted as paged in full


def resident_layers(job: Job) -> int:
    """Decoder layers whose saved activations are on the GPU at the peak: all, or with train.activation_offloading
    at most those in TRL's forward stash (one saved layer input per layer with checkpointing; fewer without)."""
    return min(job.shape.layers, OFFLOAD_STASH) if job.activation_offloading else job.shape.layers


def layer_bytes_per_token(job: Job) -> float:
    """Activations one decoder layer keeps for backward, per token (HF Llama/Qwen/GLM-style layer under PEFT).

    Checked tensor by tensor against a traced step (python -m bench.simulate; tests/test_simulate.py):
    - each RMSNorm keeps its fp32-upcast input;
    - a frozen 16-bit linear keeps only its weight (no activation); a 4/8-bit one that saves its input keeps it;
    - each LoRA module casts its input to the adapters' dtype (fp32) and keeps that copy for lora_A, or with dropout
      the dropout output plus a 1-byte mask (GPU kernel), and lora_B keeps lora_A's rank-r output: per module,
      since q, k and v (gate and up) each make their own copy;
    - attention keeps q, k, v and its output (o_proj's input too, but for eager); K/V repeated to all heads unless
      flash_attention_2 (transformers repeats them for eager, and for SDPA whenever there is a mask: padding, packed
      rows), and SDPA with a mask keeps it as a float [seq x seq] per layer; eager keeps its fp32 softmax and 16-bit
      scores instead;
    - the gated MLP keeps the gate output (act-fn input), the act-fn output and the up output.
    """
    s, a, ad = job.shape, job.act_bytes, job.stack.adapter_bytes
    kv_len = job.seq + job.pre_seq_len
    total = 2 * 4 * s.hidden                     # two RMSNorms keep their fp32-upcast input
    widths = {"q": s.hidden, "k": s.hidden, "v": s.hidden, "o": s.q_dim,
              "gate": s.hidden, "up": s.hidden, "down": s.intermediate}
    groups = (("q", "k", "v"), ("o",), ("gate", "up"), ("down",))   # linears that read the same input
    for group in groups:
        present = [t for t in group if t in s.linears()]
        if not present:
            continue
        width = widths[present[0]]
        lora = [t for t in present if job.uses_lora and t in job.lora_targets]
        if job.lora_dropout > 0:
            own = width * (ad + 1)               # dropout output in the adapters' dtype + bool mask
        else:
            own = width * ad if ad != a else 0   # the cast copy; none when the dtypes agree (the shared input)
        total += len(lora) * (own + job.lora_r * ad)
        base_keeps = job.weight_bits <= 8 and job.stack.quantized_saves_input  # a 4/8-bit matmul keeps its input
        # o_proj reads the attention kernel's output, kept below already: SDPA and flash kernels return it laid out
        # as (batch, seq, heads, dim), so transformers' transpose + contiguous makes no copy (eager's matmul does)
        kernel_output = group == ("o",) and job.attention != "eager"
        if base_keeps or (lora and not own and not kernel_output):
            total += width * a
    kv_width = s.kv_dim if job.attention == "flash_attention_2" else s.q_dim
    if job.attention == "eager":                 # q, repeated K and V, the fp32 softmax and its 16-bit copy
        total += a * (s.q_dim + 2 * kv_width) + s.heads * kv_len * (4 + a)
    else:                                        # the kernel keeps q, k, v and its output; SDPA also the float
        total += a * (2 * s.q_dim + 2 * kv_width) + (a * kv_len if job.attention == "sdpa" else 0)  # mask
    total += a * s.intermediate * (3 if s.gated_mlp else 1)     # act-fn input, act output, up output
    return total


def loss_head_bytes(job: Job) -> float:
    logits = job.tokens * job.shape.vocab
    head_bytes = 4 if (job.weight_bits <= 8 and job.stack.kbit_upcast) else job.act_bytes
    if job.stack.loss_head == "full":     # logits, their fp32 copy (kept by log_softmax), fp32 gradient
        return logits * (head_bytes + 4 + 4)
    if job.stack.loss_head == "bf16_logits":
        return logits * job.act_bytes
    if job.stack.loss_head == "chunked":  # doctorkit/loss.py (CPU): one chunk of logits in backward
        from doctorkit.loss import CHUNK_BYTES_PER_LOGIT, CHUNK_LOGITS
        return min(logits, CHUNK_LOGITS) * CHUNK_BYTES_PER_LOGIT
    return min(job.tokens, 4096) * min(job.shape.vocab, 4096) * 4 * 2   # fused: one tile and its gradient


def breakdown(job: Job) -> tuple[dict[str, float], dict[str, float]]:
    """(components that sum to the peak, transient candidates of which the largest is in the sum)."""
    s, a, tokens = job.shape, job.act_bytes, job.tokens
    n_train = trainable_params(job)
    param_bytes = job.stack.adapter_bytes
    per_layer = layer_bytes_per_token(job) * tokens
    final = tokens * s.hidden * (4 + a)          # final norm input + hidden states into the LM head
    if job.checkpointing:                        # only each layer's input survives; a layer is recomputed
        activations = resident_layers(job) * tokens * s.hidden * a + final
    else:
        activations = resident_layers(job) * per_layer + final
    prefix_kv = 0.0
    if job.adapter == "prefix":                 # prefix K/V expanded to the batch, its copy inside attention, grad
        prefix_kv = 3 * s.layers * 2 * job.pre_seq_len * s.kv_dim * job.sequences * a
    # a layer's widest tensors in flight besides its saved ones, in 16-bit and, with fp32 adapters, in fp32 too
    # (PEFT's cast copy; none when the adapters are in the compute dtype): the MLP-wide input of down_proj while it
    # is recomputed, or its gradient, and a hidden-wide gradient (traced: the peak with checkpointing falls in
    # down_proj's recompute)
    cast_copy = job.stack.adapter_bytes if job.stack.adapter_bytes != a else 0
    grads_in_flight = tokens * (a + cast_copy) * (s.hidden + s.intermediate)
    transients = {
        "loss_head": loss_head_bytes(job),
        "backward_layer": (per_layer if job.checkpointing else 0) + grads_in_flight,
    }
    if job.weight_bits == 4:                     # bitsandbytes dequantizes one weight matrix at a time
        transients["dequantized_weight"] = max(i * o for i, o in s.linears().values()) * a
    transient = max(transients.values())
    if job.activation_offloading and job.checkpointing:   # the larger of the two moments (module docstring)
        layer_input = tokens * s.hidden * a
        at_loss_head = (resident_layers(job) * layer_input + final, transients["loss_head"])
        layer_transient = max(v for k, v in transients.items() if k != "loss_head")
        at_layer = (OFFLOAD_BROUGHT_BACK * layer_input + final, layer_transient)
        activations, transient = max(at_loss_head, at_layer, key=sum)
    parts = {
        "weights": weight_bytes(job),
        "trainable_params": n_train * param_bytes,
        "gradients": n_train * param_bytes,
        "optimizer_states": n_train * optimizer_bytes_per_param(job),
        "prefix_kv": prefix_kv,
        "activations": activations,
        "backward_transient": transient,
    }
    parts["allocator_slack"] = job.stack.allocator_slack * sum(parts.values())
    parts["cuda_context"] = job.stack.cuda_context_bytes
    return parts, transients


def peak_bytes(job: Job) -> float:
    return sum(breakdown(job)[0].values())


def peak_figures(job: Job, parts: dict[str, float]) -> dict[str, float]:
    """One peak as the three quantities people measure (bytes):
    tensor_peak: live tensors in PyTorch's allocator, comparable to torch.cuda.max_memory_allocated;
    reserved_peak: plus the allocator's slack, comparable to torch.cuda.max_memory_reserved;
    device_peak: plus the CUDA context and paged optimizer states (nvidia-smi; what must fit the card)."""
    device = sum(parts.values())
    reserved = device - parts["cuda_context"] - paged_optimizer_bytes(job)
    return {"tensor_peak_bytes": reserved - parts["allocator_slack"], "reserved_peak_bytes": reserved,
            "device_peak_bytes": device}


def offloaded_bytes(job: Job) -> float:
    """Saved activations that wait in CPU RAM (pinned) with train.activation_offloading."""
    if not job.activation_offloading:
        return 0.0
    kept = breakdown(dataclasses.replace(job, activation_offloading=False))[0]["activations"]
    return kept - breakdown(job)[0]["activations"]
