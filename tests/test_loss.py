"""The chunked cross-entropy (train.loss: lean) equals the model's own loss and gradient, without keeping the logits.

Tolerances: both sides compute the same fp32 log-softmax per position; only the order of the fp32 sum over
~60 supervised tokens differs (chunks vs one reduction), so the loss agrees to a few ulp of ~8.0 (rel 1e-5 is
~100x that), and gradients to rtol 1e-4 (one fp32 accumulation order difference per weight element).
"""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from doctorkit.builtin.tiny import build_tiny
from doctorkit.loss import lean_causal_lm_loss


def lora_tiny():
    torch.manual_seed(0)
    model, tokenizer = build_tiny()
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False))
    return model, len(tokenizer)


def batch(vocab: int) -> dict:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (2, 40), generator=gen)
    labels = ids.clone()
    labels[0, :12] = -100       # prompt without loss
    labels[1, 30:] = -100       # padding at the end
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def grads(model) -> dict:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return out


@pytest.mark.parametrize("num_items", [None, 100])
def test_chunked_loss_and_gradients_equal_the_plain_loss(num_items):
    model, vocab = lora_tiny()
    inputs = batch(vocab)
    plain = model(**inputs, use_cache=False, **({"num_items_in_batch": num_items} if num_items else {})).loss
    plain.backward()
    plain_grads = grads(model)
    chunked = lean_causal_lm_loss(model, inputs, num_items, chunk_tokens=7)  # 7 does not divide the token count
    chunked.backward()
    chunked_grads = grads(model)
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-5)
    assert plain_grads.keys() == chunked_grads.keys()
    for name, g in plain_grads.items():
        assert torch.allclose(chunked_grads[name], g, rtol=1e-4, atol=1e-7), name
    assert any(g.abs().sum() > 0 for g in chunked_grads.values())


def test_no_full_logits_are_kept_for_backward():
    """Largest tensor with a vocabulary-wide last dimension saved for backward: all tokens plain, only the last chunk
    chunked (the other chunks' logits are recomputed in backward under the checkpoint; the last one's backward runs
    first, right after the forward, so keeping it costs no more than recomputing it)."""
    model, vocab = lora_tiny()
    inputs = batch(vocab)

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # the head's weight is no logits

    def widest_vocab_tensor(run) -> int:
        seen = [0]

        def pack(t):
            if t.dim() >= 1 and t.shape[-1] == vocab and t.untyped_storage().data_ptr() not in weights:
                seen[0] = max(seen[0], t.numel() // vocab)
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run().backward()
        return seen[0]

    plain_rows = widest_vocab_tensor(lambda: model(**inputs, use_cache=False).loss)
    chunked_rows = widest_vocab_tensor(lambda: lean_causal_lm_loss(model, inputs, chunk_tokens=16))
    assert plain_rows >= 2 * 40 - 1      # the plain loss keeps logits for every position
    supervised = int((inputs["labels"][:, 1:] != -100).sum())   # 28 + 29 = 57: chunks of 16, 16, 16 and 9
    assert chunked_rows == supervised % 16   # only the last chunk's logits are kept; the others are recomputed
