"""Evaluation end to end on the embedded model: written files, numbers recomputed from them, bad input."""
import json
import random

import pytest
import torch
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from doctorkit.errors import DoctorKitError
from doctorkit.evaluate import EvalOptions, evaluate_after_training, evaluate_model, main, run
from doctorkit.evaluate.batching import generate_replies, prompt_ids
from doctorkit.evaluate.metrics import CharTokenizer
from doctorkit.evaluate.tasks import mcq
from doctorkit.recipe import load_recipe
from evaluate_helpers import make_lora_run, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_lora_run(tmp_path_factory.mktemp("evalrun") / "run")


@pytest.fixture(scope="module")
def tiny():
    from doctorkit.builtin.tiny import build_tiny
    return build_tiny()


def cli_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_dialog_cli_on_run_dir_with_base(run_dir, tmp_path, capsys):
    out = tmp_path / "dialog"
    summary = cli_json(capsys, [str(run_dir), "--data", "data/eval_dialog_zh.jsonl", "--task", "dialog", "--base",
                                "--max-samples", "3", "--max-new-tokens", "6", "--batch-size", "2", "--out", str(out)])
    tuned, base = read_jsonl(out / "predictions.jsonl"), read_jsonl(out / "base_predictions.jsonl")
    assert len(tuned) == len(base) == summary["samples"] == 3
    assert tuned[0]["prompt"][-1]["role"] == "user" and tuned[0]["reference"].startswith("孩子精神状态好")
    assert [r["prediction"] for r in tuned] != [r["prediction"] for r in base]  # the adapter really was switched off
    assert any(r["prediction"] for r in tuned)
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8")) == summary
    assert (out / "eval.png").stat().st_size > 0
    for key in summary["headline"]:
        assert summary["difference"][key] == pytest.approx(summary["results"]["model"][key] - summary["results"]["base"][key], abs=1e-3)


def test_dialog_metrics_equal_library_recomputation(tiny, tmp_path):
    model, tokenizer = tiny
    # a fake generator that gets references partly right, so every metric is away from 0 and 100
    def half_right(model, tokenizer, conversations, options):
        return [c[-1]["content"][:6] + "建议多喝水，注意休息。" for c in conversations]

    summary = evaluate_model(model, tokenizer, "data/eval_dialog_zh.jsonl", "dialog", tmp_path, scorer=half_right)
    records = read_jsonl(tmp_path / "predictions.jsonl")
    preds, refs = [r["prediction"] for r in records], [r["reference"] for r in records]
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())
    printed = summary["results"]["model"]
    assert printed["bleu4"] == pytest.approx(BLEU(tokenize="zh").corpus_score(preds, [refs]).score, abs=1e-4)
    assert printed["chrf"] == pytest.approx(CHRF().corpus_score(preds, [refs]).score, abs=1e-4)
    rouge = 100 * sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / len(refs)
    assert printed["rougeL"] == pytest.approx(rouge, abs=1e-4)
    assert 0 < printed["bleu4"] < 100 and 0 < printed["rougeL"] < 100
    assert printed["avg_pred_chars"] == pytest.approx(sum(map(len, preds)) / len(preds), abs=0.01)
    assert "tok:zh" in printed["bleu_signature"]


def test_batched_left_padded_generation_matches_one_by_one(run_dir):
    from doctorkit.rundir import load_run

    loaded = load_run(run_dir)
    conversations = [[{"role": "user", "content": "头痛"}], [{"role": "user", "content": "医生，我最近一周晚上咳嗽，有痰，怎么办？"}]]
    batched = generate_replies(loaded.model, loaded.tokenizer, conversations, max_new_tokens=6, batch_size=2)
    single = [generate_replies(loaded.model, loaded.tokenizer, [c], max_new_tokens=6)[0] for c in conversations]
    assert batched == single and all(batched)


def test_mcq_cli_accuracy_recounts_from_question_file(run_dir, tmp_path, capsys):
    out = tmp_path / "mcq"
    summary = cli_json(capsys, [str(run_dir), "--data", "data/mcq_sample_zh.jsonl", "--task", "mcq", "--base",
                                "--max-samples", "8", "--out", str(out)])
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == 8 and {"id", "gold", "pred", "correct", "scores", "subject"} <= set(rows[0])
    for row in rows:
        assert row["pred"] == max(row["scores"], key=row["scores"].get)
        assert row["correct"] == (row["pred"] == row["gold"])
    result = summary["results"]["model"]
    assert result["correct"] == sum(r["correct"] for r in rows) and result["accuracy"] == pytest.approx(
        sum(r["correct"] for r in rows) / len(rows), abs=1e-4)
    for subject, scores in result["per_subject"].items():
        assert scores["correct"] == sum(r["correct"] for r in rows if r["subject"] == subject)
    base_rows = read_jsonl(out / "base_predictions.jsonl")
    assert [r["scores"] for r in base_rows] != [r["scores"] for r in rows]


def test_mcq_letter_loglik_equals_direct_forward(tiny, tmp_path):
    """Batched, padded scoring gives the same log P(letter | question) as one unpadded forward pass."""
    model, tokenizer = tiny
    evaluate_model(model, tokenizer, "data/mcq_sample_zh.jsonl", "mcq", tmp_path, max_samples=2,
                   options=EvalOptions(batch_size=3))
    row = read_jsonl(tmp_path / "predictions.jsonl")[1]
    item = mcq.load("data/mcq_sample_zh.jsonl", 2).items[1]
    context = prompt_ids(tokenizer, mcq.question_messages(item))
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([context])).logits[0, -1].float(), -1)
    for letter in item["options"]:
        (token,) = tokenizer.encode(letter, add_special_tokens=False)
        assert row["scores"][letter] == pytest.approx(logprobs[token].item(), abs=1e-4)


