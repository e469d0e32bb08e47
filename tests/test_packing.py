"""Packed training must score every sample exactly as if it were alone, on every packed layout.

TRL's bfd packing fills rows with whole samples; doctorkit/packing.py then either flattens the batch into
one padding-free sequence with per-document attention (`varlen`: flash-attention, flex_attention, or sdpa
run once per document) or keeps the rows apart with a block-diagonal mask per row (`rows`: any attention).
transformers builds the masks from the restarting position_ids, but only when no KV cache is passed: with
use_cache=True a sample attends to its neighbours. These tests go through our own trainer
(doctorkit.train.make_trainer), collator and loss included.
"""
import datasets
import pytest
import torch

import doctorkit.train as dk_train
from doctorkit import packing
from doctorkit.methods import get_method
from doctorkit.model import load_model_and_tokenizer
from doctorkit.recipe import Recipe

LENGTHS = (9, 23, 5, 14)  # bfd into 32-token rows: [23, 9] and [14, 5] (+13 padding in the rows layout)
ROW = 32
# Every token's loss is computed in fp32 from the same weights; packing only changes which keys are masked
# out (exactly zero weight after softmax) and the summation order, so per-token losses (~log 2048 = 7.6)
# agree to a few fp32 ulps: 1e-5 leaves room for that and none for a leaked neighbour (>1e-3, see below).
TOL = 1e-5


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
        ids, labels = torch.tensor([row["input_ids"]], device=model.device), torch.tensor(row["labels"], device=model.device)
        logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
        keep = labels[1:] != -100
        out.append(torch.nn.functional.cross_entropy(logits[keep], labels[1:][keep], reduction="none"))
    return torch.cat(out)


def packed_token_losses(logits, labels) -> torch.Tensor:
    labels = labels[:, 1:]
    keep = labels != -100
    return torch.nn.functional.cross_entropy(logits[:, :-1][keep], labels[keep], reduction="none")


def packed_trainer(tmp_path, attn: str, layout: str, loss: str = "lean"):
    recipe = Recipe.model_validate({
        "model": "builtin:tiny", "attn_implementation": attn, "output_dir": str(tmp_path),
        "data": {"packing": True, "packing_layout": layout},
        "train": {"max_seq_len": ROW, "batch_size": 2, "max_steps": 1}, "lora": {"dropout": 0.0}})
    model, tokenizer = load_model_and_tokenizer(recipe, for_training=True)
    model = get_method("lora").wrap(model, recipe)
    layout = packing.configure(recipe, model)
    rows = samples(len(tokenizer))
    args = dk_train.trainer_args(recipe, tmp_path, False, model.dtype)
    args.report_to = []
    trainer = dk_train.make_trainer(loss=loss, packing_layout=layout, model=model, args=args,
                                    train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
    return trainer, model, rows, layout


def gpu_path(attn: str, needs: str | None = None):
    import importlib.util
    missing = not torch.cuda.is_available() or (needs is not None and importlib.util.find_spec(needs) is None)
    return pytest.param(attn, "auto", "lean", marks=pytest.mark.skipif(missing, reason=f"needs a CUDA GPU {needs or ''}"))


# (attention the model loads with, data.packing_layout, train.loss: lean = chunked CE on CPU / TRL's fused head on
# a GPU, full = the model's own loss): every layout a run can get, each loss on some of them
PATHS = [("sdpa", "auto", "lean"), ("sdpa", "rows", "lean"), ("eager", "auto", "full"), ("sdpa", "varlen", "full"),
         ("eager", "rows", "lean"), ("sdpa", "rows", "full"), gpu_path("flex_attention"), gpu_path("flash_attention_2", "flash_attn")]


@pytest.mark.parametrize("attn,layout,loss", PATHS)
def test_packed_loss_equals_separate_samples(tmp_path, attn, layout, loss):
    trainer, model, rows, got = packed_trainer(tmp_path, attn, layout, loss)
    on_cuda = torch.cuda.is_available()
    expected = {"eager": "rows", "sdpa": "rows" if on_cuda else "varlen"}.get(attn, "varlen")
    assert got == (expected if layout == "auto" else layout)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch  # the masks come from the restarting position_ids
    if got == "varlen":  # one row of all four samples, nothing padded
        assert batch["input_ids"].shape == (1, sum(LENGTHS))
        assert (batch["position_ids"][0] == 0).sum().item() == len(LENGTHS)
    else:  # two rows of 32, the shorter padded; its padding is a fifth "document"
        assert batch["input_ids"].shape == (2, ROW)
        assert (batch["position_ids"] == 0).sum().item() == len(LENGTHS) + 1

    model.train()
    with torch.no_grad():
        alone = separate_token_losses(model, rows)
        batch = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        packed_mean = trainer.compute_loss(model, dict(batch)).item()
        assert trainer._total_train_tokens == batch["input_ids"].numel()  # num_tokens counts every row
        model.eval()
        labels = batch.pop("labels")
        per_token = packed_token_losses(model(**batch, use_cache=False).logits, labels)
    assert packed_mean == pytest.approx(alone.mean().item(), abs=TOL)
    # bfd packing reorders samples (longest first), so compare the multisets of per-token losses
    assert torch.allclose(per_token.cpu().sort().values, alone.cpu().sort().values, atol=TOL)


def test_a_cache_breaks_isolation_and_training_has_none(tmp_path):
    trainer, model, rows, _ = packed_trainer(tmp_path, "sdpa", "rows")
    assert model.config.use_cache is False  # set by load_model_and_tokenizer(for_training=True)
    batch = dict(next(iter(trainer.get_train_dataloader())))
    labels = batch.pop("labels")
    model.eval()
    with torch.no_grad():
        alone = separate_token_losses(model, rows).sort().values
        with_cache = packed_token_losses(model(**batch, use_cache=True).logits, labels).sort().values
    # the pitfall this guards against: with a cache, transformers skips the block-diagonal mask
    assert (with_cache - alone).abs().max() > 1e-3


def test_rows_collator_positions_and_labels():
    collate = packing.PackedRowsCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "seq_lengths": [3, 2]},
                     {"input_ids": [4, 3], "labels": [4, 3], "seq_lengths": [2]}])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 0, 0, 0]]
    # a document's first token is never the target of the previous document's last one; padding has no loss
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 3, -100, -100, -100]]


