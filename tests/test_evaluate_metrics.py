"""Metric building blocks and data readers: no model needed."""
import json

import pytest
from rouge_score import rouge_scorer

from doctorkit.errors import DoctorKitError
from doctorkit.evaluate.metrics import CharTokenizer, dialog_scores, repetition_rate, wilson_interval
from doctorkit.evaluate.tasks import dialog, mcq
from evaluate_helpers import write_jsonl


def test_rouge_char_level_scores_chinese_where_the_default_gives_zero():
    ref, pred = "建议多喝水，注意休息", "多喝水，好好休息"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ref, pred)["rougeL"].fmeasure
    ours = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer()).score(ref, pred)["rougeL"].fmeasure
    assert default == 0.0
    # LCS over characters (punctuation dropped): 多喝水 + 休息 = 5 of 9 (ref) and 5 of 7 (pred)
    assert ours == pytest.approx(2 * 5 / (9 + 7))
    assert CharTokenizer().tokenize("服用 Aspirin 100mg。") == ["服", "用", "aspirin", "100mg"]


def test_repetition_rate_flags_loops():
    assert repetition_rate("多喝水多喝水多喝水多喝水") == pytest.approx(1 - 3 / 9)
    assert repetition_rate("建议多喝水注意休息") == 0.0
    assert repetition_rate("短") is None


def test_dialog_scores_perfect_and_disjoint():
    refs = ["建议多喝水注意休息", "发烧超过三天要就医"]
    assert dialog_scores(refs, refs)["bleu4"] == pytest.approx(100.0)
    assert dialog_scores(refs, refs)["rougeL"] == pytest.approx(100.0)
    low = dialog_scores(["甲乙丙丁", "戊己庚辛"], refs)
    assert low["bleu4"] == 0.0 and low["rougeL"] == 0.0 and low["chrf"] < 5


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)   # textbook: 0.490 .. 0.943
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_mcq_reader_skips_bad_records_and_counts_them(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"question": "1+1=?", "options": {"A": "1", "B": "2"}, "answer": "B"},
        {"question": "缺答案", "options": {"A": "x", "B": "y"}, "answer": "C"},
        {"question": "选项是列表", "options": ["甲", "乙", "丙"], "answer": "c"},
        {"question": "", "options": {"A": "x", "B": "y"}, "answer": "A"},
    ])
    with open(path, "a", encoding="utf-8") as f:
        f.write("{not json\n")
    loaded = mcq.load(path)
    assert [i["answer"] for i in loaded.items] == ["B", "C"]
    assert len(loaded.skipped) == 3
    assert "q.jsonl:2: answer 'C' is not one of the options A, B" in loaded.skipped[0]
    assert loaded.skipped[2].endswith(":5: not valid JSON")


def test_dialog_reader_formats_and_empty_reference(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"messages": [{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "休息"},
                      {"role": "user", "content": "还痛"}, {"role": "assistant", "content": "就医"}]},
        {"conversations": [{"from": "human", "value": "咳嗽"}, {"from": "gpt", "value": "多喝水"}]},
        {"instruction": "发烧怎么办", "input": "", "output": "测体温"},
        {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "  "}]},
    ])
    loaded = dialog.load(path)
    assert [i["reference"] for i in loaded.items] == ["就医", "多喝水", "测体温"]
    assert [t["content"] for t in loaded.items[0]["prompt"]] == ["头痛", "休息", "还痛"]
    assert len(loaded.skipped) == 1 and "empty reference" in loaded.skipped[0]


def test_wrong_format_for_task_is_one_line_error(tmp_path):
    with pytest.raises(DoctorKitError) as err:
        mcq.load("data/eval_dialog_zh.jsonl")
    assert "eval_dialog_zh.jsonl:1: not multiple-choice records" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DoctorKitError, match="mcq_sample_zh.jsonl:1: not dialog records"):
        dialog.load("data/mcq_sample_zh.jsonl")
    only_bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "Z"}])
    with pytest.raises(DoctorKitError, match="no usable multiple-choice records"):
        mcq.load(only_bad)


def test_shipped_sample_files_are_clean():
    assert len(dialog.load("data/eval_dialog_zh.jsonl").items) >= 20
    loaded = mcq.load("data/mcq_sample_zh.jsonl")
    assert len(loaded.items) == 20 and not loaded.skipped
    assert len({i["subject"] for i in loaded.items}) >= 5
    sample = {json.loads(line)["messages"][-1]["content"] for line in open("data/sample_zh.jsonl", encoding="utf-8")}
    assert not sample & {i["reference"] for i in dialog.load("data/eval_dialog_zh.jsonl").items}  # held out
