"""What the estimate needs to know about a training job, read from a recipe.

Recipe keys give the method, precision, batch, sequence, LoRA / P-tuning settings and optimizer. The `Stack`
fields describe the software the recipe runs on (DoctorKit: transformers + PEFT + TRL's SFTTrainer); they are
not recipe keys, but tests set them to reproduce measurements taken with other frameworks (torchtune, ChatGLM's
own P-tuning scripts).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from doctorkit.cost.shapes import Shape
from doctorkit.errors import DoctorKitError
from doctorkit.methods import resolve_optimizer

GiB = 1024 ** 3

# PEFT/our names and other frameworks' names for the linear layers of a decoder layer.
MODULE_NAMES = {
    "q_proj": ["q"], "k_proj": ["k"], "v_proj": ["v"], "o_proj": ["o"], "output_proj": ["o"],
    "gate_proj": ["gate"], "up_proj": ["up"], "down_proj": ["down"], "w1": ["gate"], "w3": ["up"], "w2": ["down"],
    "query_key_value": ["q", "k", "v"], "W_pack": ["q", "k", "v"], "qkv_proj": ["q", "k", "v"],
    "dense": ["o"], "dense_h_to_4h": ["gate", "up"], "dense_4h_to_h": ["down"], "gate_up_proj": ["gate", "up"],
}
EIGHT_BIT_OPTIMIZERS = {"adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adam_8bit"}


@dataclasses.dataclass
class Stack:
    adapter_bytes: int = 4            # PEFT keeps adapter weights in fp32 (autocast_adapter_dtype) -> fp32 grads, states
    kbit_upcast: bool = True          # train.upcast_fp32 / prepare_model_for_kbit_training: embeddings, lm_head in fp32
    quantized_saves_input: bool = True  # bitsandbytes' 4/8-bit matmul keeps its input for backward
    loss_head: str = "fused"          # fused: TRL's chunked LM head, no full logits; full: logits + fp32 loss copies;
                                      # chunked: doctorkit/loss.py's chunked cross-entropy (train.loss: lean on CPU);
                                      # bf16_logits: only 16-bit logits kept (compiled chunked loss, torchtune)
    cuda_context_bytes: int = GiB // 2   # CUDA context + cuBLAS workspace, outside PyTorch's allocator
    allocator_slack: float = 0.05     # caching-allocator fragmentation over the live tensors


@dataclasses.dataclass
class Job:
    shape: Shape
    method: str                       # a registered method (doctorkit.methods): lora | qlora | ptuning | dpo | ...
    weight_bits: int                  # 32, 16, 8 or 4: how the frozen base is stored
    act_bytes: int                    # 2 (bf16/fp16) or 4 (fp32)
    batch: int
    seq: int                          # tokens per row (the longest row for memory)
    checkpointing: bool
    attention: str                    # sdpa | eager | flash_attention_2
    optimizer: str = "adamw_torch"
    double_quant: bool = True
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    lora_dropout: float = 0.0
    use_dora: bool = False
    pre_seq_len: int = 0
    prefix_projection: bool = False
    prefix_hidden: int = 512
    activation_offloading: bool = False  # train.activation_offloading: saved activations wait in CPU RAM (TRL)
    stack: Stack = dataclasses.field(default_factory=Stack)
    # The method's terms (its COST_TERMS, doctorkit.methods); None: taken from the method when the Job is made.
    adapter: Optional[str] = None     # lora: rank-r matrices on lora_targets; prefix: P-tuning K/V; none
    pairs: Optional[bool] = None      # chosen and rejected run through the model together (DPO)
    reference_forward: Optional[bool] = None  # a frozen reference model's forward per step (DPO)
    own_trainable: Optional[int] = None  # trainable parameters the method counts itself (methods the estimator
                                         # has no formula for); None: the lora / prefix formula

    def __post_init__(self):
        from doctorkit.methods import DEFAULT_COST_TERMS, get_method

        terms = {**DEFAULT_COST_TERMS, **get_method(self.method).COST_TERMS}
        for key in ("adapter", "pairs", "reference_forward"):
            if getattr(self, key) is None:
                setattr(self, key, terms[key])

    @property
    def sequences(self) -> int:       # DPO runs chosen and rejected through the model together
        return self.batch * (2 if self.pairs else 1)

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq

    @property
    def uses_lora(self) -> bool:
        return self.adapter == "lora"


def lora_targets(target_modules, shape: Shape) -> tuple[str, ...]:
    present = shape.linears()
    if target_modules == "all-linear":   # PEFT: every linear layer except the output head
        return tuple(present)
    found = []
    for name in target_modules:
        if name not in MODULE_NAMES:
            raise DoctorKitError(f"lora.target_modules: '{name}' is not a linear layer the estimator knows "
                                 f"(known: all-linear, {', '.join(MODULE_NAMES)})")
        found += [g for g in MODULE_NAMES[name] if g in present and g not in found]
    return tuple(found)


def trains_in_bf16(recipe, bf16_gpu: bool = True) -> bool:
    """Whether the recipe trains in bf16 on a GPU that has it (dtype auto picks bf16 there, fp16 elsewhere)."""
    return recipe.dtype == "bf16" or (recipe.dtype == "auto" and bf16_gpu)


def job_from_recipe(recipe, shape: Shape, seq: int, bf16_gpu: bool = True) -> Job:
    from doctorkit.methods import DEFAULT_COST_TERMS, get_method, resolve_gradient_checkpointing

    method = get_method(recipe.method)
    terms = {**DEFAULT_COST_TERMS, **method.COST_TERMS}
    own = method.cost_terms(recipe, shape)   # what the method reads from the recipe: weight bits, prefix, ...
    bits = own.get("weight_bits", 32 if recipe.dtype == "fp32" else 16)
    act_bytes = 4 if recipe.dtype == "fp32" else 2
    bf16 = trains_in_bf16(recipe, bf16_gpu)
    checkpointing = resolve_gradient_checkpointing(recipe)   # the method's default when the recipe leaves it unset
    attention = "sdpa" if recipe.attn_implementation == "auto" else recipe.attn_implementation
    fields = dict(
        shape=shape, method=recipe.method, weight_bits=bits, act_bytes=act_bytes,
        batch=recipe.train.batch_size, seq=seq,
        checkpointing=checkpointing,
        attention=attention, optimizer=resolve_optimizer(recipe), double_quant=recipe.quantization.double_quant,
        lora_r=recipe.lora.r, lora_targets=lora_targets(recipe.lora.target_modules, shape),
        lora_dropout=recipe.lora.dropout, use_dora=recipe.lora.use_dora,
        prefix_projection=recipe.ptuning.prefix_projection, prefix_hidden=recipe.ptuning.prefix_hidden_size,
        activation_offloading=recipe.train.offloads_activations(checkpointing),
        # lora.adapter_dtype auto (in bf16) or compute: LoRA weights, gradients and AdamW states in the compute dtype
        stack=Stack(adapter_bytes=act_bytes if terms["adapter"] == "lora" and recipe.lora.in_compute_dtype(bf16)
                    else 4,
                    kbit_upcast=recipe.train.upcast_fp32,
                    # bitsandbytes' 4-bit matmul keeps only its packed weight for backward (MatMul4Bit, bnb >= 0.45);
                    # LLM.int8 keeps its input
                    quantized_saves_input=bits == 8,
                    loss_head="full" if terms["loss_head"] == "full" or recipe.train.loss == "full" else "fused"),
    )
    return Job(**{**fields, **own})
