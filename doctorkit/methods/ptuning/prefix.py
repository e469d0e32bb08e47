"""P-tuning v2 (deep prefix tuning): trainable key/value prefixes in every attention layer of a frozen model.

Self-contained on purpose (torch, transformers, safetensors only): `doctorkit.export` copies this file next to
an exported prefix so it loads without DoctorKit installed.

Why our own module and not PEFT's PrefixTuningConfig: PEFT hands the prefix in as `past_key_values`, which
(1) transformers' gradient-checkpointing layers drop, so PEFT refuses checkpointing, and (2) crashes in
`generate(use_cache=False)` on Llama/GLM shapes. Here a forward pre-hook on the base model supplies the prefix
on EVERY forward of its backbone through transformers' Cache API:
  - training and uncached forwards get a read-only `PrefixCache` whose update() returns prefix + new states
    without storing them, so a checkpointed layer recomputed in backward sees the same keys (that is the
    contract of `_can_checkpoint_with_cache`), and uncached generation re-injects the prefix every step;
  - cached generation pre-fills the (empty) DynamicCache that `generate` creates with the prefix, once.
The 2-D attention mask is extended by pre_seq_len ones, and position ids count real tokens from 0, so the
prompt is encoded exactly as without a prefix; GQA models get prefixes of width num_kv_heads x head_dim.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# This file is copied as it is into P-tuning exports (doctorkit.export), where DoctorKit is not installed: it
# imports nothing of the kit and names its own files. doctorkit.methods.ptuning repeats the two names without
# importing this module (transformers loads only with a model); tests/test_ptuning.py checks they agree.
CONFIG_FILE, WEIGHTS_FILE = "prefix_config.json", "prefix.safetensors"


@dataclass
class PrefixConfig:
    pre_seq_len: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    prefix_projection: bool = False
    prefix_hidden_size: int = 512
    base_model: str = ""        # what the prefix was trained on (informational; the loader gets the model)

    @classmethod
    def for_model(cls, config, pre_seq_len: int, prefix_projection: bool = False, prefix_hidden_size: int = 512,
                  base_model: str = "") -> "PrefixConfig":
        config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(pre_seq_len, config.num_hidden_layers, getattr(config, "num_key_value_heads", None) or heads,
                   head_dim, config.hidden_size, prefix_projection, prefix_hidden_size, base_model)

    @property
    def width(self) -> int:  # one layer's key (or value) row
        return self.num_kv_heads * self.head_dim


class PrefixEncoder(nn.Module):
    """pre_seq_len rows of all layers' keys and values; optionally reparameterized through a 2-layer MLP."""

    def __init__(self, cfg: PrefixConfig):
        super().__init__()
        out = cfg.num_layers * 2 * cfg.width
        if cfg.prefix_projection:
            self.embedding = nn.Embedding(cfg.pre_seq_len, cfg.hidden_size)
            self.mlp = nn.Sequential(nn.Linear(cfg.hidden_size, cfg.prefix_hidden_size), nn.Tanh(),
                                     nn.Linear(cfg.prefix_hidden_size, out))
        else:
            self.embedding = nn.Embedding(cfg.pre_seq_len, out)
            self.mlp = None
        self.cfg = cfg

    def forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each [1, num_kv_heads, pre_seq_len, head_dim]."""
        rows = self.embedding.weight
        if self.mlp is not None:
            rows = self.mlp(rows)
        c = self.cfg
        kv = rows.view(c.pre_seq_len, c.num_layers * 2, c.num_kv_heads, c.head_dim).permute(1, 2, 0, 3).unsqueeze(1)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(c.num_layers)]


class _ReadOnlyPrefixLayer(DynamicLayer):
    """Returns prefix + this forward's states and stores nothing: safe to replay under checkpointing."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.is_initialized = keys, values, True
        self.dtype, self.device = keys.dtype, keys.device

    def update(self, key_states, value_states, *args, **kwargs):
        keys = torch.cat([self.keys.to(key_states.dtype), key_states], dim=-2)
        values = torch.cat([self.values.to(value_states.dtype), value_states], dim=-2)
        return keys, values


class PrefixCache(Cache):
    def __init__(self, prefix: list[tuple[torch.Tensor, torch.Tensor]]):
        super().__init__(layers=[_ReadOnlyPrefixLayer(k, v) for k, v in prefix])


