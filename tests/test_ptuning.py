"""P-tuning v2 prefix: equivalence with the base when masked, reload equality, cached == uncached decoding on
Qwen2 / Llama / GLM-4 shapes (all GQA), gradient checkpointing, 4-bit base, recipe errors."""
import pytest
import torch
from transformers import Glm4Config, Glm4ForCausalLM, LlamaConfig, LlamaForCausalLM

from doctorkit.builtin.tiny import build_tiny
from doctorkit.errors import DoctorKitError
from doctorkit.methods.ptuning.prefix import PrefixConfig, PrefixTunedModel, load_prefix_model
from doctorkit.recipe import Recipe

SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0)
PROMPT = torch.tensor([[5, 17, 99, 300, 41, 7, 250, 3]])


def base_model(kind: str):
    torch.manual_seed(0)
    if kind == "qwen2":
        return build_tiny()[0].eval()
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**SHAPE)).eval()
    return Glm4ForCausalLM(Glm4Config(**SHAPE, head_dim=16)).eval()


def prefixed(base, pre_seq_len=6, scale=4.0, **kwargs):
    torch.manual_seed(1)
    model = PrefixTunedModel(base, PrefixConfig.for_model(base.config, pre_seq_len, **kwargs)).eval()
    with torch.no_grad():  # a strong random prefix, so that it visibly steers the untrained model
        model.prefix_encoder.embedding.weight.mul_(scale)
    return model


@pytest.mark.parametrize("kind", ["qwen2", "llama", "glm4"])
def test_masked_prefix_gives_the_base_models_outputs(kind):
    base = base_model(kind)
    with torch.no_grad():
        reference = base(PROMPT).logits
        model = prefixed(base)
        steered = model(input_ids=PROMPT).logits
        with model.disable_prefix():
            masked = model(input_ids=PROMPT).logits
    assert not torch.allclose(steered, reference, atol=1e-3)  # the prefix does act ...
    torch.testing.assert_close(masked, reference, atol=1e-5, rtol=1e-5)  # ... and masking it removes all of it


@pytest.mark.parametrize("kind", ["qwen2", "llama", "glm4"])
def test_cached_and_uncached_greedy_decoding_agree(kind):
    model = prefixed(base_model(kind))
    with torch.no_grad():
        cached = model.generate(PROMPT, max_new_tokens=12, do_sample=False, use_cache=True)
        uncached = model.generate(PROMPT, max_new_tokens=12, do_sample=False, use_cache=False)
        with model.disable_prefix():
            plain = model.base.generate(PROMPT, max_new_tokens=12, do_sample=False, use_cache=True)
    assert cached.tolist() == uncached.tolist()
    assert cached.tolist() != plain.tolist()  # the prefix changed the reply, so the agreement means something


def test_reloaded_prefix_gives_identical_logits(tmp_path):
    model = prefixed(base_model("qwen2"), prefix_projection=True, prefix_hidden_size=32)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefix.safetensors", "prefix_config.json"]
    reloaded = load_prefix_model(base_model("qwen2"), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=PROMPT).logits, reloaded(input_ids=PROMPT).logits)
    assert set(model.state_dict()) == {"prefix_encoder.embedding.weight", "prefix_encoder.mlp.0.weight",
                                       "prefix_encoder.mlp.0.bias", "prefix_encoder.mlp.2.weight",
                                       "prefix_encoder.mlp.2.bias"}  # checkpoints hold the prefix only


def test_reloading_onto_a_different_shape_is_refused(tmp_path):
    prefixed(base_model("qwen2")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trained for 2 layers x 32 wide"):
        load_prefix_model(Glm4ForCausalLM(Glm4Config(**{**SHAPE, "num_key_value_heads": 4}, head_dim=16)), tmp_path)


def test_gqa_prefix_width_is_kv_heads_times_head_dim():
    cfg = PrefixConfig.for_model(base_model("glm4").config, 10)
    assert (cfg.num_kv_heads, cfg.head_dim, cfg.width) == (2, 16, 32)
    keys, values = prefixed(base_model("glm4"), 10).prefix_encoder()[0]
    assert keys.shape == values.shape == (1, 2, 10, 16)


def _prefix_gradient(model, checkpointing: bool):
    base = model.base
    if checkpointing:
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.activation_checkpointing_disable()
    model.train()
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules()) == checkpointing
    model.zero_grad()
    loss = model(input_ids=PROMPT, labels=PROMPT).loss
    loss.backward()
    return loss.detach(), model.prefix_encoder.embedding.weight.grad.clone()


def test_gradient_checkpointing_keeps_the_prefix_and_its_gradients():
    model = prefixed(base_model("llama"))
    loss_plain, grad_plain = _prefix_gradient(model, False)
    loss_ckpt, grad_ckpt = _prefix_gradient(model, True)
    assert grad_plain.abs().sum() > 0
    assert torch.equal(loss_plain, loss_ckpt)
    torch.testing.assert_close(grad_ckpt, grad_plain, atol=1e-7, rtol=1e-5)
    assert all(not p.requires_grad for p in model.base.parameters())


def test_prefix_trains_over_a_4bit_base():
    from doctorkit.methods import get_method
    from doctorkit.model import load_model_and_tokenizer

    recipe = Recipe(method="ptuning", ptuning={"pre_seq_len": 4, "quantization_bits": 4})
    method = get_method("ptuning")
    base, _ = load_model_and_tokenizer(recipe, extra_kwargs=method.load_kwargs(recipe))
    assert base.is_loaded_in_4bit
    model = method.wrap(base, recipe).train()
    model(input_ids=PROMPT, labels=PROMPT).loss.backward()
    assert model.prefix_encoder.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, message", [
    ({"ptuning": {"pre_seq_len": 0}}, "key 'ptuning.pre_seq_len'.*greater than or equal to 1"),   # the schema
    ({"ptuning": {"pre_seq_len": -3}}, "got -3"),
    ({"data": {"packing": True}}, "set data.packing=false"),                                        # the method
])
def test_recipe_errors_are_one_line(overrides, message, tmp_path):
    import yaml

    from doctorkit.methods import get_method
    from doctorkit.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"method": "ptuning", **overrides}), encoding="utf-8")
    with pytest.raises(DoctorKitError, match=message) as err:
        get_method("ptuning").validate(load_recipe(path))
    assert "\n" not in str(err.value)


def test_prefix_projection_warns_with_the_growth():
    from doctorkit.methods import get_method

    recipe = Recipe(method="ptuning", ptuning={"pre_seq_len": 4, "prefix_projection": True, "prefix_hidden_size": 256})
    with pytest.warns(UserWarning, match=r"about 30x") as caught:
        get_method("ptuning").wrap(build_tiny()[0], recipe)
    # 4 x 2 layers x 2 x 32 = 512 plain; embedding 4x64 + 64x256+256 + 256x128+128 = 49,792 with the MLP
    assert "49,792 trainable parameters instead of 512" in str(caught[0].message)


def test_prefix_module_stands_alone_and_names_the_files_the_method_checks():
    """prefix.py is copied into P-tuning exports that load without DoctorKit installed: it imports nothing of the
    kit, and its file names are the ones doctorkit.methods.ptuning checks before loading a run."""
    import ast
    import inspect

    import doctorkit.methods.ptuning as method
    import doctorkit.methods.ptuning.prefix as prefix

    tree = ast.parse(inspect.getsource(prefix))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("doctorkit")]
    assert (prefix.CONFIG_FILE, prefix.WEIGHTS_FILE) == (method.CONFIG_FILE, method.WEIGHTS_FILE)