def test_fake_scorers_all_correct_and_shuffled(tiny, tmp_path):
    model, tokenizer = tiny
    rng = random.Random(0)
    exam = write_jsonl(tmp_path / "exam.jsonl", [
        {"question": f"第{i}题", "options": {k: f"选项{k}{i}" for k in "ABCD"}, "answer": rng.choice("ABCD"),
         "subject": ["内科", "外科"][i % 2]} for i in range(400)])

    def oracle(model, tokenizer, items, options):
        return [{k: float(k == item["answer"]) for k in item["options"]} for item in items]

    def shuffled(model, tokenizer, items, options):
        return [{k: rng.random() for k in item["options"]} for item in items]

    perfect = evaluate_model(model, tokenizer, exam, "mcq", tmp_path / "a", scorer=oracle)["results"]["model"]
    assert perfect["accuracy"] == 1.0 and perfect["ci95"][1] == 1.0 and perfect["ci95"][0] > 0.98
    assert all(s["accuracy"] == 1.0 for s in perfect["per_subject"].values())
    chance = evaluate_model(model, tokenizer, exam, "mcq", tmp_path / "b", scorer=shuffled)["results"]["model"]
    assert 0.18 < chance["accuracy"] < 0.32
    assert chance["ci95"][0] < 0.25 < chance["ci95"][1]


def test_mcq_generate_mode_parses_letters():
    from doctorkit.evaluate.choices import parse_letters
    assert parse_letters("答案是 B。", {"A": 1, "B": 2}) == "B"
    assert parse_letters("B", {"A": 1, "B": 2}) == "B"
    assert parse_letters("Because 甲", {"A": 1, "B": 2}) is None  # letters inside words do not count
    assert parse_letters("E", {"A": 1, "B": 2}) is None
    letters = {k: 1 for k in "ABCDE"}
    assert parse_letters("A 和 C 都不对……\n答案：A、C、D", letters) == "ACD"  # the last marker decides
    assert parse_letters("I think the answer is B", letters) == "B"
    assert parse_letters("分析：肺炎。\n故选 DB", letters) == "BD"


def test_evaluate_after_training_records_in_metrics_json(run_dir, tmp_path):
    recipe = load_recipe(run_dir / "recipe.yaml", ["eval.data=data/mcq_sample_zh.jsonl", "eval.task=mcq",
                                                   "eval.max_samples=3"])
    summary = evaluate_after_training(run_dir, recipe)
    assert summary["samples"] == 3
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["train_loss_last"] == 1.0  # training's numbers are kept
    assert metrics["eval"]["results"] == summary["results"]
    assert (run_dir / "eval" / "mcq-mcq_sample_zh" / "predictions.jsonl").is_file()
    assert evaluate_after_training(run_dir, load_recipe(run_dir / "recipe.yaml")) == {}


@pytest.mark.parametrize("make, args, message", [
    (lambda d: d, ["--task", "mcq"], "holds no model"),
    (lambda d: (d / "recipe.yaml").write_text("model: builtin:tiny\n") and d, ["--task", "mcq"], "no adapter/ here"),
    (None, ["--task", "mcq", "--base"], "has no adapter to switch off"),
    (None, ["--task", "mcq", "--data", "data/eval_dialog_zh.jsonl"], "not multiple-choice records"),
    (None, ["--task", "dialog", "--data", "missing.jsonl"], "missing.jsonl: evaluation data file not found"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, make, args, message):
    target = "builtin:tiny"
    if make:
        (tmp_path / "run").mkdir()
        target = str(make(tmp_path / "run"))
    argv = [target, "--data", "data/mcq_sample_zh.jsonl", "--out", str(tmp_path / "o"), *args]
    with pytest.raises(SystemExit) as code:
        run(argv)
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and message in err and "\n" not in err and "Traceback" not in err


def test_unknown_task_is_rejected():
    with pytest.raises(DoctorKitError, match=r"available: (.+, )?dialog, mcq"):   # other tasks (canary, ...) may come first
        from doctorkit.evaluate import get_task
        get_task("ner")


def test_prefix_tuning_model_scores_and_switches_off(tiny, tmp_path):
    """P-tuning v2 keeps its prefix in the KV cache: padded batches and --base must still be exact."""
    from peft import PrefixTuningConfig, get_peft_model

    from doctorkit.builtin.tiny import build_tiny

    base, tokenizer = build_tiny()
    model = get_peft_model(base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    model.config.use_cache = True
    summary = evaluate_model(model, tokenizer, "data/mcq_sample_zh.jsonl", "mcq", tmp_path / "p", base=True,
                             max_samples=4, options=EvalOptions(batch_size=3))
    plain = evaluate_model(tiny[0], tiny[1], "data/mcq_sample_zh.jsonl", "mcq", tmp_path / "b", max_samples=4)
    scores = lambda name: [v for r in read_jsonl(tmp_path / name) for v in r["scores"].values()]  # noqa: E731
    assert scores("p/base_predictions.jsonl") == pytest.approx(scores("b/predictions.jsonl"), abs=1e-4)  # adapter off
    assert scores("p/predictions.jsonl") != pytest.approx(scores("b/predictions.jsonl"), abs=1e-2)
    assert summary["samples"] == 4
    conversations = [[{"role": "user", "content": "头痛"}], [{"role": "user", "content": "医生，我晚上咳嗽有痰，怎么办？"}]]
    batched = generate_replies(model, tokenizer, conversations, max_new_tokens=5, batch_size=2)
    assert batched == [generate_replies(model, tokenizer, [c], max_new_tokens=5)[0] for c in conversations]
