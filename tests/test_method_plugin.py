"""A method registered from this file (PEFT's IA3: learned per-channel scales on k, v and down_proj) trains, chats,
exports and gets a cost estimate with no kit file edited: a method is one registered object (doctorkit.methods).
README "Extending DoctorKit" points here."""
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from doctorkit.errors import DoctorKitError
from doctorkit.methods import register, unregister
from doctorkit.recipe import Section, load_recipe
from numerics import logits_atol

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
IDS = torch.tensor([[5, 17, 99, 300, 41, 7, 250]])
SMALL = ["train.max_steps=6", "train.batch_size=8", "train.max_seq_len=128", "train.logging_steps=1",
         "train.learning_rate=5e-2", "train.save_steps=100", "data.val_ratio=0", "data.max_samples=8",
         f"data.path={ROOT / 'data/sample_zh.jsonl'}"]


class Ia3Config(Section):            # the recipe section `ia3:` (accepted only with method: ia3)
    target_modules: list[str] = ["k_proj", "v_proj", "down_proj"]
    feedforward_modules: list[str] = ["down_proj"]   # scaled on their input, the others on their output


class Ia3:
    """Everything the kit asks of a method; what it leaves out (STAGE sft, no quantized base, ...) is the default."""
    SECTION, CONFIG = "ia3", Ia3Config
    MERGES = True                    # PEFT's merge_and_unload folds the scales into the weights

    def validate(self, recipe):
        if not set(recipe.ia3.feedforward_modules) <= set(recipe.ia3.target_modules):
            raise DoctorKitError("ia3.feedforward_modules must be a subset of ia3.target_modules")

    def load_kwargs(self, recipe):
        return {}

    def wrap(self, model, recipe):
        from peft import IA3Config, get_peft_model

        cfg = recipe.ia3
        return get_peft_model(model, IA3Config(task_type="CAUSAL_LM", target_modules=cfg.target_modules,
                                               feedforward_modules=cfg.feedforward_modules))

    def load(self, base_model, run_dir):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, Path(run_dir) / "adapter")

    def cost_terms(self, recipe, shape):
        short = {"k_proj": "k", "v_proj": "v", "down_proj": "down"}
        linears = shape.linears()
        per_layer = sum(linears[short[m]][0] if m in recipe.ia3.feedforward_modules else linears[short[m]][1]
                        for m in recipe.ia3.target_modules)
        return {"own_trainable": shape.layers * per_layer}   # one scale per input (ff) or output channel


@pytest.fixture(scope="module")
def ia3():
    register("ia3", Ia3())
    yield
    unregister("ia3")


@pytest.fixture(scope="module")
def ia3_run(ia3, tmp_path_factory):
    from doctorkit.train import main

    run_dir = tmp_path_factory.mktemp("ia3") / "run"
    args = [str(QUICKSTART), "--set", "method=ia3", "--set", "lora=null", "--set", f"output_dir={run_dir}"]
    for item in SMALL:
        args += ["--set", item]
    assert main(args) == 0
    return run_dir


def test_its_section_is_accepted_only_with_it(ia3):
    assert load_recipe(QUICKSTART, ["method=ia3", "lora=null", "ia3.target_modules=[v_proj]",
                                    "ia3.feedforward_modules=[]"]).ia3.target_modules == ["v_proj"]
    with pytest.raises(DoctorKitError, match="section 'ia3' belongs to method ia3, but method is lora") as err:
        load_recipe(QUICKSTART, ["ia3.target_modules=[v_proj]"])
    assert "\n" not in str(err.value)
    with pytest.raises(DoctorKitError, match="did you mean 'ia3.target_modules'"):
        load_recipe(QUICKSTART, ["method=ia3", "lora=null", "ia3.target_module=[v_proj]"])


def test_unregistered_method_is_one_line():
    with pytest.raises(DoctorKitError, match="method 'ia4' is not registered") as err:
        load_recipe(QUICKSTART, ["method=ia4"])
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_registered_method_trains_chats_exports_and_is_costed(ia3_run, tmp_path, capsys):
    from doctorkit.chat import main as chat_main
    from doctorkit.cost import main as cost_main
    from doctorkit.export import main as export_main
    from doctorkit.rundir import load_run

    metrics = json.loads((ia3_run / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and metrics["train_loss_last"] < metrics["train_loss_first"]
    adapter_config = json.loads((ia3_run / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "IA3"

    capsys.readouterr()
    assert chat_main([str(ia3_run), "--prompt", "医生您好，我头痛怎么办？", "--temperature", "0",
                      "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out.strip() != ""

    # the estimator's count comes from the method's cost_terms; the trainer counted the real model's
    assert cost_main([str(ia3_run / "recipe.yaml"), "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["method"] == "ia3" and estimate["trainable_params"] == metrics["trainable_params"]

    out = tmp_path / "merged"
    assert export_main([str(ia3_run), "--out", str(out)]) == 0
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)   # plain transformers, no PEFT
    with torch.no_grad():
        expected, got = load_run(ia3_run).model(IDS).logits, merged(IDS).logits
    # scales folded into fp32 weights vs applied to fp32 activations: fp32 rounding (tests/numerics.py)
    torch.testing.assert_close(got, expected, atol=logits_atol(merged, expected, torch.float32), rtol=0)


def test_no_command_compares_method_names():
    """Commands ask the registered method (doctorkit.methods) instead of branching on its name."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for folder in ("doctorkit", "app", "translate")
                 for path in sorted((ROOT / folder).rglob("*.py")) if "methods" not in path.relative_to(ROOT).parts
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "method ==" in line]
    assert offenders == []
