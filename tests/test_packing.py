"""Packed, padding-free training must score every sample exactly as if it were alone.

TRL's bfd packing concatenates samples into one row with restarting position_ids and no attention mask;
transformers then builds a block-diagonal mask from the position_ids (masking_utils), for SDPA and eager
alike, but only when no KV cache is passed: with use_cache=True a sample attends to its neighbours.
These tests go through our own trainer (doctorkit.train.make_trainer), collator and loss included.
"""
import datasets
import pytest
import torch

import doctorkit.train as dk_train
from doctorkit.methods import get_method
from doctorkit.model import load_model_and_tokenizer
from doctorkit.recipe import Recipe

LENGTHS = (9, 23, 5, 14)


def samples(vocab_size: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n in LENGTHS:
        ids = torch.randint(10, vocab_size, (n,), generator=gen).tolist()
        labels = [-100] * (n // 3) + ids[n // 3:]  # a prompt without loss, then a supervised reply
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def separate_token_losses(model, rows) -> torch.Tensor:
    """Per-token next-token losses of each sample run on its own, concatenated."""
    out = []
    for row in rows:
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor(row["labels"])
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
        keep = labels[1:] != -100
        out.append(torch.nn.functional.cross_entropy(logits[keep], labels[1:][keep], reduction="none"))
    return torch.cat(out)


def packed_trainer(tmp_path, attn: str, loss: str = "lean"):
    recipe = Recipe.model_validate({
        "model": "builtin:tiny", "attn_implementation": attn, "output_dir": str(tmp_path),
        "data": {"packing": True}, "train": {"max_seq_len": 64, "batch_size": 1, "max_steps": 1},
        "lora": {"dropout": 0.0}})
    model, tokenizer = load_model_and_tokenizer(recipe, for_training=True)
    model = get_method("lora").wrap(model, recipe)
    rows = samples(len(tokenizer))
    args = dk_train.trainer_args(recipe, tmp_path, False, model.dtype)
    args.report_to = []
    trainer = dk_train.make_trainer(loss=loss, model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
                                    processing_class=tokenizer)
    return trainer, model, rows


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("loss", ["lean", "full"])
def test_packed_loss_equals_separate_samples(tmp_path, attn, loss):
    trainer, model, rows = packed_trainer(tmp_path, attn, loss)  # chunked CE on CPU, and the model's own loss
    batch = next(iter(trainer.get_train_dataloader()))
    # all four samples fit one 64-token row: one row, positions restarting at every sample, nothing padded
    assert batch["input_ids"].shape == (1, sum(LENGTHS))
    assert "attention_mask" not in batch
    assert (batch["position_ids"][0] == 0).sum().item() == len(LENGTHS)

    model.train()
    with torch.no_grad():
        packed = trainer.compute_loss(model, dict(batch)).item()
        alone = separate_token_losses(model, rows)
    assert packed == pytest.approx(alone.mean().item(), abs=1e-5)


def test_packed_forward_matches_token_by_token_and_needs_no_cache(tmp_path):
    trainer, model, rows = packed_trainer(tmp_path, "sdpa")
    assert model.config.use_cache is False  # set by load_model_and_tokenizer(for_training=True)
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"][0, 1:]
    keep = labels != -100
    model.eval()
    with torch.no_grad():
        alone = separate_token_losses(model, rows)
        per_token = lambda logits: torch.nn.functional.cross_entropy(  # noqa: E731
            logits[0, :-1][keep], labels[keep], reduction="none")
        packed = per_token(model(**inputs, use_cache=False).logits)
        with_cache = per_token(model(**inputs, use_cache=True).logits)
    # bfd packing reorders samples (longest first), so compare the multisets of per-token losses
    alone = alone.sort().values
    assert torch.allclose(packed.sort().values, alone, atol=1e-5)
    # the pitfall this guards against: with a cache, transformers skips the block-diagonal mask
    assert (with_cache.sort().values - alone).abs().max() > 1e-3
