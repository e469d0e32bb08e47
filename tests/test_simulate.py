"""bench.simulate traces one real LoRA training step with fake tensors; the estimator agrees within +-10% by category.

Shape: a small Llama-style config (4 layers, 256 wide, GQA 4/2 heads, MLP 704, 1k vocabulary) written to a folder,
bf16, batch 1 x 256 tokens, LoRA on all linears as recipes/lora.yaml ships it (bf16 adapters, no dropout; and once
with dropout and fp32 adapters, PEFT's defaults, whose cast copies the estimator counts apart), the lean loss. Its
activations outweigh its weights (about 20 MiB against 8 MiB without checkpointing), so the comparison is about them:
- checkpointing off: every layer's saved tensors (about 5 MiB a layer) are alive at the peak; an activation formula
  off by 2x would miss the category by 35% or more;
- checkpointing on: only each layer's input plus one recomputed layer; if the trace or the estimator ignored
  checkpointing, traced and estimated would differ about 3x.
Gradients are not compared: the traced peak can fall before most gradients exist, while the estimator counts them
all (an upper bound). FLOPs are compared as the tracer counts them (bench/simulate.py "ratio_as_traced").
"""
import json

import pytest

from bench import simulate

SMALL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 704, "vocab_size": 1024, "tie_word_embeddings": False}


def traced(tmp_path, checkpointing: bool, *sets: str) -> dict:
    model = tmp_path / "small-llama"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(SMALL), encoding="utf-8")
    out = tmp_path / f"simulated-{checkpointing}-{len(sets)}.json"
    extra = [arg for item in sets for arg in ("--set", item)]
    assert simulate.main([str(model), "recipes/lora.yaml", "--set", "train.max_seq_len=256",
                          "--set", "train.batch_size=1", "--set", f"gradient_checkpointing={str(checkpointing).lower()}",
                          *extra, "--out", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_traced_step_agrees_with_the_estimate_with_and_without_checkpointing(tmp_path, capsys):
    off, on = traced(tmp_path, False), traced(tmp_path, True)
    peft_defaults = traced(tmp_path, True, "lora.dropout=0.05", "lora.adapter_dtype=fp32")
    printed = capsys.readouterr().out
    for result in (off, on, peft_defaults):
        for key in ("parameters (frozen + trainable)", "optimizer_states", "activations + temporaries"):
            assert result["compare_bytes"][key]["ratio"] == pytest.approx(1.0, abs=0.10), (result["gradient_checkpointing"], key)
        assert result["tensor_peak_bytes"]["ratio"] == pytest.approx(1.0, abs=0.10)
        # FLOPs, once the estimate counts what the tracer counts differently (full SDPA, the loss head's recompute);
        # left: layer 0 computes no input gradient, checkpointing stops its recompute at the last saved tensor
        assert result["flops_per_token"]["ratio_as_traced"] == pytest.approx(1.0, abs=0.03)
    # the trace itself sees checkpointing: without it the saved activations are several times larger
    acts = lambda r: r["traced_peak_by_category_bytes"]["Activation"]  # noqa: E731
    assert acts(off) > 2.5 * acts(on)
    assert acts(peft_defaults) > 1.3 * acts(on)    # dropout copies and fp32 casts of every adapted input
    assert off["traced_peak_by_category_bytes"]["Activation"] > off["traced_peak_by_category_bytes"]["Parameter"]
    assert "bitsandbytes" in printed and "fused attention" in printed   # says what it could not trace
