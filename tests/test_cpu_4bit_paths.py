"""bitsandbytes' two 4-bit CPU paths (issue 12). On a CPU with AVX512-BF16 a Linear4bit called in eval mode
without grad repacks its weight for a bf16 inference kernel; elsewhere it dequantizes and multiplies in the
compute dtype. DoctorKit keeps every 4-bit layer off the packed path (doctorkit.methods.quantized.
keep_off_packed_cpu_path says why). These tests drive the per-layer switch (`support_avx512bf16_for_cpu`)
explicitly: what runs everywhere runs everywhere, and the packed kernel's cases skip, with the reason, on CPUs
where bitsandbytes does not register it."""
import pytest
import torch

from doctorkit.methods import qlora
from doctorkit.methods.quantized import (compute_dtype_in_use, cpu_4bit_path, keep_off_packed_cpu_path,
                                         packed_cpu_layers, CPU_PATH_PACKED)
from doctorkit.model import load_model_and_tokenizer
from doctorkit.recipe import Recipe
from numerics import logits_atol

IDS = torch.tensor([[5, 17, 99, 300, 41, 7, 250, 12]])
# Forced on here, the switch still repacks the weights, but the generic kernel then reads the packed layout as the
# plain one: measured on this kind of CPU, logits off by 7.4 (of max 4.6), silently. Nothing to test there.
NO_PACKED_KERNEL = ("this CPU has no AVX512-BF16: bitsandbytes registers its packed bf16 CPU kernel only where "
                    "the CPU has it, so the packed path cannot compute correctly here (an AVX512-BF16 CPU runs this)")


def linear4bit_layers(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


@pytest.fixture
def qlora_model():
    """The embedded model in 4-bit NF4 with LoRA, loaded the way training loads it."""
    recipe = Recipe(method="qlora", gradient_checkpointing=False)
    model, _ = load_model_and_tokenizer(recipe, extra_kwargs=qlora.load_kwargs(recipe))
    return qlora.wrap(model, recipe)


def eval_pass(model):
    model.eval()
    with torch.no_grad():
        return model(IDS).logits


def train_step(model):
    """One forward/backward in training mode; returns the LoRA gradients' total norm."""
    model.train()
    model.zero_grad()
    model(IDS, labels=IDS).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    return float(torch.stack([g.norm() for g in grads]).norm())


def test_kit_loads_4bit_layers_off_the_packed_path_and_trains_after_eval(monkeypatch):
    """Both CPUs: layers are built as on an AVX512-BF16 CPU (bitsandbytes' check answers yes), the kit turns the
    switch off, an eval pass converts nothing, training continues. Without the kit the eval pass would convert
    every layer (and, on a CPU without the packed kernel, the next call would fail outright)."""
    import bitsandbytes as bnb

    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: True)
    assert bnb.nn.Linear4bit(64, 64).support_avx512bf16_for_cpu is True    # what bitsandbytes alone would do
    recipe = Recipe(method="qlora", gradient_checkpointing=False)
    model, _ = load_model_and_tokenizer(recipe, extra_kwargs=qlora.load_kwargs(recipe))
    qlora_model = qlora.wrap(model, recipe)
    layers = linear4bit_layers(qlora_model)
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)
    before = eval_pass(qlora_model)
    assert packed_cpu_layers(qlora_model) == 0 and compute_dtype_in_use(qlora_model) == torch.float32
    assert train_step(qlora_model) > 0                                   # the step after an evaluation
    after = eval_pass(qlora_model)
    torch.testing.assert_close(after, before, rtol=0, atol=0)            # no optimizer step: same function


def test_a_layer_already_packed_is_converted_back_before_training(qlora_model):
    """Both CPUs: pack every layer the way Linear4bit.forward does on the packed path (the repacking is plain
    torch and runs anywhere; only the kernel needs AVX512-BF16), then let the kit convert them back."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    layers = linear4bit_layers(qlora_model)
    before = eval_pass(qlora_model)
    originals = [(m.weight.data.shape, m.weight.data.dtype, m.weight.quant_state.nested) for m in layers]
    for m in layers:
        m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu(m.weight.data, m.weight.quant_state)
    assert packed_cpu_layers(qlora_model) == len(layers) and compute_dtype_in_use(qlora_model) == torch.bfloat16

    assert keep_off_packed_cpu_path(qlora_model) == len(layers)
    assert packed_cpu_layers(qlora_model) == 0 and compute_dtype_in_use(qlora_model) == torch.float32
    assert [(m.weight.data.shape, m.weight.data.dtype, m.weight.quant_state.nested) for m in layers] == originals
    # the round trip keeps the block scales' bf16 rounding (then re-quantized to 8 bits, as double quantization
    # stores them): the function is the same up to that rounding of each weight's scale, bounded like a 16-bit
    # path's (numerics.py), not bit for bit
    after = eval_pass(qlora_model)
    torch.testing.assert_close(after, before, rtol=0, atol=logits_atol(qlora_model, before,
                                                                         torch.bfloat16))
    assert train_step(qlora_model) > 0


@pytest.mark.skipif(cpu_4bit_path() != CPU_PATH_PACKED, reason=NO_PACKED_KERNEL)
def test_packed_path_switched_on_explicitly(qlora_model):
    """AVX512-BF16 CPUs: what bitsandbytes does when the switch is on, and why the kit turns it off."""
    layers = linear4bit_layers(qlora_model)
    reference = eval_pass(qlora_model)                                   # dequantize path, fp32
    for m in layers:
        m.support_avx512bf16_for_cpu = True                              # bitsandbytes' default on this CPU
    packed = eval_pass(qlora_model)
    assert packed_cpu_layers(qlora_model) == len(layers)
    assert compute_dtype_in_use(qlora_model) == torch.bfloat16
    torch.testing.assert_close(packed, reference, rtol=0, atol=logits_atol(qlora_model, reference, torch.bfloat16))
    # a training step now would go through the packed kernel (issue 12: the in-place bias add crashed it with
    # kernels-less bitsandbytes 0.50.2); the kit converts the layers back first
    keep_off_packed_cpu_path(qlora_model)
    assert packed_cpu_layers(qlora_model) == 0 and compute_dtype_in_use(qlora_model) == torch.float32
    assert train_step(qlora_model) > 0
