"""How packed rows (data.packing) reach attention, so that packing never costs attention over the whole batch.

TRL's bfd packing fills rows of up to train.max_seq_len tokens with whole samples. Its collator then joins
the batch's rows into ONE padding-free sequence (8 rows of 512 -> 1 x 4,096). That is right for attention
kernels that take per-document lengths (varlen): they cost sum(len_i^2). With dense attention (sdpa,
eager) transformers instead builds a 4,096 x 4,096 block mask and attends over all of it: 8x the work of
the rows, and slower than not packing (bench/results/cpu-run1.json, issue 20). So a packed batch takes
one of two layouts, `data.packing_layout`:

- `varlen`: TRL's flattened batch, attention per document. flash_attention_2/3 read TRL's cu_seq_lens;
  flex_attention gets a document block mask (transformers builds it from the restarting position_ids)
  and skips the blocks between documents; with `sdpa` the kit runs sdpa once per document
  (`sdpa_by_document` below).
- `rows`: the packed rows stay separate batch rows (padded to the longest row), position_ids restart at
  every document, and transformers builds a block-diagonal causal mask per row from them: attention
  costs max_seq_len^2 per row, never over the flattened batch. Works with every attention, eager included.

`auto` picks varlen when the attention has a varlen form and rows otherwise (eager; and sdpa on CUDA,
where one kernel launch per document and layer costs more than the masked rows save). The run log says
which layout and attention a run got; doctorkit.cost asks `attention_keys_per_token` what it costs.
"""
from __future__ import annotations

import dataclasses

import torch

SDPA_BY_DOCUMENT = "doctorkit_sdpa_by_document"   # registered with transformers' AttentionInterface
VARLEN_KERNELS = ("flash_attention_2", "flash_attention_3", "flex_attention")  # take per-document lengths


def sdpa_by_document(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     cu_seq_lens_q=None, position_ids=None, **kwargs):
    """Causal attention of each packed document on its own, over a padding-free (1, heads, tokens, dim) row.

    Hand-written because no library offers varlen attention with a backward pass on a CPU: flash-attention
    is CUDA-only and torch's flex_attention raises "does not support backward on CPU" (torch 2.13). The
    document boundaries come from TRL's collator (cu_seq_lens_q) or the restarting position_ids, so each
    slice is plain causal sdpa: cost sum(len_i^2), no mask built. Anything else (padded batches, a KV cache)
    goes to transformers' own sdpa with the mask `_mask_for_sdpa_by_document` built for it.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    one_row = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if not one_row:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      position_ids=position_ids, **kwargs)
    if kwargs.get("sliding_window"):
        raise ValueError(f"{SDPA_BY_DOCUMENT} does not implement sliding-window attention")
    if cu_seq_lens_q is not None:
        bounds = cu_seq_lens_q.tolist()
    elif position_ids is not None:
        bounds = (position_ids[0] == 0).nonzero().flatten().tolist() + [query.shape[2]]
    else:
        bounds = [0, query.shape[2]]
    gqa = query.shape[1] != key.shape[1]
    dropout = dropout if module.training else 0.0
    # split, not one slice per document: a slice's backward writes its gradient into a zero tensor of the whole
    # row, one per document and per q/k/v, while split's backward is a single concatenation
    sizes = [end - start for start, end in zip(bounds[:-1], bounds[1:]) if end > start]
    parts = [torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                                              scale=scaling, enable_gqa=gqa)
             for q, k, v in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2))]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _mask_for_sdpa_by_document(batch_size: int, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """No mask for one unpadded row (sdpa_by_document finds its documents); sdpa's mask for anything else."""
    from transformers.masking_utils import sdpa_mask

    if batch_size == 1 and attention_mask is None and q_length == kv_length:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask,
                     **kwargs)


def register_sdpa_by_document() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(SDPA_BY_DOCUMENT, sdpa_by_document)
    ALL_MASK_ATTENTION_FUNCTIONS.register(SDPA_BY_DOCUMENT, _mask_for_sdpa_by_document)


def resolve(layout: str, attention: str, on_cuda: bool) -> tuple[str, str]:
    """(layout, attention to run) for a packed run whose model loaded with `attention`."""
    from doctorkit.errors import DoctorKitError

    if layout == "auto":
        varlen = attention in VARLEN_KERNELS or (attention == "sdpa" and not on_cuda)
        layout = "varlen" if varlen else "rows"
    if layout == "rows":
        return "rows", attention
    if attention in VARLEN_KERNELS:
        return "varlen", attention
    if attention == "sdpa":
        return "varlen", SDPA_BY_DOCUMENT
    raise DoctorKitError(f"data.packing_layout: varlen needs an attention with per-document lengths "
                         f"(flash_attention_2, flex_attention or sdpa), not '{attention}'; use rows or auto")


def configure(recipe, model) -> str | None:
    """Sets the model's attention for the recipe's packed layout and returns the layout (None: not packing)."""
    if not recipe.data.packing:
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    loaded = base.config._attn_implementation
    layout, attention = resolve(recipe.data.packing_layout, loaded, torch.cuda.is_available())
    if attention != loaded:
        register_sdpa_by_document()
        base.set_attn_implementation(attention)
    return layout


def describe(layout: str, model) -> str:
    """The run log's line about packing (which layout and which attention this run got)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    attention = base.config._attn_implementation
    how = ("one padding-free sequence, attention per document" if layout == "varlen"
           else "packed rows kept apart, block-diagonal causal mask per row")
    return f"packing: {layout} ({how}; attention {attention})"


@dataclasses.dataclass
class PackedRowsCollator:
    """Batches TRL's packed rows (input_ids, labels, seq_lengths) as separate rows for the `rows` layout.

    No attention_mask on purpose: given restarting position_ids and no mask, transformers builds the
    block-diagonal causal mask per row (masking_utils.find_packed_sequence_indices). Each row's padding tail
    gets positions 0.. of its own, so it is one more "document" that nothing real attends to.
    """
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(e["input_ids"]) for e in examples)
        ids, labels, positions = [], [], []
        for e in examples:
            pad = width - len(e["input_ids"])
            position = torch.cat([torch.arange(n) for n in [*e["seq_lengths"], pad] if n])
            label = torch.tensor(list(e.get("labels", e["input_ids"])) + [-100] * pad)
            label[position == 0] = -100  # a document's first token is no target of the previous one
            ids.append(torch.tensor(list(e["input_ids"]) + [self.pad_token_id] * pad))
            labels.append(label)
            positions.append(position)
        return {"input_ids": torch.stack(ids), "labels": torch.stack(labels), "position_ids": torch.stack(positions)}


def attention_keys_per_token(layout: str, lengths: list[int], row_tokens: int) -> float:
    """Keys each trained token's query meets, on average, in a packed batch (doctorkit.cost's attention term).

    varlen attends within each document, causally: sum(len^2) / sum(len) / 2. rows run a dense kernel with a
    block mask over each whole row (masked scores are still computed): row_tokens per token.
    """
    if layout == "rows":
        return float(row_tokens)
    return sum(n * n for n in lengths) / max(1, sum(lengths)) / 2