class PrefixTunedModel(nn.Module):
    """A frozen causal LM plus a trainable prefix. forward/generate are the base model's; everything else
    (config, device, dtype, gradient_checkpointing_enable, ...) is delegated to it, so Trainer and our
    generation code treat it as the model itself. state_dict() holds only the prefix: checkpoints stay small."""

    # Tells Trainer a trainable adapter is attached, so a 4/8-bit frozen base may be trained under it.
    _hf_peft_config_loaded = True

    def __init__(self, base: nn.Module, cfg: PrefixConfig):
        super().__init__()
        if cfg.pre_seq_len <= 0:
            raise ValueError(f"pre_seq_len must be positive, got {cfg.pre_seq_len}")
        self.base = base
        self.prefix_config = cfg
        for param in base.parameters():
            param.requires_grad_(False)
        device = base.get_input_embeddings().weight.device
        self.prefix_encoder = PrefixEncoder(cfg).to(device)  # fp32 master weights; cast per layer on use
        self.prefix_enabled = True
        # On the backbone (Qwen2Model, ...), not the LM wrapper: TRL's fused LM head calls the backbone directly.
        base.base_model.register_forward_pre_hook(self._inject_prefix, with_kwargs=True)
        for layer in base.modules():  # our training cache is read-only, so checkpointed layers may keep it
            if hasattr(type(layer), "_can_checkpoint_with_cache"):
                layer._can_checkpoint_with_cache = True

    # ------------------------------------------------------------------ plumbing ---
    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("base"), name)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, **kwargs):
        return self.base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
                         use_cache=use_cache, **kwargs)

    def generate(self, *args, **kwargs):
        return self.base.generate(*args, **kwargs)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        return self.prefix_encoder.state_dict(destination=destination, prefix=prefix + "prefix_encoder.",
                                              keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        own = {k.split("prefix_encoder.", 1)[1]: v for k, v in state_dict.items() if "prefix_encoder." in k}
        return self.prefix_encoder.load_state_dict(own, strict=strict, assign=assign)

    @contextlib.contextmanager
    def disable_prefix(self):
        """Mask the prefix out: the base model's own outputs (for comparisons and tests)."""
        self.prefix_enabled = False
        try:
            yield self
        finally:
            self.prefix_enabled = True

    # The name PEFT models use for the same switch: the demo's compare view and `evaluate --base` call
    # `model.disable_adapter()` on whatever a run directory loads, LoRA or prefix alike.
    disable_adapter = disable_prefix

    # ------------------------------------------------------------- the prefix ---
    def _inject_prefix(self, module, args, kwargs):
        if args:  # model(input_ids) called positionally
            kwargs["input_ids"], args = args[0], args[1:]
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        batch, length = tokens.shape[0], tokens.shape[1]
        n = self.prefix_config.pre_seq_len
        cache = kwargs.get("past_key_values")
        use_cache = kwargs.get("use_cache")
        use_cache = self.base.config.use_cache if use_cache is None else use_cache
        if cache is not None and cache.get_seq_length() > 0:  # a later step of cached generation
            if not getattr(cache, "doctorkit_prefix", False):
                raise ValueError("this cache was not started by the prefix-tuned model; start generation afresh")
            seen = cache.get_seq_length() - n
        else:
            seen = 0
            prefix = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.prefix_encoder()]
            if cache is None and (self.training or not use_cache):
                cache = PrefixCache(prefix)
            else:  # cached generation: store the prefix once, in the model's dtype
                cache = cache if cache is not None else DynamicCache(config=self.base.config)
                dtype = self.base.get_input_embeddings().weight.dtype
                for i, (k, v) in enumerate(prefix):
                    cache.update(k.detach().to(dtype), v.detach().to(dtype), i)
            cache.doctorkit_prefix = True
            kwargs["past_key_values"] = cache
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(batch, seen + length, dtype=torch.long, device=tokens.device)
        if mask.dim() != 2:
            raise ValueError("P-tuning needs a 2-D attention mask (padding mask), got a prepared 4-D one")
        visible = torch.full((batch, n), int(self.prefix_enabled), dtype=mask.dtype, device=mask.device)
        kwargs["attention_mask"] = torch.cat([visible, mask], dim=1)
        if kwargs.get("position_ids") is None:  # real tokens count from 0, exactly as without a prefix
            kwargs["position_ids"] = torch.arange(seen, seen + length, device=tokens.device).unsqueeze(0).expand(batch, -1)
        return args, kwargs

    # ---------------------------------------------------------- save / load ---
    def save_pretrained(self, folder, **_ignored) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.prefix_config), indent=2) + "\n", encoding="utf-8")
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.prefix_encoder.state_dict().items()}
        save_file(weights, str(folder / WEIGHTS_FILE))


def load_prefix_model(base: nn.Module, folder) -> PrefixTunedModel:
    """Attach a saved prefix to its (already loaded) base model."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = PrefixConfig(**json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
    expected = PrefixConfig.for_model(base.config, cfg.pre_seq_len)
    if (expected.num_layers, expected.width) != (cfg.num_layers, cfg.width):
        raise ValueError(f"prefix in {folder} was trained for {cfg.num_layers} layers x {cfg.width} wide, "
                         f"this base model has {expected.num_layers} x {expected.width}")
    model = PrefixTunedModel(base, cfg)
    model.prefix_encoder.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return model
