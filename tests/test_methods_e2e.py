"""QLoRA and P-tuning v2 end to end on CPU with the embedded model: train through the CLI entry point, chat,
export (merged for QLoRA/LoRA, prefix + loader for P-tuning), and the one-line errors around them."""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from doctorkit.errors import DoctorKitError
from doctorkit.methods.quantized import compute_dtype_in_use, packed_cpu_layers
from doctorkit.recipe import load_recipe
from numerics import logits_atol

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
IDS = torch.tensor([[5, 17, 99, 300, 41, 7, 250]])
# One batch of the same 8 samples every step: the loss curve is not sampling noise.
SMALL = ["train.max_steps=6", "train.batch_size=8", "train.max_seq_len=128", "train.logging_steps=1",
         "train.save_steps=100", "data.val_ratio=0", "data.max_samples=8", f"data.path={ROOT / 'data/sample_zh.jsonl'}"]


def train_cli(tmp_path_factory, method, *extra):
    from doctorkit.train import main

    run_dir = tmp_path_factory.mktemp(method) / "run"
    args = [str(QUICKSTART), "--set", f"method={method}", "--set", f"output_dir={run_dir}"]
    if method == "ptuning":  # quickstart's lora: section is not read by ptuning (refused in the recipe)
        args += ["--set", "lora=null"]
    for item in SMALL + list(extra):
        args += ["--set", item]
    assert main(args) == 0
    return run_dir


def losses(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory):
    # evaluation every 2 steps: on CPUs with AVX512-BF16 an eval pass used to switch the 4-bit layers to
    # bitsandbytes' inference-only packed path and crash the next training step (issue 12)
    return train_cli(tmp_path_factory, "qlora", "train.optimizer=paged_adamw_8bit", "lora.r=8",
                     "data.max_samples=10", "data.val_ratio=0.2", "train.eval_steps=2")


@pytest.fixture(scope="module")
def ptuning_run(tmp_path_factory):
    return train_cli(tmp_path_factory, "ptuning", "ptuning.pre_seq_len=8", "train.learning_rate=3e-2")


def chat_answers(run_dir, capsys):
    from doctorkit.chat import main as chat_main

    assert chat_main([str(run_dir), "--prompt", "医生您好，我头痛怎么办？", "--temperature", "0",
                      "--max-new-tokens", "12"]) == 0
    return capsys.readouterr().out.strip()


@pytest.mark.slow
def test_qlora_trains_a_4bit_base_and_chats(qlora_run, capsys):
    from doctorkit.rundir import load_run

    metrics = losses(qlora_run)
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["global_step"] == 6
    assert [e["step"] for e in metrics["log_history"] if "eval_loss" in e][:3] == [2, 4, 6]
    recipe = yaml.safe_load((qlora_run / "recipe.yaml").read_text())
    assert recipe["gradient_checkpointing"] is True  # unset in quickstart: the qlora default was recorded
    run = load_run(qlora_run)
    q_proj = run.model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit" and q_proj.base_layer.weight.quant_type == "nf4"
    assert chat_answers(qlora_run, capsys) != ""


@pytest.mark.slow
def test_qlora_export_is_a_standalone_model_with_the_same_logits(qlora_run, tmp_path):
    from doctorkit.export import main as export_main
    from doctorkit.rundir import load_run

    out = tmp_path / "merged"
    assert export_main([str(qlora_run), "--out", str(out)]) == 0
    assert not (out / "adapter_config.json").exists()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers: no PEFT, no bitsandbytes layers
    assert type(merged).__name__ == "Qwen2ForCausalLM"
    assert all(type(m).__name__ == "Linear" for n, m in merged.named_modules() if n.endswith("q_proj"))
    adapter_model = load_run(qlora_run).model
    with torch.no_grad():
        expected, got = adapter_model(IDS).logits, merged(IDS).logits
    # the adapter model multiplies in its 4-bit layers' compute dtype (fp32 on CPU; DoctorKit keeps them off
    # bitsandbytes' packed bf16 path), the merged model in fp32: the tolerance comes from that dtype (numerics.py)
    dtype = compute_dtype_in_use(adapter_model)
    assert dtype == torch.float32 and packed_cpu_layers(adapter_model) == 0
    torch.testing.assert_close(got, expected, atol=logits_atol(merged, expected, dtype), rtol=0)
    assert load_run(out).recipe is None  # chat / demo load the exported folder too
    with pytest.raises(DoctorKitError, match="not empty"):
        export_main([str(qlora_run), "--out", str(out)])


