"""Memory-lean causal-LM loss: cross-entropy of the supervised positions only, a chunk of tokens at a time.

The model's own loss keeps the full `[tokens, vocab]` logits, their fp32 copy and the fp32 gradient: on a
152k vocabulary and 4096 tokens that is 2.3 GB + 2.3 GB + 2.3 GB at the peak. Here the decoder's last hidden state
is taken from the model (it asks the LM head for one position only, `logits_to_keep=1`), the positions with
label -100 are dropped, and each chunk's logits but the last are computed inside a checkpoint so that backward
recomputes them instead of keeping them: at most one chunk's logits (chunk x vocab) exist at a time.

On GPUs TRL's fused LM head (a Triton kernel with the same property) is used instead (doctorkit/stages/sft.py); this
torch version is what runs where that kernel does not (CPU), and what the equality test checks against the plain loss.
Hand-written because no installed library offers a chunked CE that takes a transformers model as it is
(Liger / Cut Cross-Entropy are CUDA-only and not installed here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100
# Logit elements per chunk: 2^24 = 64 MB in fp32 (110 tokens on a 152k vocabulary, 8192 on builtin:tiny's 2k).
# Backward of one chunk peaks at 12 bytes per element, in log-softmax's backward: its saved fp32 output, the fp32
# gradient coming in and the fp32 gradient going out (the recomputed 16-bit logits are freed once upcast, and the
# 16-bit gradient is made after two of the three are gone; traced by bench.simulate): ~0.2 GB, against ~7 GB for
# the full logits of 4096 tokens x 152k.
CHUNK_LOGITS = 2 ** 24
CHUNK_BYTES_PER_LOGIT = 12


def chunk_tokens_for(vocab: int) -> int:
    return max(1, CHUNK_LOGITS // vocab)


def causal_lm_of(model):
    """The transformers CausalLM inside PEFT / P-tuning / accelerate wrappers (the first module with an LM head)."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.get_output_embeddings() is not None:
            return module
    raise TypeError(f"{type(model).__name__} holds no causal language model with an output head")


def _chunk_loss_sum(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # same arithmetic as transformers' ForCausalLMLoss: logits in the model dtype, upcast to fp32 for the CE.
    # The head's weight is used directly rather than calling the module once per chunk (module hooks, e.g.
    # MemTracker's in bench/simulate.py, expect one call per step).
    return F.cross_entropy(F.linear(hidden, head.weight, head.bias).float(), labels, ignore_index=IGNORE, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor,
                          num_items_in_batch=None, shift_labels: torch.Tensor | None = None,
                          chunk_tokens: int | None = None, drop_ignored: bool = True) -> torch.Tensor:
    """Causal-LM loss from the final hidden states `[batch, seq, hidden]` and *unshifted* labels `[batch, seq]`.

    Sum over supervised positions divided by `num_items_in_batch` when given (gradient accumulation across
    micro-batches, as the Trainer passes it), else their mean: transformers' ForCausalLMLoss reduction.
    drop_ignored=False keeps the -100 positions in the chunks (cross_entropy skips them): no data-dependent shape,
    for tracing with fake tensors (bench/simulate.py), at the cost of scoring positions that carry no loss.
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=IGNORE)[..., 1:]
    targets = shift_labels.reshape(-1).to(hidden.device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    if drop_ignored:
        keep = (targets != IGNORE).nonzero().squeeze(1)
        flat, targets = flat.index_select(0, keep), targets.index_select(0, keep)
    chunk_tokens = chunk_tokens or chunk_tokens_for(head.weight.shape[0])
    total = hidden.new_zeros((), dtype=torch.float32)
    last = max(0, targets.numel() - 1) // chunk_tokens * chunk_tokens
    for start in range(0, targets.numel(), chunk_tokens):
        part = slice(start, start + chunk_tokens)
        # The last chunk keeps its logits for backward instead of recomputing them: backward starts with it, right
        # after this forward, so its saved logits are the one chunk the peak holds anyway (the others are recomputed
        # one at a time later). That saves a third of the head's matmuls and a log-softmax per step; when one chunk
        # holds every supervised token (small vocabularies, e.g. builtin:tiny) nothing is recomputed at all.
        if torch.is_grad_enabled() and flat.requires_grad and start != last:
            total = total + checkpoint(_chunk_loss_sum, head, flat[part], targets[part], use_reentrant=False)
        else:
            total = total + _chunk_loss_sum(head, flat[part], targets[part])
    if num_items_in_batch is not None:
        return total / (num_items_in_batch.to(total.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch)
    return total / (targets != IGNORE).sum()  # 0/0 = nan when nothing is supervised, as the plain mean gives


def lean_causal_lm_loss(model, inputs: dict, num_items_in_batch=None, chunk_tokens: int | None = None,
                        drop_ignored: bool = True) -> torch.Tensor:
    """Run `model` on a training batch and return the chunked loss, never building the full logits."""
    lm = causal_lm_of(model)
    if hasattr(lm.get_output_embeddings().weight, "ds_id"):
        # DeepSpeed ZeRO-3 holds each weight as a partition that only its own module's forward gathers: read here,
        # the head's weight is an empty tensor. The model's own loss (same reduction) is the one that works there.
        loss_kwargs = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        return model(**{**inputs, "use_cache": False}, **loss_kwargs).loss
    inputs = dict(inputs)
    labels, shift_labels = inputs.pop("labels"), inputs.pop("shift_labels", None)
    captured = {}

    def keep_hidden(module, args, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = lm.get_decoder().register_forward_hook(keep_hidden)
    try:
        model(**{**inputs, "use_cache": False}, logits_to_keep=1)   # the head scores one position, not all of them
    finally:
        handle.remove()
    return chunked_cross_entropy(captured["hidden"], lm.get_output_embeddings(), labels, num_items_in_batch,
                                 shift_labels, chunk_tokens, drop_ignored)
