"""DPO stage: preference data validation, the reference model, training from an SFT run, rounds, QLoRA on CPU."""
import contextlib
import json
from pathlib import Path

import pytest
import torch

from doctorkit.builtin.tiny import build_tokenizer
from doctorkit.data.preference import prepare_preferences
from doctorkit.errors import DoctorKitError
from doctorkit.methods.quantized import compute_dtype_in_use
from doctorkit.recipe import load_recipe
from numerics import logits_atol

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "data" / "dpo_sample_zh.jsonl"
SHARED = Path("/work/shared/data/dpo_zh_500.jsonl")


def dpo_recipe(tmp_path, *overrides):
    return load_recipe(ROOT / "recipes" / "dpo.yaml", [f"output_dir={tmp_path / 'dpo'}", "dpo.from_run=null",
                                                        "train.save_steps=1000", *overrides])


def write_jsonl(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


# ------------------------------------------------------------------- data ---

BAD_FILE = [
    {"prompt": "头痛怎么办？", "chosen": "建议休息并观察。", "rejected": "不用管。"},                     # 1 ok
    {"conversations": [{"from": "system", "value": "你是医生"}, {"from": "human", "value": "咳嗽"}],
     "chosen": {"from": "gpt", "value": "多喝水。"}, "rejected": "吃抗生素。"},                        # 2 ok
    "{not json\n",                                                                                    # 3 malformed
    {"prompt": "发烧", "chosen": "多休息。", "rejected": "多休息。"},                                    # 4 identical
    {"prompt": "发烧", "chosen": "  ", "rejected": "随便吃药。"},                                       # 5 empty_message
    {"messages": [{"role": "user", "content": "腹泻"}], "chosen": "补液。"},                            # 6 malformed
    {"prompt": "失眠", "chosen": "规律作息。" * 80, "rejected": "吃安眠药。"},                           # 7 overlong
    {"prompt": "胃痛" * 80, "chosen": "查胃镜。", "rejected": "忍着。"},                                # 8 prompt_too_long
    {"chosen": [{"role": "user", "content": "腰痛"}, {"role": "assistant", "content": "热敷。"}],
     "rejected": [{"role": "user", "content": "腰痛"}, {"role": "assistant", "content": "扳一扳。"}]},  # 9 ok
    {"chosen": [{"role": "user", "content": "腰痛"}, {"role": "assistant", "content": "热敷。"}],
     "rejected": [{"role": "user", "content": "背痛"}, {"role": "assistant", "content": "扳一扳。"}]},  # 10 malformed
    {"prompt": "", "chosen": "a", "rejected": "b"},                                                   # 11 empty_message
]


def test_preference_layouts_and_counted_skips(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", BAD_FILE)
    recipe = dpo_recipe(tmp_path, f"data.path={path}", "train.max_seq_len=96", "dpo.max_prompt_len=64")
    data = prepare_preferences(recipe, build_tokenizer())
    report = data.report
    assert report.samples_used == 3 and report.samples_skipped == {
        "malformed": 3, "identical": 1, "empty_message": 2, "overlong": 1, "prompt_too_long": 1}
    assert report.problems[0].startswith(f"{path}:3: malformed JSON")
    rows = data.train.to_list()
    assert rows[1]["prompt"] == [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "咳嗽"}]
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "多喝水。"}]
    assert rows[2]["prompt"] == [{"role": "user", "content": "腰痛"}]
    assert rows[2]["rejected"] == [{"role": "assistant", "content": "扳一扳。"}]
    # data.overlong=truncate keeps the long pair (TRL truncates it) and counts it
    kept = prepare_preferences(dpo_recipe(tmp_path, f"data.path={path}", "train.max_seq_len=96",
                                          "dpo.max_prompt_len=64", "data.overlong=truncate"), build_tokenizer())
    assert kept.report.samples_used == 4 and kept.report.truncated == 1


def test_on_error_fail_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", BAD_FILE)
    recipe = dpo_recipe(tmp_path, f"data.path={path}", "data.on_error=fail")
    with pytest.raises(DoctorKitError) as err:
        prepare_preferences(recipe, build_tokenizer())
    assert str(err.value).startswith(f"{path}:3: malformed JSON") and "\n" not in str(err.value)