@pytest.mark.slow
def test_export_of_a_run_whose_base_model_is_gone(qlora_run, tmp_path):
    from doctorkit.export import main as export_main

    moved = tmp_path / "run"
    shutil.copytree(qlora_run, moved, ignore=shutil.ignore_patterns("checkpoints", "tb"))
    recipe = yaml.safe_load((moved / "recipe.yaml").read_text())
    recipe["model"] = str(tmp_path / "deleted-base-model")
    (moved / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    with pytest.raises(DoctorKitError, match="base model is missing") as err:
        export_main([str(moved), "--out", str(tmp_path / "out")])
    assert "\n" not in str(err.value) and "deleted-base-model" in str(err.value)


@pytest.mark.slow
def test_ptuning_trains_the_prefix_only_and_chats(ptuning_run, capsys):
    metrics = losses(ptuning_run)
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert sorted(p.name for p in (ptuning_run / "adapter").iterdir()) == ["prefix.safetensors", "prefix_config.json"]
    assert metrics["trainable_params"] == 8 * 2 * 2 * 32  # pre_seq_len x layers x (k, v) x kv_heads*head_dim
    assert chat_answers(ptuning_run, capsys) != ""


@pytest.mark.slow
def test_ptuning_export_writes_prefix_and_a_loader_that_reproduces_the_run(ptuning_run, tmp_path, capsys):
    from doctorkit.export import main as export_main
    from doctorkit.rundir import load_run
    from doctorkit.builtin.tiny import build_tiny

    with pytest.raises(DoctorKitError, match="cannot be exported --merged"):
        export_main([str(ptuning_run), "--out", str(tmp_path / "merged"), "--merged"])
    out = tmp_path / "prefix-export"
    assert export_main([str(ptuning_run), "--out", str(out)]) == 0
    assert "cannot be merged" in capsys.readouterr().out
    sys.path.insert(0, str(out))  # the loader imports ptuning_prefix from its own folder
    try:
        spec = importlib.util.spec_from_file_location("load_ptuning", out / "load_ptuning.py")
        loader = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loader)
        model, tokenizer = loader.load(build_tiny()[0])  # builtin:tiny is not on the hub: hand the base in
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("ptuning_prefix", None)
    assert tokenizer.chat_template is not None
    with torch.no_grad():
        assert torch.equal(model(input_ids=IDS).logits, load_run(ptuning_run).model(input_ids=IDS).logits)


def test_8bit_and_paged_optimizers_come_from_bitsandbytes(tmp_path):
    from transformers import Trainer

    from doctorkit.train import trainer_args

    for name, bits, paged in [("adamw_8bit", 8, False), ("paged_adamw_8bit", 8, True), ("paged_adamw_32bit", 32, True)]:
        recipe = load_recipe(QUICKSTART, [f"train.optimizer={name}", "method=qlora"])
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(trainer_args(recipe, tmp_path, False, torch.float32))
        assert cls.__module__.startswith("bitsandbytes.optim")
        assert (kwargs["optim_bits"], kwargs["is_paged"]) == (bits, paged)


@pytest.mark.parametrize("how", ["not installed", "no backend"])
def test_4bit_without_a_usable_bitsandbytes_is_one_line(monkeypatch, how):
    import bitsandbytes

    from doctorkit.methods import get_method

    if how == "not installed":
        monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import raises ImportError
    else:
        monkeypatch.setattr(bitsandbytes, "supported_torch_devices", set(), raising=False)
    for method, overrides in [("qlora", []), ("ptuning", ["lora=null", "ptuning.quantization_bits=4"])]:
        recipe = load_recipe(QUICKSTART, [f"method={method}", *overrides])
        with pytest.raises(DoctorKitError, match="4-bit loading needs a working bitsandbytes") as err:
            get_method(method).validate(recipe)
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_ptuning_on_a_4bit_base_evaluates_during_training_chats_and_scores(tmp_path_factory, tmp_path, capsys):
    """P-tuning v2 over a 4-bit NF4 base, with evaluation every 2 steps (the pass that switched 4-bit layers to
    bitsandbytes' packed inference path on AVX512-BF16 CPUs), then chat and evaluate on the same 4-bit base."""
    from doctorkit.evaluate.command import main as evaluate_main
    from doctorkit.rundir import load_run

    run_dir = train_cli(tmp_path_factory, "ptuning", "ptuning.pre_seq_len=8", "train.learning_rate=3e-2",
                        "ptuning.quantization_bits=4", "data.max_samples=10", "data.val_ratio=0.2",
                        "train.eval_steps=2")
    metrics = losses(run_dir)
    assert [e["step"] for e in metrics["log_history"] if "eval_loss" in e][:3] == [2, 4, 6]
    model = load_run(run_dir).model
    assert compute_dtype_in_use(model) == torch.float32 and packed_cpu_layers(model) == 0
    assert chat_answers(run_dir, capsys) != ""
    assert evaluate_main([str(run_dir), "--data", str(ROOT / "data/mcq_sample_zh.jsonl"), "--task", "mcq",
                          "--max-samples", "4", "--out", str(tmp_path / "eval"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
