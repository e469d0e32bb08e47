"""Tolerances for comparing logits of two computations of the same function, derived from the dtype in use.

A linear layer y = x W^T with inner dimension K, computed two ways (say the adapter model's x W^T + (x A^T) B^T
against the merged model's x (W + BA)^T), differs by the rounding of each: for a dot product of K terms
accumulated in a dtype with unit roundoff u, |error| <= K u sum|x_k w_k| (the standard gamma_K bound), i.e. a
relative error of at most K u per layer. A 16-bit path that accumulates in fp32 (bitsandbytes' bf16 kernel, like
tensor cores) instead rounds its input, its block scales and its output to 16 bits: 3 u16 per layer, plus the
fp32 accumulation's K u32. To first order the relative errors of the layers on the longest chain add up (norms
rescale, they do not amplify); the absolute tolerance is that sum times the largest logit.
"""
from __future__ import annotations

import torch

FP32_UNIT_ROUNDOFF = torch.finfo(torch.float32).eps / 2


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def linears_in_series(model) -> int:
    """Linear layers on the longest input-to-logits chain of a decoder: per layer, attention (v then o) and the
    MLP (gate/up then down), then the LM head."""
    return 4 * model.config.num_hidden_layers + 1


def logits_atol(model, logits: torch.Tensor, dtype: torch.dtype) -> float:
    """Absolute tolerance for `logits` of `model` computed in `dtype` vs the same function another way."""
    inner = max(model.config.hidden_size, model.config.intermediate_size)
    per_layer = inner * FP32_UNIT_ROUNDOFF
    if dtype != torch.float32:
        per_layer += 3 * unit_roundoff(dtype)
    return linears_in_series(model) * per_layer * float(logits.abs().max())