def test_no_usable_pairs_and_bad_keys_are_one_line_errors(tmp_path):
    from doctorkit.methods import get_method

    path = write_jsonl(tmp_path / "same.jsonl", [BAD_FILE[3]])
    with pytest.raises(DoctorKitError, match="no usable preference pairs.*identical 1"):
        prepare_preferences(dpo_recipe(tmp_path, f"data.path={path}"), build_tokenizer())
    for override, message in [("dpo.rounds=0", "dpo.rounds"), ("dpo.round_data=[a.jsonl]", "dpo.round_data"),
                              ("dpo.loss_type=kto", "dpo.loss_type"), ("dpo.max_prompt_len=4096", "max_prompt_len"),
                              ("dpo.beta=0", "dpo.beta")]:
        with pytest.raises(DoctorKitError, match=message):
            get_method("dpo").validate(dpo_recipe(tmp_path, override))
    from doctorkit.train import train
    with pytest.raises(DoctorKitError, match="run directory not found"):
        train(dpo_recipe(tmp_path, f"dpo.from_run={tmp_path / 'missing'}"))
    from doctorkit.stages import prepare_run_dir, release_run_dir  # --resume with nothing to resume: step 0 (issue 19)
    assert prepare_run_dir(tmp_path / "never-trained", resume=True, overwrite=False, checkpoints=False) is None
    release_run_dir(tmp_path / "never-trained")


def test_bundled_sample_uses_every_layout():
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert 60 <= len(rows) <= 100
    assert {next((k for k in ("prompt", "conversations", "messages") if k in r), "implicit") for r in rows} == {
        "prompt", "conversations", "messages", "implicit"}


@pytest.mark.skipif(not SHARED.is_file(), reason="shared public DPO data not on this machine")
def test_reads_public_sharegpt_preference_file(tmp_path):
    recipe = dpo_recipe(tmp_path, f"data.path={SHARED}", "train.max_seq_len=4096", "dpo.max_prompt_len=2048",
                        "data.overlong=truncate")
    report = prepare_preferences(recipe, build_tokenizer()).report
    assert report.samples_skipped.get("malformed", 0) == 0
    assert report.samples_used + sum(report.samples_skipped.values()) == 500


# --------------------------------------------------------------- training ---

@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from doctorkit.train import train

    out = tmp_path_factory.mktemp("sft") / "run"
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        f"output_dir={out}", "train.max_steps=10", "train.batch_size=4", "train.max_seq_len=128",
        "train.save_steps=1000", "data.val_ratio=0", "train.logging_steps=5"])
    return train(recipe)


def completion_logps(model, tokenizer, pair) -> tuple[float, float]:
    """Summed log-probs of the chosen and rejected replies given the prompt, computed here independently of TRL."""
    prompt = tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
    out = []
    for side in ("chosen", "rejected"):
        ids = tokenizer.apply_chat_template(pair["prompt"] + pair[side], return_dict=True)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        logps = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        out.append(float(logps[len(prompt) - 1:].sum()))
    return tuple(out)


@pytest.mark.slow
def test_dpo_from_sft_run_raises_reward_accuracy_over_rounds(tmp_path, sft_run):
    from doctorkit.generation import generate_reply
    from doctorkit.rundir import load_run, read_metrics
    from doctorkit.train import train

    fresh = write_jsonl(tmp_path / "round2.jsonl", SAMPLE.read_text(encoding="utf-8").splitlines(True)[40:])
    recipe = dpo_recipe(tmp_path, f"dpo.from_run={sft_run}", "train.max_steps=5", "train.logging_steps=1",
                        "data.max_samples=40", "train.max_seq_len=128", "dpo.max_prompt_len=96", "dpo.rounds=2", f"dpo.round_data=[{fresh}]")
    run_dir = train(recipe)

    metrics = read_metrics(run_dir)
    assert [r["round"] for r in metrics["rounds"]] == [1, 2] and metrics["rounds"][1]["data"] == str(fresh)
    assert metrics["rounds"][1]["samples_used"] == 40 and metrics["global_step"] == 10
    assert (run_dir / "rounds" / "round-1" / "adapter" / "adapter_config.json").is_file()
    steps = metrics["dpo_steps"]
    assert [s["step"] for s in steps][-1] == 10 and all(s["reward_margin"] is not None for s in steps)
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["rounds"][0]["reward_accuracy_last"] > 0.5
    assert (run_dir / "loss.png").stat().st_size > 10_000

    # recomputed from the written files: DPO run vs its SFT reference on the training pairs of round 1
    sft, dpo = load_run(sft_run), load_run(run_dir)
    assert dpo.recipe.model == "builtin:tiny" and dpo.recipe.dpo.base_method == "lora"
    pairs = prepare_preferences(recipe, dpo.tokenizer).train.to_list()
    beta, margins = recipe.dpo.beta, []
    for pair in pairs:
        (pc, pr), (rc, rr) = completion_logps(dpo.model, dpo.tokenizer, pair), completion_logps(sft.model, sft.tokenizer, pair)
        margins.append(beta * ((pc - rc) - (pr - rr)))
    accuracy = sum(m > 0 for m in margins) / len(margins)
    assert accuracy > 0.5 and sum(margins) / len(margins) > 0
    assert isinstance(generate_reply(dpo.model, dpo.tokenizer, [{"role": "user", "content": "头痛怎么办？"}],
                                     temperature=0, max_new_tokens=8), str)


