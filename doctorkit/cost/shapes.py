"""Model shapes: what memory and FLOPs depend on (hidden size, layers, heads, KV heads, MLP width, vocabulary).

A local folder's config.json wins; `builtin:tiny` reads the embedded model's config; anything else is looked up
in a table of popular models filled from their published config.json files, so estimates work offline.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from doctorkit.errors import DoctorKitError


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    head_dim: int = 0        # 0: hidden // heads (Qwen3 sets it explicitly)
    gated_mlp: bool = True   # SwiGLU (gate, up, down); False: GELU MLP (up, down) as in ChatGLM-6B

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.dim_per_head

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.dim_per_head

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer, under generic names."""
        h, i = self.hidden, self.intermediate
        shapes = {"q": (h, self.q_dim), "k": (h, self.kv_dim), "v": (h, self.kv_dim), "o": (self.q_dim, h),
                  "gate": (h, i), "up": (h, i), "down": (i, h)}
        if not self.gated_mlp:
            del shapes["gate"]
        return shapes

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:   # a tied lm_head shares the embedding matrix
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def other_params(self) -> int:  # norms and biases: small, kept in 16/32 bit
        return (2 * self.layers + 1) * self.hidden + self.layers * (self.q_dim + 2 * self.kv_dim)

    def config_kwargs(self) -> dict:
        """The shape as transformers config keys (Qwen2Config / LlamaConfig), for building a model of it."""
        return dict(vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.intermediate,
                    num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                    tie_word_embeddings=self.tied)

    @property
    def total_params(self) -> int:
        return self.layers * self.layer_linear_params + self.embedding_params + self.head_params + self.other_params


def _s(name, hidden, layers, heads, kv, inter, vocab, tied, head_dim=0, gated=True):
    return Shape(name, hidden, layers, heads, kv, inter, vocab, tied, head_dim, gated)


# Published config.json facts (hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings).
KNOWN = {s.name: s for s in [
    _s("qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, True),
    _s("qwen2.5-1.5b", 1536, 28, 12, 2, 8960, 151936, True),
    _s("qwen2.5-3b", 2048, 36, 16, 2, 11008, 151936, True),
    _s("qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, False),
    _s("qwen2.5-14b", 5120, 48, 40, 8, 13824, 152064, False),
    _s("qwen2.5-32b", 5120, 64, 40, 8, 27648, 152064, False),
    _s("qwen2.5-72b", 8192, 80, 64, 8, 29568, 152064, False),
    _s("qwen3-0.6b", 1024, 28, 16, 8, 3072, 151936, True, 128),
    _s("qwen3-1.7b", 2048, 28, 16, 8, 6144, 151936, True, 128),
    _s("qwen3-4b", 2560, 36, 32, 8, 9728, 151936, True, 128),
    _s("qwen3-8b", 4096, 36, 32, 8, 12288, 151936, False, 128),
    _s("qwen3-14b", 5120, 40, 40, 8, 17408, 151936, False, 128),
    _s("qwen3-32b", 5120, 64, 64, 8, 25600, 151936, False, 128),
    _s("glm-4-9b", 4096, 40, 32, 2, 13696, 151552, False),
    _s("chatglm3-6b", 4096, 28, 32, 2, 13696, 65024, False),
    _s("chatglm2-6b", 4096, 28, 32, 2, 13696, 65024, False),
    _s("chatglm-6b", 4096, 28, 32, 32, 16384, 130528, False, gated=False),
    _s("llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, True),
    _s("llama-3.2-3b", 3072, 28, 24, 8, 8192, 128256, True),
    _s("llama-3.1-8b", 4096, 32, 32, 8, 14336, 128256, False),
    _s("llama-3.1-70b", 8192, 80, 64, 8, 28672, 128256, False),
    _s("baichuan2-7b", 4096, 32, 32, 32, 11008, 125696, False),
    _s("baichuan2-13b", 5120, 40, 40, 40, 13696, 125696, False),
]}
# Same shapes under other names people type.
SAME_AS = {"llama-3-8b": "llama-3.1-8b", "llama-3-70b": "llama-3.1-70b", "llama-3.3-70b": "llama-3.1-70b",
           "glm-4-9b-chat": "glm-4-9b"}


def canonical(name: str) -> str:
    """'meta-llama/Meta-Llama-3.1-8B-Instruct' -> 'llama-3.1-8b'; 'THUDM/chatglm3-6b' -> 'chatglm3-6b'."""
    key = name.rstrip("/").split("/")[-1].lower().replace("_", "-")
    key = re.sub(r"^meta-", "", key)
    while True:
        stripped = re.sub(r"-(instruct|chat|base|hf|it|\d{4})$", "", key)
        if stripped == key:
            return SAME_AS.get(key, key)
        key = stripped


def from_config(config: dict, name: str) -> Shape:
    """Shape from a Hugging Face config dict (Llama/Qwen names, or ChatGLM/GLM names)."""
    get = lambda *keys, default=None: next((config[k] for k in keys if config.get(k) is not None), default)  # noqa: E731
    hidden = get("hidden_size")
    heads = get("num_attention_heads")
    if not hidden or not heads:
        raise DoctorKitError(f"{name}: config.json has no hidden_size/num_attention_heads; cannot estimate")
    kv = get("num_key_value_heads", "multi_query_group_num", default=heads)
    if config.get("multi_query_attention") is False:
        kv = heads
    gated = "inner_hidden_size" not in config and get("hidden_act", default="silu") not in ("gelu", "gelu_new")
    return Shape(
        name=name, hidden=hidden, heads=heads, kv_heads=kv,
        layers=get("num_hidden_layers", "num_layers"),
        intermediate=get("intermediate_size", "ffn_hidden_size", "inner_hidden_size", default=4 * hidden),
        vocab=get("vocab_size", "padded_vocab_size"),
        tied=bool(config.get("tie_word_embeddings", False)),
        head_dim=get("head_dim", "kv_channels", default=0), gated_mlp=gated)


def resolve_shape(model: str) -> tuple[Shape, str]:
    """(shape, where it came from) for a recipe's `model`."""
    if model.startswith("builtin:"):
        from doctorkit.builtin.tiny import build_config, build_tokenizer
        if model != "builtin:tiny":
            raise DoctorKitError(f"model {model}: unknown builtin model (available: builtin:tiny)")
        return from_config(build_config(build_tokenizer()).to_dict(), model), "embedded tiny model config"
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        return from_config(json.loads(config_file.read_text(encoding="utf-8")), model), f"{config_file}"
    key = canonical(model)
    if key in KNOWN:
        return KNOWN[key], f"built-in table ({key}, published config)"
    raise DoctorKitError(f"model {model}: no local config.json and not in the built-in table "
                         f"(known: {', '.join(sorted(KNOWN))}); point model at a local folder")