def test_layout_choice_and_its_attention_cost():
    from doctorkit.errors import DoctorKitError
    by_doc = packing.SDPA_BY_DOCUMENT
    assert packing.resolve("auto", "sdpa", on_cuda=False) == ("varlen", by_doc)
    assert packing.resolve("auto", "sdpa", on_cuda=True) == ("rows", "sdpa")
    assert packing.resolve("auto", "flash_attention_2", on_cuda=True) == ("varlen", "flash_attention_2")
    assert packing.resolve("auto", "flex_attention", on_cuda=True) == ("varlen", "flex_attention")
    assert packing.resolve("auto", "eager", on_cuda=False) == ("rows", "eager")
    assert packing.resolve("varlen", "sdpa", on_cuda=True) == ("varlen", by_doc)
    with pytest.raises(DoctorKitError, match="packing_layout"):
        packing.resolve("varlen", "eager", on_cuda=False)
    # documents of 100, 300 and 100 tokens in 512-token rows: per document 1/2 x (100^2 + 300^2 + 100^2) / 500
    assert packing.attention_keys_per_token("varlen", [100, 300, 100], 512) == 110.0
    assert packing.attention_keys_per_token("rows", [100, 300, 100], 512) == 512.0


def test_length_groups_come_in_random_order():
    from doctorkit.batching import ShuffledLengthGroups
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 500, (400,), generator=gen).tolist()
    torch.manual_seed(0)
    order = list(ShuffledLengthGroups(lengths, batch_size=8))
    assert sorted(order) == list(range(400))  # every sample once
    batches = [order[i:i + 8] for i in range(0, 400, 8)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                        for b in (list(range(j, j + 8)) for j in range(0, 400, 8))) / 50
    assert spread < random_spread / 5  # grouped: ~9 tokens apart vs ~380 for random batches of 8 out of 5..500
    # the groups' order is random: the next batch is longer about half the time (49 pairs: sd ~0.07), where
    # transformers' sorted mega-batches descend almost always
    from transformers.trainer_pt_utils import get_length_grouped_indices

    def share_rising(order):
        maxima = [max(lengths[i] for i in order[j:j + 8]) for j in range(0, 400, 8)]
        return sum(b > a for a, b in zip(maxima, maxima[1:])) / (len(maxima) - 1)
    assert 0.3 < share_rising(order) < 0.7
    assert share_rising(get_length_grouped_indices(lengths, 8, generator=gen)) < 0.15


def test_cost_knows_the_layout_a_gpu_run_gets(capsys):
    import json

    from doctorkit.cost import main

    def estimate(*sets):
        assert main(["recipes/quickstart.yaml", "--set", "model=qwen2.5-7b", "--set", "data.packing=true",
                     "--set", "train.max_seq_len=2048", *sets, "--json"]) == 0
        r = json.loads(capsys.readouterr().out)
        return r["flops_per_token"], next(a for a in r["assumptions"] if a.startswith("packing on a GPU"))
    rows, rows_note = estimate()  # attn_implementation auto -> sdpa -> rows on a GPU
    varlen, varlen_note = estimate("--set", "attn_implementation=flash_attention_2")
    assert "rows with sdpa" in rows_note and "varlen with flash_attention_2" in varlen_note
    # the short quickstart samples in 2048-token rows: a dense row's attention dwarfs the documents' own
    assert varlen < rows