@pytest.mark.slow
def test_reference_is_the_sft_run_not_the_base(tmp_path, sft_run):
    from trl.trainer.utils import use_adapter

    from doctorkit.stages.dpo import build_trainer, resolve_from_run
    from doctorkit.rundir import load_run
    from doctorkit.builtin.tiny import build_tiny

    recipe = resolve_from_run(dpo_recipe(tmp_path, f"dpo.from_run={sft_run}", "train.max_steps=3",
                                         "train.max_seq_len=128", "dpo.max_prompt_len=96", "data.max_samples=12"))
    sft = load_run(sft_run)
    data = prepare_preferences(recipe, sft.tokenizer)
    trainer = build_trainer(recipe, tmp_path / "dpo", 1, Path(sft_run) / "adapter", data, sft.tokenizer)
    ids = torch.tensor([sft.tokenizer.apply_chat_template(data.train[0]["prompt"] + data.train[0]["chosen"],
                                                          return_dict=True)["input_ids"]])
    model = trainer.model

    def logits(context=None):
        model.eval()
        with torch.no_grad(), (use_adapter(model, "ref") if context == "ref" else contextlib.nullcontext()):
            return model(input_ids=ids).logits

    with torch.no_grad():
        sft_logits = sft.model(input_ids=ids).logits
        base_logits = build_tiny()[0](input_ids=ids).logits
    assert not torch.allclose(sft_logits, base_logits, atol=1e-4)   # so "reference == SFT" is not "== base"
    assert torch.allclose(logits("ref"), sft_logits, atol=1e-5)
    trainer.train()
    assert torch.allclose(logits("ref"), sft_logits, atol=1e-5)     # the reference stays frozen
    assert not torch.allclose(logits(), sft_logits, atol=1e-4)      # while the policy moved


@pytest.mark.slow
def test_qlora_dpo_learns_on_cpu_reloads_and_exports(tmp_path):
    from doctorkit.export import export
    from doctorkit.rundir import load_run, read_metrics
    from doctorkit.train import train

    recipe = dpo_recipe(tmp_path, "dpo.base_method=qlora", "train.max_steps=5", "train.batch_size=2",
                        "train.logging_steps=1", "train.max_seq_len=128", "dpo.max_prompt_len=96", "data.max_samples=8")
    run_dir = train(recipe)
    losses = [s["loss"] for s in read_metrics(run_dir)["dpo_steps"]]
    assert len(losses) == 5 and losses[-1] < losses[0]
    run = load_run(run_dir)
    assert any(type(m).__name__ == "Linear4bit" for m in run.model.modules())   # reloaded on its 4-bit base
    merged = load_run(export(run_dir, tmp_path / "merged", merged=True))        # dequantized + merged
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        expected, got = run.model(input_ids=ids).logits, merged.model(input_ids=ids).logits
    dtype = compute_dtype_in_use(run.model)   # fp32 on CPU: DoctorKit keeps 4-bit layers off the packed bf16 path
    assert dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=logits_atol(merged.model, expected, dtype), rtol=0)
